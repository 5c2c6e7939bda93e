"""Serving workload keys: how requests arrive (open-loop processes, closed-loop users, offline, a
trace), their prompt and output lengths, request classes and prefix-cache hits."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import _Strict


class Fixed(_Strict):
    dist: Literal["fixed"]
    value: int = Field(ge=1)


class Uniform(_Strict):
    dist: Literal["uniform"]
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class LogNormal(_Strict):
    dist: Literal["lognormal"]
    mean: float = Field(gt=0, description="mean token count")
    sigma: float = Field(default=0.5, ge=0)
    max: int | None = Field(default=None, ge=1)


class Exponential(_Strict):
    dist: Literal["exponential"]
    mean: float = Field(gt=0, description="mean token count (memoryless lengths, rounded, at least 1)")


class Empirical(_Strict):
    dist: Literal["empirical"]
    path: str
    column: str | None = None


LengthDist = Annotated[Fixed | Uniform | LogNormal | Exponential | Empirical, Field(discriminator="dist")]


_REQUESTS = "stop after this many requests (and/or at workload.duration_s)"


class Poisson(_Strict):
    process: Literal["poisson"]
    rate_rps: float = Field(gt=0)
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)


class Gamma(_Strict):
    process: Literal["gamma"]
    rate_rps: float = Field(gt=0)
    cv: float = Field(default=1.0, gt=0, description="coefficient of variation of inter-arrival times")
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)


class Diurnal(_Strict):
    process: Literal["diurnal"]
    mean_rps: float | None = Field(default=None, gt=0)
    peak_to_trough: float = Field(default=3.0, ge=1)
    period_s: float = Field(default=86400, gt=0)
    peak_at_s: float = Field(default=50400, ge=0, description="14:00 by default")
    schedule: list[tuple[float, float]] | None = Field(default=None, description="[[t_s, rate_rps], ...] piecewise")
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)

    @model_validator(mode="after")
    def _rate(self) -> Diurnal:
        if self.schedule is None and self.mean_rps is None:
            raise ValueError("give mean_rps (sinusoidal day) or schedule ([[t_s, rate_rps], ...] piecewise)")
        if self.schedule is not None:
            if not self.schedule:
                raise ValueError("schedule is empty")
            ts = [t for t, _ in self.schedule]
            if ts[0] != 0 or any(b <= a for a, b in itertools.pairwise(ts)):
                raise ValueError(f"schedule times must start at 0 and increase (got {ts})")
            if any(r < 0 for _, r in self.schedule) or not any(r > 0 for _, r in self.schedule):
                raise ValueError("schedule rates must be >= 0 and not all 0")
        return self


class ClosedLoop(_Strict):
    process: Literal["closed_loop"]
    concurrency: int = Field(ge=1)
    requests: int = Field(ge=1)
    think_time_s: float = Field(default=0.0, ge=0, description="fixed pause between a response and the next request")


class Offline(_Strict):
    process: Literal["offline"]
    requests: int = Field(ge=1)


class Trace(_Strict):
    process: Literal["trace"]
    path: str
    time_scale: float = Field(default=1.0, gt=0)


Arrival = Annotated[Poisson | Gamma | Diurnal | ClosedLoop | Offline | Trace, Field(discriminator="process")]


class RequestClass(_Strict):
    name: str
    weight: float = Field(default=1.0, gt=0)
    priority: int = 0


class Workload(_Strict):
    duration_s: float | None = Field(default=None, gt=0)
    arrival: Arrival = Field(default_factory=lambda: Poisson(process="poisson", rate_rps=1.0))
    prompt_tokens: LengthDist = Field(default_factory=lambda: Fixed(dist="fixed", value=512))
    output_tokens: LengthDist = Field(default_factory=lambda: Fixed(dist="fixed", value=128))
    classes: list[RequestClass] = Field(default_factory=list)
    prefix_cache_hit_rate: float = Field(default=0.0, ge=0, le=1,
                                         description="fraction of prompt tokens found in the prefix cache")
    horizon_s: float | None = Field(default=None, gt=0,
                                    description="stop the simulation here; default: run until every request is done")
