"""A KEDA-style queue scaler.

KEDA feeds an HPA with an external metric; for a queue it is the waiting requests per replica, so
this is HPA arithmetic (tolerance, scale-up limit, no stabilization windows) on queued requests,
polled every 30 s; it scales to zero after a 300 s cooldown with nothing queued or running (with
``min_replicas: 0``), and from zero to ``ceil(queued / target)``. Defaults are KEDA's ScaledObject
(shared/reference/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from .base import Metric, Observation, RateAt, ScalingConfig, clamp
from .hpa import HPA


class QueueConfig(ScalingConfig):
    """Queued requests per replica, scaled like KEDA drives an HPA."""

    policy: Literal["queue"] = Field(default="queue", description="KEDA-style queue-length scaler")
    target: float = Field(default=5.0, gt=0, description=(
        "queued requests per replica; default 5 (capsim's: KEDA's target is per scaler)"))
    tolerance: float = Field(default=0.1, ge=0, description="the HPA's tolerance KEDA scales through; Kubernetes default 0.1")
    cooldown_s: float = Field(default=300.0, ge=0, description=(
        "s idle before scaling to zero (with min_replicas 0); KEDA default 300 (cooldownPeriod)"))
    sync_period_s: float = Field(default=30.0, gt=0, description="s between polls; KEDA default 30 (pollingInterval)")

    def per_replica_metric(self) -> Metric:
        return "queue"


@dataclass
class QueueScaler:
    hpa: HPA
    cooldown_s: float = 300.0
    idle_since: float | None = None

    @classmethod
    def from_config(cls, cfg: QueueConfig, *, cold_start_s: float, rate_at: RateAt | None) -> QueueScaler:
        return cls(HPA(cfg.target, cfg.min_replicas, cfg.max_replicas, cfg.tolerance, 0.0, 0.0, cfg.sync_period_s),
                   cfg.cooldown_s)

    @property
    def period(self) -> float:
        return self.hpa.period

    def initial(self, replicas: int) -> int:
        return self.hpa.initial(replicas)

    def step(self, t: float, current: int, obs: Observation) -> int:
        if obs.concurrency == 0:
            self.idle_since = t if self.idle_since is None else self.idle_since
            if t - self.idle_since >= self.cooldown_s and self.hpa.min_replicas == 0:
                return 0
        else:
            self.idle_since = None
        if current == 0 and obs.queued > 0:
            return clamp(math.ceil(obs.queued / self.hpa.target), 1, self.hpa.max_replicas)
        return max(self.hpa.step(t, current, obs), 1)     # to zero only through the cooldown above
