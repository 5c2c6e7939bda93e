"""``simulate_serving``: a serving cluster under a workload, as a simpy simulation.

The pieces read like the system: an arrival process (or closed-loop users) hands each request to
the router at its arrival time; the router picks a replica; admission control rejects what can
never run or finds the queue full (rejections are counted, never dropped); each replica is a
process that batches and runs iterations on the cost model.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from ..catalog import get_model
from ..costmodel.inference import WEIGHT_BYTES, InferenceModel
from ..errors import CapsimError, InfeasibleError
from ..hardware import get_profile
from ..scenario import Diurnal, ServingScenario
from .replica import Ledger, Replica
from .result import ServingResult, build_result
from .service import Service
from .workload import Requests, generate, rate_function

# vLLM's engine defaults (reference README): max_num_seqs 256, 1024 on GPUs with >= 70 GiB;
# max_num_batched_tokens 8192 on large GPUs, 2048 on small ones.
LARGE_GPU_GIB = 70


def engine_limits(sc: ServingScenario, memory_gib: float) -> tuple[int, int]:
    """(max_num_seqs, max_batched_tokens), from the scenario or vLLM's defaults for this GPU."""
    big = memory_gib >= LARGE_GPU_GIB
    seqs = sc.replica.max_num_seqs or (1024 if big else 256)
    tokens = sc.replica.max_batched_tokens or (8192 if big else 2048)
    return seqs, tokens


def build_replica_model(sc: ServingScenario) -> tuple[InferenceModel, dict[str, Any]]:
    """The replica's cost model and its memory plan (KV capacity), with the scenario's checks."""
    model, hw = get_model(sc.model), get_profile(sc.hardware)
    rc = sc.replica
    if model.heads % rc.tp:
        raise CapsimError(f"replica.tp={rc.tp} must divide {model.name}'s {model.heads} attention heads")
    if rc.pp > model.layers:
        raise CapsimError(f"replica.pp={rc.pp} exceeds {model.name}'s {model.layers} layers")
    generative = model.architecture == "decoder"
    if not generative and rc.batching == "continuous":
        raise CapsimError(f"{model.name} is an {model.architecture} model (one forward per request): continuous "
                          "batching applies to decoders; set replica.batching to dynamic, static or none")
    kv_prec = sc.precision if rc.kv_cache_precision == "auto" else rc.kv_cache_precision
    perf = InferenceModel(model=model, hw=hw, tp=rc.tp, pp=rc.pp, precision=sc.precision, kv_precision=kv_prec)
    seqs, tokens = engine_limits(sc, hw.memory_gib)
    if rc.batching != "continuous":
        seqs = 1 if rc.batching == "none" else rc.max_batch_size
        tokens = seqs * (model.max_positions if generative else model.default_seq_len)
    if rc.latency_table and rc.max_batch_size > rc.latency_table[-1][0] and rc.batching != "none":
        raise CapsimError(f"replica.max_batch_size={rc.max_batch_size} is beyond replica.latency_table's largest "
                          f"batch ({rc.latency_table[-1][0]}); measure larger batches or lower max_batch_size")
    plan: dict[str, Any] = {"max_num_seqs": seqs, "max_batched_tokens": tokens, "kv_cache_precision": kv_prec,
                            "generative": generative, "gpus_per_replica": rc.tp * rc.pp}
    if generative:
        kv_tokens, mem = perf.kv_capacity_tokens(kv_fraction=rc.kv_cache_fraction, max_tokens=min(tokens, 1 << 16),
                                                 max_seqs=seqs)
    else:
        w = perf.weight_bytes_per_gpu()
        if w > hw.memory_bytes * rc.kv_cache_fraction:
            raise InfeasibleError(f"{model.name} weights ({w / 2**30:.1f} GiB per GPU) do not fit on {hw.name}")
        kv_tokens, mem = 0, {"capacity_gib": hw.memory_gib, "weights_gib": w / 2**30}
    plan["kv_cache_tokens"] = kv_tokens
    plan["memory_per_gpu_gib"] = mem
    if sc.precision not in WEIGHT_BYTES:
        raise CapsimError(f"precision {sc.precision!r} is not supported for serving")
    return perf, plan


class Cluster:
    """The workload driving a service: an arrival process, or closed-loop users."""

    def __init__(self, sc: ServingScenario, reqs: Requests, perf: InferenceModel, plan: dict[str, Any], *,
                 fast_forward: bool = True) -> None:
        self.sc, self.reqs = sc, reqs
        self.env = env = simpy.Environment()
        self.waiters: dict[int, simpy.Event] = {}
        self.ledger = Ledger(reqs, on_finish=self._finished)
        rate_at = None
        if isinstance(sc.workload.arrival, Diurnal):
            fn = rate_function(sc.workload.arrival)
            rate_at = lambda t: float(fn(np.asarray(t)))  # noqa: E731
        elif hasattr(sc.workload.arrival, "rate_rps"):
            rate = float(sc.workload.arrival.rate_rps)
            rate_at = lambda t: rate  # noqa: E731
        self.service = Service(env=env, sc=sc, perf=perf, plan=plan, ledger=self.ledger, fast_forward=fast_forward,
                               rate_at=rate_at)
        if reqs.closed_loop:
            self._next = 0
            self._users = min(reqs.closed_loop.concurrency, len(reqs))
            for _ in range(self._users):
                env.process(self._user())
        else:
            env.process(self._arrivals())

    @property
    def replicas(self) -> list[Replica]:
        return self.service.all

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        env, times, svc = self.env, self.reqs.arrival, self.service
        for r in range(len(times)):
            t = float(times[r])
            if t > env.now:
                yield env.timeout(t - env.now)
            svc.dispatch(r, t)
        svc.arrivals_done = True

    def _user(self) -> Generator[simpy.Event, Any, None]:
        """One closed-loop user: send a request, wait for its response, think, repeat."""
        env, cl = self.env, self.reqs.closed_loop
        assert cl is not None
        t = 0.0
        while self._next < len(self.reqs):
            r = self._next
            self._next += 1
            self.reqs.arrival[r] = t
            ev = self.waiters[r] = env.event()
            self.service.dispatch(r, t)
            t = (yield ev) + cl.think_time_s
            if cl.think_time_s:
                yield env.timeout(max(t - env.now, 0.0))
        self._users -= 1
        if self._users == 0:
            self.service.arrivals_done = True

    def _finished(self, r: int, t: float) -> None:
        self.service.on_finish(r, t)
        ev = self.waiters.pop(r, None)
        if ev is not None:
            ev.succeed(t)

    def run(self) -> float:
        horizon = self.sc.workload.horizon_s
        self.env.run(until=horizon)
        if horizon is not None:
            return horizon
        done = self.ledger.done[np.isfinite(self.ledger.done)]
        return float(done.max()) if len(done) else 0.0


def simulate_serving(scenario: ServingScenario, *, fast_forward: bool = True) -> ServingResult:
    """Simulate a serving scenario: per-request latencies, throughput, utilization, SLO attainment and cost.

    ``fast_forward=False`` advances decode steps one event at a time (slow; for checking that the
    fast path gives the same per-request results).
    """
    if not isinstance(scenario, ServingScenario):
        raise CapsimError(f"simulate_serving needs a serving scenario (got kind {scenario.kind!r}); "
                          "use simulate_training for training")
    perf, plan = build_replica_model(scenario)
    reqs, warnings = generate(scenario.workload, scenario.seed)
    cluster = Cluster(scenario, reqs, perf, plan, fast_forward=fast_forward)
    end = cluster.run()
    return build_result(scenario, perf, plan, cluster.ledger, cluster.service, end, warnings)
