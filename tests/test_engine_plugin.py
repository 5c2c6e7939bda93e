"""A batching engine added from outside the library, through the public registration point only:
``fifo_one`` serves one request at a time, each for a fixed time. Registering it makes
``replica.batching: fifo_one`` (and its own key) load from a scenario like a built-in engine."""

from __future__ import annotations

import heapq
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

import pytest
import simpy
from pydantic import Field

from simulator import CapsimError, parse_scenario, simulate_serving
from simulator.serving.engines import ENGINES, ReplicaConfig
from simulator.serving.replica import Replica


class FifoOne(ReplicaConfig):
    """One request at a time, first come first served, each taking ``service_s``."""

    batching: Literal["fifo_one"] = "fifo_one"
    service_s: float = Field(gt=0, description="seconds each request takes, whatever its length")


class FifoOneEngine(Replica):
    def __init__(self, *, cfg: FifoOne, **kw: Any) -> None:
        self.service_s = cfg.service_s
        super().__init__(cfg=cfg, **kw)

    def start(self) -> simpy.Process:
        return self.env.process(self.run())

    def on_arrival_while_busy(self, r: int, t: float) -> None:
        """Nothing to do: the newcomer waits for the request in service."""

    def run(self) -> Generator[simpy.Event, Any, None]:
        led = self.ledger
        try:
            while not self.dead:
                if not self.waiting:
                    yield self.sleep()
                    continue
                _, _, r = heapq.heappop(self.waiting)
                now = max(self.t, self.env.now)
                led.first_sched[r] = now
                self.running += 1
                self.log(now)
                end = now + self.service_s
                self.record_busy(now, end, 0.0, 1)
                yield self.env.timeout(end - self.env.now)
                self.t = end
                led.first_token[r] = end
                led.generated[r] = led.output[r]
                self.finished([r], end)
        except simpy.Interrupt:      # the replica was released or lost
            return


ENGINES.register(FifoOne, FifoOneEngine)


def scenario(trace: Path, replica: dict) -> dict:
    return {"kind": "serving", "model": "llama-2-7b", "hardware": "a100-sxm-80gb", "replica": replica,
            "workload": {"arrival": {"process": "trace", "path": str(trace)}}}


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    p = tmp_path / "three.csv"
    p.write_text("timestamp,prompt_tokens,output_tokens\n0.0,100,1\n0.2,100,1\n1.5,100,1\n")
    return p


def test_plugin_engine_serves_one_request_at_a_time(trace: Path) -> None:
    """Fixed 0.5 s service. r0 arrives at 0 and is done at 0.5; r1 arrives at 0.2, waits for r0 and
    is done at 1.0 (0.3 s queued, 0.8 s end to end); r2 arrives at 1.5 to an idle replica, done at 2.0."""
    sc = parse_scenario(scenario(trace, {"batching": "fifo_one", "service_s": 0.5}))
    assert isinstance(sc.replica, FifoOne)
    r = simulate_serving(sc)
    q = r.requests
    assert q.queue_s.tolist() == pytest.approx([0.0, 0.3, 0.0])
    assert q.e2e_s.tolist() == pytest.approx([0.5, 0.8, 0.5])
    assert q.ttft_s.tolist() == pytest.approx([0.5, 0.8, 0.5])
    assert r["completed"] == 3 and r["simulated_s"] == pytest.approx(2.0)
    assert r["replica_layout"]["batching"] == "fifo_one" and r["replica_layout"]["max_num_seqs"] == 1
    assert r["gpu_utilization"] == pytest.approx(1.5 / 2.0)          # busy 3 × 0.5 s of 2 s


def test_plugin_engine_keys_are_checked_like_built_in_ones(trace: Path) -> None:
    with pytest.raises(CapsimError, match=r"unknown key 'replica.max_num_seqs'; allowed keys: batching, tp, pp, "
                                          r".*service_s under batching 'fifo_one'"):
        parse_scenario(scenario(trace, {"batching": "fifo_one", "service_s": 0.5, "max_num_seqs": 4}))
    with pytest.raises(CapsimError, match="replica.service_s: Field required"):
        parse_scenario(scenario(trace, {"batching": "fifo_one"}))
    with pytest.raises(CapsimError, match="batching must be one of none, static, dynamic, continuous, prefill_first, "
                                          "speculative, fifo_one"):
        parse_scenario(scenario(trace, {"batching": "fifo_two"}))
