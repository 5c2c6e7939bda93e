"""Several models on one GPU budget: every deployment's serving cluster in one simpy environment, and
the pool's policy as a process that moves replicas between them.

Each deployment is the serving scenario it would be alone (``MultiModelScenario.serving_scenario``):
its own requests, random streams, router, replicas and engine, built by the same code as ``capsim
serve`` (``simulate.prepare`` and ``simulate.Cluster``). What the pool adds is one constraint and one
mover:

* **the constraint**: the GPUs held (replicas starting, serving or draining, each ``tp x attention_dp
  x pp`` GPUs) never exceed ``pool.gpus``. A deployment's own autoscaler (policy static) grows only
  into free GPUs (``Service.cap``); the mover starts a replica only on free GPUs, so a replica taken
  from one deployment is given to another when its last request has finished (``Service.on_release``).
* **the mover** (policy proportional): every ``period_s`` it samples each deployment's load; once
  per ``cooldown_s`` (after a first full ``window_s``) it divides the pool in proportion to the GPUs
  the load of the last ``window_s`` needs within each deployment's bounds, and applies the division
  with ``Service.scale_to`` (cancelling starting replicas first, then draining the least loaded).
  Signal ``load``: arrivals per second over one replica's steady-state capacity within the
  deployment's TPOT bound (the cost model's, ``plan.capacity.steady_state``, at its mean lengths)
  x GPUs per replica; signal
  ``outstanding``: requests queued or running over ``max_num_seqs`` x GPUs per replica.

With policy static and no autoscaler nothing crosses between deployments and no event is added, so
each deployment's result is the one it gets alone, bit for bit (a test checks).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from ..errors import CapsimError
from ..scenario.deployments import MultiModelScenario, ProportionalPolicy
from .multi_result import MultiModelResult, build_multi_result
from .service import Service
from .simulate import Cluster, Prepared, finish, prepare


def divide(gpus: int, need: list[float], gprs: list[int], lo: list[int], hi: list[int]) -> list[int]:
    """Replicas per deployment, the pool shared in proportion to the GPUs each one's load needs
    (``need``): each starts at its minimum (at least one replica); then, one replica at a time, the
    deployment with the most need per GPU it holds (the most loaded) that still fits and is below its
    maximum gets one more, until none fits (ties: the one holding fewer GPUs, then the first listed, so
    GPUs no load asks for are spread evenly). Replicas of several sizes make
    exact proportions impossible; this keeps the largest load per GPU as small as the sizes allow."""
    n = list(lo)
    free = gpus - sum(k * g for k, g in zip(n, gprs, strict=True))
    while True:
        fits = [i for i in range(len(n)) if n[i] < hi[i] and gprs[i] <= free]
        if not fits:
            return n
        i = max(fits, key=lambda j: (need[j] / (n[j] * gprs[j]), -n[j] * gprs[j], -j))
        n[i] += 1
        free -= gprs[i]


class Pool:
    """The pool's GPUs and the deployments drawing on them: what is held, the log of it, the mover."""

    def __init__(self, env: simpy.Environment, sc: MultiModelScenario, services: list[Service]) -> None:
        self.env, self.sc, self.services = env, sc, services
        self.gprs = [s.plan.gpus_per_replica for s in services]
        self.bounds = [sc.bounds(i) for i in range(len(services))]
        self.target: list[int] | None = None        # the mover's last division (replicas per deployment)
        self.moves = [0] * len(services)             # replicas given to each deployment by the mover
        self.taken = [0] * len(services)             # replicas taken from each
        self.log_t: list[float] = []
        self.log_held: list[tuple[int, ...]] = []     # GPUs held per deployment after each change
        held = self.held()
        if sum(held) > sc.pool.gpus:
            raise CapsimError(f"pool.gpus is {sc.pool.gpus} but the deployments start with {sum(held)} GPUs ("
                              + ", ".join(f"{s.sc.name} {h}" for s, h in zip(services, held, strict=True))
                              + "); raise pool.gpus or start fewer replicas")
        for s in services:
            s.on_log = self.record
            if s.controller is not None:
                s.cap = self._capper(s)
            if isinstance(sc.policy, ProportionalPolicy):
                s.on_release = self.grant
        self.record(0.0)
        if isinstance(sc.policy, ProportionalPolicy):
            env.process(self._mover(sc.policy))

    # ---- the GPUs ---------------------------------------------------------------------------------
    def held(self) -> list[int]:
        """GPUs held per deployment now: replicas requested and not yet released (starting, serving, draining)."""
        return [g * sum(1 for life in s.lives if life.released is None) for s, g in zip(self.services, self.gprs,
                                                                                        strict=True)]

    def free(self) -> int:
        return self.sc.pool.gpus - sum(self.held())

    def record(self, t: float) -> None:
        held = tuple(self.held())
        if self.log_held and self.log_held[-1] == held:
            return
        self.log_t.append(t)
        self.log_held.append(held)

    def _capper(self, s: Service) -> Callable[[int, float], int]:
        g = s.plan.gpus_per_replica

        def cap(want: int, t: float) -> int:
            """A scale-up gets the replicas the free GPUs hold, no more."""
            cur = s.requested
            return want if want <= cur else cur + min(want - cur, self.free() // g)
        return cap

    # ---- the mover --------------------------------------------------------------------------------
    @staticmethod
    def outstanding(s: Service) -> int:
        """Requests at the deployment not finished: on its replicas (draining ones too) or waiting for one."""
        return sum(r.outstanding for r in s.all if r.life.released is None) + len(s.buffer)

    def _per_gpu_unit(self, s: Service, p: ProportionalPolicy) -> float:
        """What one unit of the signal is worth in replicas: one replica's capacity in requests/s (load),
        or its batch slots (outstanding)."""
        if p.signal == "outstanding" or not s.plan.generative:
            return float(max(s.plan.max_num_seqs, 1))
        from ..plan.capacity import steady_state

        reqs = s.ledger.reqs
        mp, mo = (float(reqs.prompt.mean()), float(reqs.output.mean())) if len(reqs) else (1.0, 1.0)
        slo = s.sc.slo
        tpot = min((b for b in (slo.tpot_p50_s, slo.tpot_p90_s, slo.tpot_p99_s) if b is not None), default=math.inf)
        rate = steady_state(s.perf, s.plan, max(mp, 1.0), max(mo, 1.0), tpot)[0]
        return rate if rate > 0 else 1.0

    def _mover(self, p: ProportionalPolicy) -> Generator[simpy.Event, Any, None]:
        keep = max(1, math.ceil(p.window_s / p.period_s))
        samples: list[deque[float]] = [deque(maxlen=keep) for _ in self.services]
        unit = [self._per_gpu_unit(s, p) for s in self.services]
        issued = [s.issued for s in self.services]
        last = -math.inf
        while True:
            yield self.env.timeout(p.period_s)
            t = self.env.now
            if all(s.all_done for s in self.services):
                return
            for i, (q, s) in enumerate(zip(samples, self.services, strict=True)):
                if p.signal == "outstanding":
                    q.append(float(self.outstanding(s)))
                else:
                    q.append((s.issued - issued[i]) / p.period_s)
                    issued[i] = s.issued
            if t < p.window_s or t - last < p.cooldown_s:
                continue
            weights = [sum(q) / len(q) / u * g for q, u, g in zip(samples, unit, self.gprs, strict=True)]
            if sum(weights) <= 0:
                continue
            target = divide(self.sc.pool.gpus, weights, self.gprs, [b[0] for b in self.bounds],
                            [b[1] for b in self.bounds])
            if target == [s.requested for s in self.services]:
                continue
            last = t
            self.target = target
            for i, (s, n) in enumerate(zip(self.services, target, strict=True)):
                if n < s.requested:
                    self.taken[i] += s.requested - n
                    s.scale_to(n, t)
                    s._log(t)
            self.grant(t)

    def grant(self, t: float) -> None:
        """Start the replicas the last division gave, as far as free GPUs allow (the furthest below first)."""
        target = self.target
        if target is None:
            return
        while True:
            short = [i for i, s in enumerate(self.services)
                     if s.requested < target[i] and self.gprs[i] <= self.free() and not s.all_done]
            if not short:
                return
            i = max(short, key=lambda j: (target[j] - self.services[j].requested, -j))
            self.services[i].request_replica(t)
            self.moves[i] += 1
            self.services[i]._log(t)


def simulate_multi_model(sc: MultiModelScenario, *, fast_forward: bool = True,
                         progress: Callable[[float, float | None], None] | None = None) -> MultiModelResult:
    """Simulate several deployments sharing one GPU pool: each deployment's serving result, the pool's
    GPU-hours, cost and utilization, and the replicas the policy moved.

    ``fast_forward=False`` advances decode steps one event at a time (for checking the fast path);
    ``progress(simulated_s, total_s)`` is called along the run."""
    if not isinstance(sc, MultiModelScenario):
        raise CapsimError(f"simulate_multi_model needs a multi_model scenario (got kind {sc.kind!r})")
    env = simpy.Environment()
    preps: list[Prepared] = [prepare(sc.serving_scenario(i)) for i in range(len(sc.deployments))]
    clusters = [Cluster(p.scenario, p.reqs, p.stages, fast_forward=fast_forward, env=env) for p in preps]
    pool = Pool(env, sc, [c.stages[0] for c in clusters])
    horizon = sc.deployments[0].workload.horizon_s        # one for all (MultiModelScenario checks)
    if progress is None:
        env.run(until=horizon)
    else:
        known = [float(a.max()) for a in (p.reqs.arrival[np.isfinite(p.reqs.arrival)] for p in preps) if len(a)]
        total = horizon or max(known, default=None)    # a closed loop's arrivals are not known before the run
        step = total / 200 if total else 10.0
        while any(e.callbacks for *_, e in env._queue):   # as Cluster._run_reporting: the same events in order
            until = env.now + step if horizon is None else min(env.now + step, horizon)
            if until <= env.now:
                break
            env.run(until=until)
            progress(env.now, total)
    ends = [c.end_time() for c in clusters]
    results = [finish(p, c, end) for p, c, end in zip(preps, clusters, ends, strict=True)]
    return build_multi_result(sc, results, clusters, pool, span=max(ends, default=0.0))
