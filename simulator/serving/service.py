"""A service: replicas of one model behind a router, scaled over time, losing replicas to faults.

Replica lifecycle: *requested* (it costs money from here) → *ready* after node provisioning and
model load (the cold start) → serving → *draining* on scale-down or spot notice (no new requests;
it finishes what it holds) → *released*. A replica can also *fail* (MTBF) or be *preempted* at the
end of a spot notice: what it held is retried on other replicas, up to ``faults.max_retries``.
While no replica is ready, requests wait in the service's buffer (Knative's activator), from which
they are routed as soon as one is.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from ..costmodel.inference import InferenceModel
from ..order_stats import percentiles
from ..scenario import ServingScenario
from .autoscalers import Controller, Observation, build
from .engines import ReplicaPlan, build_engine
from .ledger import Ledger
from .replica import Replica
from .router import Router
from .streams import ServiceStreams


@dataclass
class Life:
    """One replica slot's history (times in s; None until it happens)."""

    id: int
    requested: float
    ready: float | None = None
    released: float | None = None
    spot: bool = False


class Service:
    def __init__(self, *, env: simpy.Environment, sc: ServingScenario, perf: InferenceModel, plan: ReplicaPlan,
                 ledger: Ledger, fast_forward: bool, streams: ServiceStreams,
                 rate_at: Callable[[float], float] | None = None) -> None:
        """``streams``: this service's random streams, drawn centrally for the whole path
        (:func:`simulator.serving.streams.service_streams`)."""
        self.env, self.sc, self.perf, self.plan, self.ledger = env, sc, perf, plan, ledger
        self.fast_forward = fast_forward
        self.rng_faults = streams.faults
        self.active: list[Replica] = []
        self.all: list[Replica] = []
        self.lives: list[Life] = []
        self.starting: dict[int, simpy.Process] = {}
        self.buffer: deque[int] = deque()
        c = sc.cluster
        self.router = Router(c.router, self.active, streams.router, cache_threshold=c.cache_threshold,
                             balance_abs=c.balance_abs_threshold, balance_rel=c.balance_rel_threshold)
        self.max_queue = sc.replica.max_queue
        self.max_positions = perf.model.max_positions if plan.generative else 0
        self.cold_start = sc.autoscaling.cold_start_s(perf.weight_bytes_per_gpu())
        self.controller: Controller | None = build(sc.autoscaling, cold_start_s=self.cold_start, rate_at=rate_at)
        self.metric = sc.autoscaling.per_replica_metric()
        self.issued = 0
        self._issued_at_last = 0           # for the arrival rate the autoscaler observes
        self.cache_hits = 0                # requests a multi-service path answered from this service's cache
        self.finished_n = 0
        self.arrivals_done = False
        self.retries = np.zeros(len(ledger.reqs), dtype=np.int32)   # times each request was lost with its replica
        self.resent = 0   # requests re-sent after a loss (a loss past max_retries fails the request instead)
        self.failed_replicas = 0
        self.preempted_replicas = 0
        # scaling log: (t, requested, ready)
        self.scale_t: list[float] = []
        self.scale_req: list[int] = []
        self.scale_ready: list[int] = []
        # a pool of several deployments (serving.deployments) watches the GPUs held and may bound a scale-up:
        # on_log(t) after every change of the fleet, on_release(t) when a replica's GPUs are free again,
        # cap(want, t) the replicas an autoscaler may have; None alone (nothing changes then)
        self.on_log: Callable[[float], None] | None = None
        self.on_release: Callable[[float], None] | None = None
        self.cap: Callable[[int, float], int] | None = None
        n0 = sc.cluster.replicas if self.controller is None else self.controller.initial(sc.cluster.replicas)
        for _ in range(n0):
            self._ready(self._new_life(0.0), 0.0)
        self._log(0.0)
        if self.controller is not None:
            env.process(self._autoscaler(self.controller))

    # ---- requests ---------------------------------------------------------------------------------
    def dispatch(self, r: int, t: float) -> None:
        """Route request ``r`` arriving at ``t``, buffer it while no replica is ready, or reject it."""
        self.issued += 1
        led = self.ledger
        if self.max_positions and led.prompt[r] + led.output[r] > self.max_positions:
            led.reject(r, t, "exceeds_max_positions")
            return
        if not self.active:
            if self.max_queue is not None and len(self.buffer) >= self.max_queue:
                led.reject(r, t, "queue_full")
            else:
                self.buffer.append(r)
            return
        rep = self.router.choose(t, r)
        reason = rep.admissible(r)
        if reason is None and self.max_queue is not None and len(rep.waiting) >= self.max_queue:
            reason = self._shed(rep, r, t)
        if reason is not None:
            led.replica[r] = rep.index
            led.reject(r, t, reason)
            return
        rep.enqueue(r, t)

    def _shed(self, rep: Replica, r: int, t: float) -> str | None:
        """Queue full: a request of higher priority takes the place of the lowest-priority queued one."""
        if not rep.waiting:                   # max_queue 0: nothing may wait
            return "queue_full"
        worst = max(rep.waiting)              # (-priority, order, request): lowest priority, newest
        if -worst[0] >= self.ledger.priority[r]:
            return "queue_full"
        rep.waiting.remove(worst)
        heapq.heapify(rep.waiting)
        rep.outstanding -= 1
        rep.log(t)
        self.ledger.reject(worst[2], t, "shed")
        return None

    def on_finish(self, r: int, t: float) -> None:
        self.finished_n += 1

    def stage_stats(self) -> dict[str, Any]:
        """Outcomes at this service (for a multi-service breakdown)."""
        led = self.ledger
        reached = np.isfinite(led.reqs.arrival)
        done = led.status == 1
        lat = (led.done - led.reqs.arrival)[done]
        return {"reached": int(reached.sum()), "served": int(done.sum()) - self.cache_hits,
                "cache_hits": self.cache_hits, "not_completed": int((reached & ~done).sum()),
                "latency_p50_s": float(percentiles(lat, (50,))[0]) if len(lat) else None,
                "latency_p99_s": float(percentiles(lat, (99,))[0]) if len(lat) else None}


    @property
    def all_done(self) -> bool:
        return self.arrivals_done and self.finished_n >= self.issued and not self.buffer

    # ---- lifecycle --------------------------------------------------------------------------------
    def _new_life(self, t: float) -> Life:
        spot = bool(self.rng_faults.random() < self.sc.faults.spot_fraction) if self.sc.faults.spot_fraction else False
        life = Life(len(self.lives), t, spot=spot)
        self.lives.append(life)
        return life

    @property
    def requested(self) -> int:
        return len(self.active) + len(self.starting)

    def _log(self, t: float) -> None:
        self.scale_t.append(t)
        self.scale_req.append(self.requested)
        self.scale_ready.append(len(self.active))
        if self.on_log is not None:
            self.on_log(t)

    def request_replica(self, t: float) -> None:
        life = self._new_life(t)
        self.starting[life.id] = self.env.process(self._cold_start(life))

    def _cold_start(self, life: Life) -> Generator[simpy.Event, Any, None]:
        try:
            yield self.env.timeout(self.cold_start)
        except simpy.Interrupt:            # cancelled before it was ready
            return
        del self.starting[life.id]
        self._ready(life, self.env.now)
        self._log(self.env.now)

    def _ready(self, life: Life, t: float) -> None:
        rep = build_engine(self.sc.replica, env=self.env, index=life.id, ledger=self.ledger, perf=self.perf,
                           plan=self.plan, fast_forward=self.fast_forward)
        rep.t = t
        rep.on_drained = self._drained
        if self.controller is not None:       # a streamed run keeps the busy rows its busy-time metric reads
            rep.keep_s = self.controller.period
        life.ready = t
        self.active.append(rep)
        self.all.append(rep)
        rep.life = life
        self._arm_faults(rep, t)
        while self.buffer and self.active:
            self.dispatch_buffered(self.buffer.popleft(), t)

    def dispatch_buffered(self, r: int, t: float) -> None:
        self.issued -= 1                 # dispatch counts it again
        self.dispatch(r, t)

    def _arm_faults(self, rep: Replica, t: float) -> None:
        f = self.sc.faults
        if f.replica_mtbf_hours:
            self.env.process(self._fail_after(rep, float(self.rng_faults.exponential(f.replica_mtbf_hours * 3600))))
        if rep.life.spot and f.spot_preemptions_per_hour > 0:
            self.env.process(self._preempt_after(rep, float(self.rng_faults.exponential(3600 / f.spot_preemptions_per_hour))))

    def drain(self, rep: Replica, t: float) -> None:
        if rep not in self.active:
            return
        self.active.remove(rep)
        rep.draining = True
        if rep.outstanding == 0:
            self._release(rep, t)

    def _drained(self, rep: Replica, t: float) -> None:
        self._release(rep, t)
        self._log(t)

    def _release(self, rep: Replica, t: float) -> None:
        if rep.life.released is None:
            rep.life.released = t
            rep.kill()
            if self.on_release is not None:
                self.on_release(t)

    def _lose(self, rep: Replica, t: float, *, replace: bool) -> None:
        """The replica is gone: retry what it held elsewhere (or fail it after max_retries)."""
        if rep.life.released is not None:
            return
        if rep in self.active:
            self.active.remove(rep)
        rep.life.released = t
        for r in rep.kill():
            self.retries[r] += 1
            if self.retries[r] > self.sc.faults.max_retries:
                self.ledger.fail(r, t)
            else:
                self.resent += 1
                self.ledger.reset_for_retry(r)
                self.dispatch_buffered(r, t)
        if replace and not self.all_done:
            self.request_replica(t)
        self._log(t)

    def _fail_after(self, rep: Replica, delay: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(delay)
        if rep.life.released is None and not self.all_done:
            self.failed_replicas += 1
            # a static fleet replaces what it lost; an autoscaler sees the gap and decides itself
            self._lose(rep, self.env.now, replace=self.controller is None)

    def _preempt_after(self, rep: Replica, delay: float) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(delay)
        if rep.life.released is not None or self.all_done:
            return
        t = self.env.now
        self.preempted_replicas += 1
        self.drain(rep, t)                          # notice: no new requests, a replacement starts now
        self.request_replica(t)
        self._log(t)
        yield self.env.timeout(self.sc.faults.spot_notice_s)
        self._lose(rep, self.env.now, replace=False)

    # ---- autoscaling ------------------------------------------------------------------------------
    def observe(self, t: float, period: float) -> Observation:
        reps = self.active
        queued = sum(len(r.waiting) for r in reps) + len(self.buffer)
        conc = sum(r.outstanding for r in reps) + len(self.buffer)
        metric = 0.0
        if reps:
            m = self.metric
            if m == "concurrency":
                metric = conc / len(reps)
            elif m == "queue":
                metric = queued / len(reps)
            elif m == "kv_cache":
                metric = float(np.mean([min(r.kv_load(t), 1.0) for r in reps]))
            else:
                metric = float(np.mean([r.busy_between(t - period, t) for r in reps])) / period
        arrivals = self.issued - self._issued_at_last
        self._issued_at_last = self.issued
        return Observation(metric=metric, concurrency=conc, queued=queued, ready=len(reps), rate_rps=arrivals / period)

    def scale_to(self, n: int, t: float) -> None:
        cur = self.requested
        if n > cur:
            for _ in range(n - cur):
                self.request_replica(t)
        elif n < cur:
            k = cur - n
            for lid in sorted(self.starting, reverse=True)[:k]:     # cancel the newest starting ones first
                self.starting.pop(lid).interrupt()
                self.lives[lid].released = t
                k -= 1
            for rep in sorted(self.active, key=lambda r: (r.outstanding, -r.index))[:k]:
                self.drain(rep, t)

    def _autoscaler(self, ctl: Controller) -> Generator[simpy.Event, Any, None]:
        while True:
            yield self.env.timeout(ctl.period)
            t = self.env.now
            if self.all_done:
                return
            want = ctl.step(t, self.requested, self.observe(t, ctl.period))
            if self.cap is not None:
                want = self.cap(want, t)
            if want != self.requested:
                self.scale_to(want, t)
            self._log(t)
