"""Replicas by time of day: ``schedule: [[t_s, replicas], ...]``, repeating every
``schedule_period_s`` if given (like a cron-driven scaler, e.g. KEDA's cron trigger)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

from pydantic import Field, model_validator

from .base import Observation, RateAt, ScalingConfig, clamp


class ScheduledConfig(ScalingConfig):
    """A fixed plan of replica counts over time."""

    policy: Literal["scheduled"] = Field(default="scheduled", description="replicas from a schedule")
    schedule: list[tuple[float, int]] | None = Field(default=None, description=(
        "required: [[t_s, replicas], ...]; from each t_s on, that many replicas (the first entry also before it)"))
    schedule_period_s: float | None = Field(default=None, gt=0, description=(
        "s after which the schedule repeats (86400: daily); default: it does not"))
    sync_period_s: float = Field(default=15.0, gt=0, description=(
        "s between checks of the schedule; default 15 (capsim's: the HPA's sync period)"))

    @model_validator(mode="after")
    def _needs_schedule(self) -> Self:
        if not self.schedule:
            raise ValueError("policy scheduled needs schedule: [[t_s, replicas], ...]")
        return self


@dataclass
class Scheduled:
    schedule: list[tuple[float, int]]
    period_s: float | None = None
    min_replicas: int = 0
    max_replicas: int = 10
    period: float = 15.0

    @classmethod
    def from_config(cls, cfg: ScheduledConfig, *, cold_start_s: float, rate_at: RateAt | None) -> Scheduled:
        return cls([(float(t), int(n)) for t, n in cfg.schedule or []], cfg.schedule_period_s, cfg.min_replicas,
                   cfg.max_replicas, cfg.sync_period_s)

    def at(self, t: float) -> int:
        x = t % self.period_s if self.period_s else t
        n = self.schedule[0][1]
        for s, r in self.schedule:
            if s <= x:
                n = r
        return clamp(int(n), self.min_replicas, self.max_replicas)

    def initial(self, replicas: int) -> int:
        return self.at(0.0)        # the schedule, not cluster.replicas, sets the fleet at t = 0

    def step(self, t: float, current: int, obs: Observation) -> int:
        return self.at(t)
