"""Kubernetes HorizontalPodAutoscaler.

``desired = ceil(current · metric / target)``, no change within the tolerance (0.1);
recommendations are stabilised (scale-down: the max over the last 300 s; scale-up: the min over
its window, 0 s by default); scale-up is limited to ``max(2 · current, current + 4)`` per period
(the default scale-up policy: 100 % or 4 pods per 15 s); sync every 15 s. Defaults are the
Kubernetes documentation's (shared/reference/README.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from .base import Bounded, Metric, Observation, RateAt, ScalingConfig, clamp


class HPAConfig(ScalingConfig):
    """Kubernetes HPA on one per-replica metric."""

    policy: Literal["hpa"] = Field(default="hpa", description="Kubernetes HorizontalPodAutoscaler")
    metric: Metric = Field(default="concurrency", description=(
        "per-replica metric tracked: concurrency (requests queued or running), queue (requests waiting), "
        "utilization or kv_cache (fractions of busy time / KV blocks); default concurrency (capsim's)"))
    target: float = Field(default=8.0, gt=0, description=(
        "the metric's value per replica the HPA aims at; default 8 concurrent requests (capsim's: the HPA has "
        "no default target)"))
    tolerance: float = Field(default=0.1, ge=0, description=(
        "no change while |metric / target - 1| is within it; Kubernetes default 0.1 "
        "(--horizontal-pod-autoscaler-tolerance)"))
    scale_down_stabilization_s: float = Field(default=300.0, ge=0, description=(
        "s; scale down to the highest recommendation of this window; Kubernetes default 300 "
        "(behavior.scaleDown.stabilizationWindowSeconds)"))
    scale_up_stabilization_s: float = Field(default=0.0, ge=0, description=(
        "s; scale up to the lowest recommendation of this window; Kubernetes default 0 "
        "(behavior.scaleUp.stabilizationWindowSeconds)"))
    sync_period_s: float = Field(default=15.0, gt=0, description=(
        "s between decisions; Kubernetes default 15 (--horizontal-pod-autoscaler-sync-period)"))

    def per_replica_metric(self) -> Metric:
        return self.metric


@dataclass
class HPA(Bounded):
    target: float
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    down_window_s: float = 300.0
    up_window_s: float = 0.0
    period: float = 15.0
    history: deque[tuple[float, int]] = field(default_factory=deque)   # (t, raw recommendation)

    @classmethod
    def from_config(cls, cfg: HPAConfig, *, cold_start_s: float, rate_at: RateAt | None) -> HPA:
        return cls(cfg.target, cfg.min_replicas, cfg.max_replicas, cfg.tolerance, cfg.scale_down_stabilization_s,
                   cfg.scale_up_stabilization_s, cfg.sync_period_s)

    def raw(self, current: int, obs: Observation) -> int:
        if obs.ready == 0:
            return current if obs.concurrency == 0 else max(current, 1)
        ratio = obs.metric / self.target
        if abs(ratio - 1.0) <= self.tolerance:
            return current
        return math.ceil(current * ratio - 1e-9)

    def step(self, t: float, current: int, obs: Observation) -> int:
        raw = clamp(self.raw(current, obs), self.min_replicas, self.max_replicas)
        self.history.append((t, raw))
        keep = max(self.down_window_s, self.up_window_s)
        while self.history and self.history[0][0] < t - keep:
            self.history.popleft()
        up = min((r for s, r in self.history if s > t - self.up_window_s), default=raw) if self.up_window_s else raw
        down = max((r for s, r in self.history if s > t - self.down_window_s), default=raw) if self.down_window_s else raw
        rec = current
        if rec < up:
            rec = up
        if rec > down:
            rec = down
        if rec > current:   # default scale-up policy: max(100%, 4 pods) per period
            rec = min(rec, max(2 * current, current + 4))
        return clamp(rec, self.min_replicas, self.max_replicas)
