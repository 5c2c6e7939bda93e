"""Knative Pod Autoscaler.

Target concurrency per replica × target utilisation (0.7); concurrency averaged over a 60 s stable
window and a 6 s panic window, sampled every 2 s; panics when the panic window wants ≥ 2× the
ready replicas, and never scales down while panicking (until a stable window passes without
panic); scales to zero (with ``min_replicas: 0``). Defaults are Knative's ``config-autoscaler``
(shared/reference/README.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from .base import Bounded, Observation, RateAt, ScalingConfig, clamp, windowed_mean


class KPAConfig(ScalingConfig):
    """Knative's concurrency autoscaler with its stable and panic windows."""

    policy: Literal["kpa"] = Field(default="kpa", description="Knative Pod Autoscaler")
    target: float = Field(default=100.0, gt=0, description=(
        "concurrent requests per replica; Knative default 100 (container-concurrency-target-default)"))
    target_utilization: float = Field(default=0.7, gt=0, le=1, description=(
        "share of the target aimed at; Knative default 0.7 (container-concurrency-target-percentage 70)"))
    stable_window_s: float = Field(default=60.0, gt=0, description="s averaged for decisions; Knative default 60 (stable-window)")
    panic_window_s: float = Field(default=6.0, gt=0, description=(
        "s averaged to detect bursts; Knative default 6 (panic-window-percentage 10 % of the stable window)"))
    panic_threshold: float = Field(default=2.0, gt=0, description=(
        "panic when the panic window wants this many times the ready replicas; Knative default 2 "
        "(panic-threshold-percentage 200)"))
    sync_period_s: float = Field(default=2.0, gt=0, description=(
        "s between samples and decisions; Knative default 2 (tick-interval)"))


@dataclass
class KPA(Bounded):
    target: float
    target_utilization: float = 0.7
    min_replicas: int = 0
    max_replicas: int = 10
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    period: float = 2.0
    samples: deque[tuple[float, float]] = field(default_factory=deque)   # (t, concurrency)
    panic_until: float = -math.inf

    @classmethod
    def from_config(cls, cfg: KPAConfig, *, cold_start_s: float, rate_at: RateAt | None) -> KPA:
        return cls(cfg.target, cfg.target_utilization, cfg.min_replicas, cfg.max_replicas, cfg.stable_window_s,
                   cfg.panic_window_s, cfg.panic_threshold, cfg.sync_period_s)

    def step(self, t: float, current: int, obs: Observation) -> int:
        stable = windowed_mean(self.samples, t, obs.concurrency, self.stable_window_s)
        per = self.target * self.target_utilization
        recent = [c for s, c in self.samples if s > t - self.panic_window_s]
        panic = sum(recent) / len(recent)
        want_stable, want_panic = math.ceil(stable / per), math.ceil(panic / per)
        if (obs.ready and want_panic >= self.panic_threshold * obs.ready) or (not obs.ready and want_panic > 0):
            self.panic_until = t + self.stable_window_s
        if t < self.panic_until:
            return clamp(max(want_panic, current), self.min_replicas, self.max_replicas)
        return clamp(want_stable, self.min_replicas, self.max_replicas)
