"""Adding an autoscaler is one module plus one union member: this module is that module. It defines
a toy policy, registers it through the public registration point (no library file edited), loads a
scenario that selects it and checks the replica counts over time against a hand derivation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pytest
from pydantic import Field

from simulator import CapsimError, ServingScenario, parse_scenario, simulate_serving
from simulator.serving.autoscalers import AUTOSCALERS, Observation, ScalingConfig


class StepUpConfig(ScalingConfig):
    """One more replica every period while requests are waiting; never fewer."""

    policy: Literal["step_up"] = Field(default="step_up", description="toy: +1 replica per period while queued")
    sync_period_s: float = Field(default=10.0, gt=0, description="s between decisions; default 10 (this test's)")


@dataclass
class StepUp:
    period: float
    min_replicas: int
    max_replicas: int

    @classmethod
    def from_config(cls, cfg: StepUpConfig, *, cold_start_s: float, rate_at: object) -> StepUp:
        return cls(cfg.sync_period_s, cfg.min_replicas, cfg.max_replicas)

    def initial(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))

    def step(self, t: float, current: int, obs: Observation) -> int:
        return min(current + 1, self.max_replicas) if obs.queued > 0 else current


@pytest.fixture
def step_up() -> Iterator[None]:
    AUTOSCALERS.register(StepUpConfig, StepUp)
    yield
    AUTOSCALERS.unregister("step_up")


# BERT-large with a measured latency of exactly 1 s per request, one at a time; 45 requests all
# arrive at t = 0 on the one replica there is (replicas started later get no new arrivals).
SCENARIO = {"kind": "serving", "model": "bert-large", "hardware": "l4",
            "replica": {"batching": "none", "latency_table": [[1, 1.0]]},
            "workload": {"arrival": {"process": "offline", "requests": 45}, "horizon_s": 50,
                         "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 1}},
            "cluster": {"replicas": 1},
            "autoscaling": {"policy": "step_up", "max_replicas": 3, "node_provision_s": 4, "model_load_s": 6}}


def test_a_registered_policy_loads_simulates_and_scales_as_derived_by_hand(step_up: None) -> None:
    sc = parse_scenario(SCENARIO)
    assert isinstance(sc, ServingScenario) and isinstance(sc.autoscaling, StepUpConfig) and sc.autoscaling.sync_period_s == 10
    r = simulate_serving(sc)
    # The replica starts request k at t = k, so requests wait until t = 44. Decisions at 10, 20, 30,
    # 40 see a queue: 1 → 2 → 3, then max_replicas holds 3. Each new replica is ready a 10 s cold
    # start (4 + 6) after it was requested.
    sf = r.scaling_frame()                       # 50 bins of 1 s over the 50 s horizon
    assert len(sf) == 50 and r["completed"] == 45 and r["cold_start_s"] == 10
    want_requested = [1] * 10 + [2] * 10 + [3] * 30
    want_ready = [1] * 20 + [2] * 10 + [3] * 20
    assert sf.replicas_requested.tolist() == pytest.approx(want_requested)
    assert sf.replicas_ready.tolist() == pytest.approx(want_ready)
    assert r["replicas"]["max"] == 3
    # replica-hours: 50 s + 40 s + 30 s requested
    assert r["replica_hours"] == pytest.approx(120 / 3600, rel=1e-6)


def test_a_registered_policy_s_keys_are_checked_like_a_built_in_one(step_up: None) -> None:
    with pytest.raises(CapsimError, match=r"unknown key 'autoscaling.target'.* under policy 'step_up'"):
        parse_scenario({**SCENARIO, "autoscaling": {"policy": "step_up", "target": 3}})


def test_after_unregistering_the_policy_is_unknown_again() -> None:
    AUTOSCALERS.register(StepUpConfig, StepUp)
    AUTOSCALERS.unregister("step_up")
    with pytest.raises(CapsimError, match="policy must be one of none, hpa, kpa, ray, queue, scheduled, predictive$"):
        parse_scenario(SCENARIO)
