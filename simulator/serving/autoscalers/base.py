"""What every autoscaling policy shares: the keys common to all of them, what the service observes
each period, the controller protocol, and the registry that makes the policies a tagged union.

A policy is one module: a config model (``policy: Literal["name"] = "name"`` and the knobs of that
system, each with its default and where the default comes from) and a controller built from it by
``from_config``. The controller is a small pure object: every ``period`` seconds the service calls
``step`` with the time, the replicas it currently wants (ready + starting) and what it observed,
and the controller returns how many it wants now. No simpy here, so each controller can be checked
against hand-computed sequences.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, Self

from pydantic import Field, model_validator

from ...scenario.base import Variants, _Strict

Metric = Literal["utilization", "concurrency", "queue", "kv_cache"]
RateAt = Callable[[float], float]

# The default model load: the reference's 70B-on-8-GPUs cold start is 60 s peer check + 10 s of
# weights + 70 s compile + 60 s graph capture, i.e. 190 s fixed plus 140 GB of weights in 10 s.
LOAD_FIXED_S = 190.0
LOAD_BYTES_PER_S = 14e9


class AutoscalingConfig(_Strict):
    """Keys of every policy, the fixed fleet (``none``) included: how long a new replica takes to
    serve. A replacement for a failed or preempted replica starts just as cold."""

    policy: str = Field(description="which controller sets the replica count")
    node_provision_s: float = Field(default=120.0, ge=0, description=(
        "s from requesting a replica to its node being ready; default 120 s (the reference: a new node is "
        "typically 2-8 min from request to ready)"))
    model_load_s: float | None = Field(default=None, ge=0, description=(
        "s from node ready to serving; default 190 s + the weights per GPU at 14 GB/s (the reference's 70B on "
        "8 GPUs: 60 s peer check + 10 s weights + 70 s compile + 60 s graph capture)"))

    def cold_start_s(self, weight_bytes_per_gpu: float) -> float:
        """Request to serving for a replica holding ``weight_bytes_per_gpu`` of weights per GPU."""
        load = self.model_load_s if self.model_load_s is not None else LOAD_FIXED_S + weight_bytes_per_gpu / LOAD_BYTES_PER_S
        return self.node_provision_s + load

    def per_replica_metric(self) -> Metric:
        """What ``Observation.metric`` carries for this policy (only the HPA family reads it)."""
        return "concurrency"


class ScalingConfig(AutoscalingConfig):
    """Keys of every policy that changes the replica count: its bounds and how often it decides."""

    min_replicas: int = Field(default=1, ge=0, description=(
        "lower bound; 0 lets the policy scale to zero (requests wait in a buffer for a cold start); default 1 "
        "(capsim's: Knative and KEDA default to 0, Kubernetes HPA to 1)"))
    max_replicas: int = Field(default=10, ge=1, description="upper bound; default 10 (capsim's)")
    sync_period_s: float = Field(default=15.0, gt=0, description="s between decisions")

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


AUTOSCALERS: Variants[AutoscalingConfig] = Variants("policy", default="none", what="autoscaling policy")


@dataclass
class Observation:
    """What the service measured at a decision."""

    metric: float = 0.0            # per ready replica: utilisation, concurrency, queue or KV use
    concurrency: float = 0.0       # requests queued or running in the whole service
    queued: float = 0.0            # requests waiting (replica queues + the scale-from-zero buffer)
    ready: int = 0
    rate_rps: float = 0.0          # arrivals over the last period


class Controller(Protocol):
    """An autoscaler: decides every ``period`` seconds how many replicas the service should have."""

    @property
    def period(self) -> float: ...

    def initial(self, replicas: int) -> int:
        """The replicas to start with, given ``cluster.replicas``."""
        ...

    def step(self, t: float, current: int, obs: Observation) -> int:
        """The replicas wanted at ``t``, given those wanted now (ready + starting) and what was observed."""
        ...


class ControllerType(Protocol):
    """What ``AUTOSCALERS`` maps a policy to: a way to build its controller from its config."""

    def from_config(self, cfg: AutoscalingConfig, /, *, cold_start_s: float, rate_at: RateAt | None) -> Controller: ...


def build(cfg: AutoscalingConfig, *, cold_start_s: float, rate_at: RateAt | None) -> Controller | None:
    """The controller ``cfg`` selects (None for a fixed fleet). ``cold_start_s`` is a new replica's
    request-to-serving time; ``rate_at`` the workload's known arrival rate at a time, if any."""
    impl: ControllerType | None = AUTOSCALERS.impl(cfg.policy)
    return None if impl is None else impl.from_config(cfg, cold_start_s=cold_start_s, rate_at=rate_at)


class Bounded:
    """Controllers with ``min_replicas``/``max_replicas``: they start within their bounds."""

    min_replicas: int
    max_replicas: int

    def initial(self, replicas: int) -> int:
        return clamp(replicas, self.min_replicas, self.max_replicas)


def clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, n))


def windowed_mean(samples: deque[tuple[float, float]], t: float, value: float, span: float) -> float:
    """Add the sample taken at ``t``, forget those ``span`` or more seconds old; the mean of the rest."""
    samples.append((t, value))
    while samples and samples[0][0] <= t - span:
        samples.popleft()
    return sum(c for _, c in samples) / len(samples)
