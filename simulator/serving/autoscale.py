"""Autoscaling controllers with the semantics of the systems users run (see shared/reference/README.md).

Each controller is a small pure object: every ``period`` seconds the service calls ``step`` with the
time, the replicas it currently wants (ready + starting) and what it observed, and the controller
returns how many it wants now. No simpy here, so each can be checked against hand-computed
sequences.

- ``hpa`` (Kubernetes HorizontalPodAutoscaler): ``desired = ceil(current · metric / target)``, no
  change within the tolerance (0.1); recommendations are stabilised (scale-down: the max over the
  last 300 s; scale-up: the min over its window, 0 s by default); scale-up is limited to
  ``max(2 · current, current + 4)`` per period; sync every 15 s.
- ``kpa`` (Knative): target concurrency per replica × target utilisation (0.7); concurrency averaged
  over a 60 s stable window and a 6 s panic window, sampled every 2 s; panics when the panic
  window wants ≥ 2× the ready replicas, and never scales down while panicking (until a stable
  window passes without panic); scales to zero.
- ``ray`` (Ray Serve): ``ceil(ongoing requests / target_ongoing_requests)`` (default 2) averaged over a
  30 s look-back, every 10 s; a scale-up must persist 30 s and a scale-down 600 s before it acts.
- ``queue`` (KEDA-style queue scaler): HPA arithmetic on queued requests per replica, polled every
  30 s; scales to zero after a 300 s cooldown with an empty queue.
- ``scheduled``: replicas by time of day from ``schedule: [[t_s, replicas], ...]`` (repeating every
  ``schedule_period_s`` if given).
- ``predictive``: forecasts the arrival rate one cold start (plus a period) ahead — from the
  workload's known rate pattern, or the observed rate one ``forecast_period_s`` earlier — and
  provisions ``ceil(rate · headroom / target)`` with ``target`` the requests/s one replica sustains.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Defaults per policy, from the systems' documentation (reference README).
PERIOD_S = {"hpa": 15.0, "kpa": 2.0, "ray": 10.0, "queue": 30.0, "scheduled": 15.0, "predictive": 30.0}
TARGET = {"hpa": 8.0, "kpa": 100.0, "ray": 2.0, "queue": 5.0}


@dataclass
class Observation:
    metric: float = 0.0            # per ready replica: utilisation, concurrency, queue or KV use
    concurrency: float = 0.0       # requests queued or running in the whole service
    queued: float = 0.0            # requests waiting (replica queues + the scale-from-zero buffer)
    ready: int = 0
    rate_rps: float = 0.0          # arrivals over the last period


def clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, n))


def windowed_mean(samples: deque, t: float, value: float, span: float) -> float:
    """Add the sample taken at ``t``, forget those ``span`` or more seconds old; the mean of the rest."""
    samples.append((t, value))
    while samples and samples[0][0] <= t - span:
        samples.popleft()
    return sum(c for _, c in samples) / len(samples)


@dataclass
class HPA:
    target: float
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    down_window_s: float = 300.0
    up_window_s: float = 0.0
    period: float = 15.0
    history: deque = field(default_factory=deque)   # (t, raw recommendation)

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


@dataclass
class KPA:
    target: float
    target_utilization: float = 0.7
    min_replicas: int = 0
    max_replicas: int = 10
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    period: float = 2.0
    samples: deque = field(default_factory=deque)   # (t, concurrency)
    panic_until: float = -math.inf

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


@dataclass
class RayServe:
    target: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 10
    look_back_s: float = 30.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    period: float = 10.0
    samples: deque = field(default_factory=deque)
    since: tuple[str, float] | None = None

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


@dataclass
class QueueScaler:
    hpa: HPA
    cooldown_s: float = 300.0
    idle_since: float | None = None

    @property
    def period(self) -> float:
        return self.hpa.period

    def step(self, t: float, current: int, obs: Observation) -> int:
        if obs.concurrency == 0:
            self.idle_since = t if self.idle_since is None else self.idle_since
            if t - self.idle_since >= self.cooldown_s and self.hpa.min_replicas == 0:
                return 0
        else:
            self.idle_since = None
        if current == 0 and obs.queued > 0:
            return clamp(math.ceil(obs.queued / self.hpa.target), 1, self.hpa.max_replicas)
        return max(self.hpa.step(t, current, obs), 1 if obs.concurrency else self.hpa.min_replicas)


@dataclass
class Scheduled:
    schedule: list[tuple[float, int]]
    period_s: float | None = None
    min_replicas: int = 0
    max_replicas: int = 10
    period: float = 15.0

    def at(self, t: float) -> int:
        x = t % self.period_s if self.period_s else t
        n = self.schedule[0][1]
        for s, r in self.schedule:
            if s <= x:
                n = r
        return clamp(int(n), self.min_replicas, self.max_replicas)

    def step(self, t: float, current: int, obs: Observation) -> int:
        return self.at(t)


@dataclass
class Predictive:
    target: float                        # requests/s one replica sustains within the SLO
    lead_s: float                        # provision this far ahead (cold start + a period)
    rate_at: Callable[[float], float] | None = None   # known pattern, or None to use history
    forecast_period_s: float = 86400.0
    headroom: float = 1.0
    min_replicas: int = 1
    max_replicas: int = 10
    period: float = 30.0
    observed: deque = field(default_factory=deque)     # (t, rate)

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
