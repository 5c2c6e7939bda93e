"""Ray Serve's request-based autoscaler.

``ceil(ongoing requests / target_ongoing_requests)`` (default 2) averaged over a 30 s look-back,
every 10 s; a scale-up must persist 30 s and a scale-down 600 s before it acts. Defaults are Ray
Serve's ``autoscaling_config`` (shared/reference/README.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from .base import Bounded, Observation, RateAt, ScalingConfig, clamp, windowed_mean


class RayServeConfig(ScalingConfig):
    """Ray Serve on ongoing requests per replica, with upscale and downscale delays."""

    policy: Literal["ray"] = Field(default="ray", description="Ray Serve autoscaling")
    target: float = Field(default=2.0, gt=0, description=(
        "ongoing requests per replica; Ray Serve default 2 (target_ongoing_requests)"))
    look_back_s: float = Field(default=30.0, gt=0, description=(
        "s of samples averaged; Ray Serve default 30 (look_back_period_s)"))
    scale_up_stabilization_s: float = Field(default=30.0, ge=0, description=(
        "s a scale-up decision must persist before it acts; Ray Serve default 30 (upscale_delay_s)"))
    scale_down_stabilization_s: float = Field(default=600.0, ge=0, description=(
        "s a scale-down decision must persist before it acts; Ray Serve default 600 (downscale_delay_s)"))
    sync_period_s: float = Field(default=10.0, gt=0, description=(
        "s between samples and decisions; Ray Serve default 10 (metrics_interval_s)"))


@dataclass
class RayServe(Bounded):
    target: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 10
    look_back_s: float = 30.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    period: float = 10.0
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    since: tuple[str, float] | None = None

    @classmethod
    def from_config(cls, cfg: RayServeConfig, *, cold_start_s: float, rate_at: RateAt | None) -> RayServe:
        return cls(cfg.target, cfg.min_replicas, cfg.max_replicas, cfg.look_back_s, cfg.scale_up_stabilization_s,
                   cfg.scale_down_stabilization_s, cfg.sync_period_s)

    def step(self, t: float, current: int, obs: Observation) -> int:
        ongoing = windowed_mean(self.samples, t, obs.concurrency, self.look_back_s)
        want = clamp(math.ceil(ongoing / self.target), self.min_replicas, self.max_replicas)
        direction = "up" if want > current else "down" if want < current else None
        if direction is None:
            self.since = None
            return current
        if self.since is None or self.since[0] != direction:
            self.since = (direction, t)
        delay = self.upscale_delay_s if direction == "up" else self.downscale_delay_s
        if t - self.since[1] >= delay:
            self.since = None
            return want
        return current
