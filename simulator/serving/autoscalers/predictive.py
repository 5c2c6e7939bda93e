"""Predictive scaling: provision for the arrival rate one cold start (plus a period) ahead.

The forecast is the workload's known rate pattern (its peak over the provisioning horizon), or the
rate observed one ``forecast_period_s`` earlier (yesterday at this time, and the last few periods);
it provisions ``ceil(rate · headroom / target)`` with ``target`` the requests/s one replica
sustains within the SLO (``capsim sweep --max-rate`` measures it). capsim's own policy.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Self

from pydantic import Field, model_validator

from .base import Bounded, Observation, RateAt, ScalingConfig, clamp


class PredictiveConfig(ScalingConfig):
    """Replicas for the forecast arrival rate, requested a cold start ahead."""

    policy: Literal["predictive"] = Field(default="predictive", description="forecast-driven provisioning")
    target: float | None = Field(default=None, gt=0, description=(
        "required: requests/s one replica sustains within the SLO (capsim sweep --max-rate measures it)"))
    forecast: Literal["pattern", "history"] = Field(default="pattern", description=(
        "pattern: the workload's known rate curve; history: the rate observed one forecast_period_s earlier; "
        "default pattern"))
    forecast_period_s: float = Field(default=86400.0, gt=0, description=(
        "s; history: the pattern's period; default 86400 (a day)"))
    headroom: float = Field(default=1.0, gt=0, description="over-provisioning factor on the forecast rate; default 1 (none)")
    sync_period_s: float = Field(default=30.0, gt=0, description="s between forecasts; default 30 (capsim's)")

    @model_validator(mode="after")
    def _needs_target(self) -> Self:
        if self.target is None:
            raise ValueError("policy predictive needs target: the requests/s one replica sustains within the SLO "
                             "(capsim sweep --max-rate measures it)")
        return self


@dataclass
class Predictive(Bounded):
    target: float                        # requests/s one replica sustains within the SLO
    lead_s: float                        # provision this far ahead (cold start + a period)
    rate_at: RateAt | None = None        # known pattern, or None to use history
    forecast_period_s: float = 86400.0
    headroom: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 10
    period: float = 30.0
    observed: deque[tuple[float, float]] = field(default_factory=deque)     # (t, rate)

    @classmethod
    def from_config(cls, cfg: PredictiveConfig, *, cold_start_s: float, rate_at: RateAt | None) -> Predictive:
        assert cfg.target is not None        # the config's validator requires it
        return cls(cfg.target, cold_start_s + cfg.sync_period_s, rate_at if cfg.forecast == "pattern" else None,
                   cfg.forecast_period_s, cfg.headroom, cfg.min_replicas, cfg.max_replicas, cfg.sync_period_s)

    def forecast(self, t: float) -> float:
        if self.rate_at is not None:
            # the peak over the provisioning horizon, so capacity is there when the load arrives
            ts = [t + self.lead_s * i / 4 for i in range(5)]
            return max(self.rate_at(x) for x in ts)
        when = t + self.lead_s - self.forecast_period_s
        past = [r for s, r in self.observed if when - self.period <= s <= when + self.lead_s]
        recent = [r for s, r in self.observed if s > t - 4 * self.period]
        return max(past + recent, default=0.0)

    def step(self, t: float, current: int, obs: Observation) -> int:
        self.observed.append((t, obs.rate_rps))
        while self.observed and self.observed[0][0] < t - self.forecast_period_s - self.lead_s - self.period:
            self.observed.popleft()
        want = math.ceil(self.forecast(t) * self.headroom / self.target - 1e-9)
        return clamp(want, self.min_replicas, self.max_replicas)
