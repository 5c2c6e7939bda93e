"""Bounded work: estimate a run before starting it, refuse what would take hours or exhaust memory,
and recognise an overloaded (unstable) serving system before draining its queue for simulated days.

Bounds (each error names the key to change; ``--force`` on the command line, :func:`allow_large`
in Python, runs it anyway):

- serving: at most :data:`MAX_REQUESTS` requests (10M) and :data:`MAX_MEMORY_GIB` (8 GiB) estimated
  at :func:`bytes_per_request` (peak RSS per request, measured by bench/serving_memory.py: 530 B
  below the streamed threshold, where every log row and request time is kept to the end; 110 B at
  or above it, where they are folded and freed as the run goes), and at most :data:`MAX_TICKS`
  periodic events (an autoscaler's sync ticks over the run);
- serving stability: an open-loop arrival rate above :data:`UNSTABLE_FACTOR` times the replicas'
  estimated capacity, with an unbounded queue and no ``workload.horizon_s``, is refused as unstable:
  its queue grows for the whole run and the simulation would then drain it for longer than the run
  lasted. The capacity is optimistic (a replica at its full batch, no preemption; see
  :func:`replica_capacity_rps`), so only clear overload is refused;
- sweeps: at most :data:`MAX_CONFIGS` configurations (100k), counted before the grid is built;
- training: at most :data:`MAX_PIPELINE_OPS` forward/backward ops in one step's pipeline timeline and
  :data:`MAX_FAILURE_DRAWS` failure draws over the Monte Carlo runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .errors import CapsimError

if TYPE_CHECKING:
    from .costmodel.inference import InferenceModel
    from .scenario import ServingScenario, Workload
    from .serving.engines import ReplicaPlan

MAX_REQUESTS = 10_000_000
MAX_MEMORY_GIB = 8.0
BYTES_PER_REQUEST = 530
"""peak bytes per request of an exact run (below serving.streamed.EXACT_BELOW requests): the request
inputs and ledger (~80 B), the replicas' per-iteration logs (~180 B: one state row per arrival and
completion, one busy row per window of iterations) and the result's temporaries. Measured by
bench/serving_memory.py (GPT-2 on 4 H100s, 64-token prompts, 2 output tokens, fast-forward): 1M
requests 0.54 GiB peak, 524 B a request over the 0.06 GiB after imports"""
BYTES_PER_REQUEST_STREAMED = 110
"""peak bytes per request of a streamed run (serving.streamed: logs folded into time bins, in-flight
state freed at completion): the inputs and outcome columns (~55 B) and the result's temporaries over
them. Measured by bench/serving_memory.py: 10M requests 1.10 GiB (1.18 GB) peak, 103 B a request over
the 0.14 GiB after imports"""
MAX_TICKS = 20_000_000
UNSTABLE_FACTOR = 2.0
MAX_PIPELINE_OPS = 1_000_000   # ~15 s of timeline on one core
MAX_FAILURE_DRAWS = 10_000_000
MAX_CONFIGS = 100_000

_FORCE: ContextVar[bool] = ContextVar("capsim_force", default=False)


class WorkTooLarge(CapsimError):
    """A run beyond the bounds of this module (pass --force to run it anyway)."""


class Unstable(WorkTooLarge):
    """Arrivals faster than the replicas can serve them: the queue grows without bound."""


@contextlib.contextmanager
def allow_large() -> Iterator[None]:
    """Within this block runs beyond the bounds are simulated anyway (the CLI's ``--force``)."""
    token = _FORCE.set(True)
    try:
        yield
    finally:
        _FORCE.reset(token)


def forced() -> bool:
    return _FORCE.get()


def _refuse(exc: type[WorkTooLarge], msg: str) -> None:
    if not forced():
        raise exc(msg + "; or pass --force to run it anyway")


def refuse(msg: str) -> None:
    """Raise :class:`WorkTooLarge` with ``msg`` unless forced."""
    _refuse(WorkTooLarge, msg)


# ---- serving ---------------------------------------------------------------------------------------
def mean_rate_rps(w: Workload) -> float | None:
    """The open-loop arrival rate, requests/s (None: closed loop, offline or a trace); with sessions,
    every turn of the sessions the process starts."""
    rate = _start_rate_rps(w)
    return rate * w.sessions.turns if rate is not None and w.sessions is not None else rate


def _start_rate_rps(w: Workload) -> float | None:
    from .scenario import Diurnal, Gamma, Poisson

    a = w.arrival
    if isinstance(a, Poisson | Gamma):
        return a.rate_rps
    if isinstance(a, Diurnal):
        if a.schedule is None:
            return a.mean_rps
        ts = [t for t, _ in a.schedule]
        end = w.duration_s if w.duration_s is not None else ts[-1] + 1.0
        spans = [max(min(b, end) - t, 0.0) for t, b in zip(ts, [*ts[1:], max(end, ts[-1])], strict=True)]
        total = sum(spans)
        return sum(s * r for s, (_, r) in zip(spans, a.schedule, strict=True)) / total if total else a.schedule[0][1]
    return None


def expected_requests(w: Workload) -> float | None:
    """Requests the workload will send (None: read from a trace file)."""
    from .scenario import ClosedLoop, Offline, Trace

    a = w.arrival
    if isinstance(a, ClosedLoop):
        return float(a.requests + a.warmup_requests)
    turns = w.sessions.turns if w.sessions is not None else 1
    if isinstance(a, Offline):
        return float(a.requests * turns)
    if isinstance(a, Trace):
        return None
    cap = getattr(a, "requests", None)
    rate = _start_rate_rps(w) or 0.0
    by_time = rate * w.duration_s if w.duration_s is not None else math.inf
    n = min(float(cap) if cap is not None else math.inf, by_time) * turns
    return n if math.isfinite(n) else None


def bytes_per_request(n: float) -> int:
    """The peak memory per request of a run of ``n`` requests: streamed at or above
    serving.streamed.EXACT_BELOW, exact below."""
    from .serving.streamed import EXACT_BELOW

    return BYTES_PER_REQUEST_STREAMED if n >= EXACT_BELOW else BYTES_PER_REQUEST


def check_serving_size(sc: ServingScenario) -> None:
    """Refuse a serving run estimated beyond the request, memory or periodic-event bounds."""
    w = sc.workload
    n = expected_requests(w)
    if n is not None:
        per = bytes_per_request(n)
        gib = n * per / 2**30
        if n > MAX_REQUESTS or gib > MAX_MEMORY_GIB:
            _refuse(WorkTooLarge, f"this run would simulate about {n:,.0f} requests (~{gib:,.1f} GiB at "
                    f"{per} B each); the bound is {MAX_REQUESTS:,} requests or {MAX_MEMORY_GIB:g} GiB: "
                    "shorten workload.duration_s, lower the rate or set arrival.requests")
    span = w.horizon_s or w.duration_s
    scalers = [sc.autoscaling, *(s.autoscaling for s in sc.services if s.autoscaling is not None)]
    for a in scalers:
        period = getattr(a, "sync_period_s", None)
        if period and span and a.policy != "none" and span / period > MAX_TICKS:
            _refuse(WorkTooLarge, f"autoscaling.sync_period_s={period:g} over {span:,.0f} s is {span / period:,.0f} "
                    f"autoscaler ticks (bound {MAX_TICKS:,}): raise sync_period_s or shorten the run")


def replica_capacity_rps(perf: InferenceModel, plan: ReplicaPlan, prompt: float, output: float) -> float:
    """An optimistic estimate of one replica's throughput, requests/s: it serves ``n`` requests at
    once, ``n`` the engine's sequence limit or what its KV cache holds at the mean lengths, each
    prefilled once and then decoded in steps of ``n`` sequences (serving.workload.request_cycle_s:
    the same cost model the engine runs, without queueing, preemption or prefix-cache hits)."""
    from .serving.workload import request_cycle_s

    per_seq = max(prompt + output, 1.0)
    n = plan.max_num_seqs
    if plan.generative and plan.kv_cache_tokens:
        n = min(n, max(int(plan.kv_cache_tokens // per_seq), 1))
    cycle = request_cycle_s([(perf, plan, 1, prompt, output)], n, 0.0)
    return n / cycle if cycle > 0 else math.inf


def check_stable(sc: ServingScenario, stages: list[tuple[str, Any, InferenceModel, ReplicaPlan]],
                 lengths: list[tuple[float, float]]) -> str | None:
    """Refuse (or, forced, return a warning for) an open-loop workload whose arrival rate exceeds
    :data:`UNSTABLE_FACTOR` × the estimated capacity of some service's replicas. ``stages``: per service
    (name, scenario, cost model, plan); ``lengths``: its mean prompt and output tokens."""
    w = sc.workload
    rate = mean_rate_rps(w)
    if rate is None or w.horizon_s is not None or w.duration_s is None:
        return None
    for (name, ssc, perf, plan), (p, o) in zip(stages, lengths, strict=True):
        if ssc.replica.max_queue is not None:
            continue                           # a bounded queue rejects the excess instead of growing
        a = ssc.autoscaling
        replicas = max(ssc.cluster.replicas, getattr(a, "max_replicas", 0) if a.policy != "none" else 0)
        hit = next((s.cache_hit_rate for s in sc.services if s.name == name), 0.0)
        load = rate * (1.0 - hit)
        cap = replicas * replica_capacity_rps(perf, plan, p, o)
        if load > UNSTABLE_FACTOR * cap:
            drain_h = (load - cap) * w.duration_s / cap / 3600
            where = f"service {name}: " if sc.services else ""
            msg = (f"{where}unstable: arrivals of {load:,.4g} requests/s exceed {UNSTABLE_FACTOR:g}x the estimated "
                   f"capacity of {replicas} replica(s), {cap:,.4g} requests/s (mean prompt {p:,.0f}, output "
                   f"{o:,.0f} tokens): the queue grows by about {load - cap:,.4g} requests/s for "
                   f"{w.duration_s:,.0f} s and would take about {drain_h:,.1f} more simulated hours to drain. Add "
                   "replicas (cluster.replicas, autoscaling.max_replicas), lower the rate, bound the queue "
                   "(replica.max_queue) or cut the run at workload.horizon_s")
            _refuse(Unstable, msg)
            return msg
    return None


# ---- training --------------------------------------------------------------------------------------
def check_pipeline_ops(microbatches: int, pp: int, virtual_stages: int) -> None:
    ops = 2 * microbatches * pp * virtual_stages
    if ops > MAX_PIPELINE_OPS:
        _refuse(WorkTooLarge, f"one step's pipeline has {ops:,} forward/backward ops ({microbatches:,} micro-batches x "
                f"{pp} stages x {virtual_stages} virtual stages; bound {MAX_PIPELINE_OPS:,}): lower training.global_batch "
                "or raise training.micro_batch / parallelism.dp")


def check_failure_draws(runs: int, failures_per_run: float) -> None:
    draws = runs * failures_per_run
    if draws > MAX_FAILURE_DRAWS:
        _refuse(WorkTooLarge, f"{runs:,} Monte Carlo runs x {failures_per_run:,.0f} expected failures each is "
                f"{draws:,.0f} draws (bound {MAX_FAILURE_DRAWS:,}): lower reliability.runs or check "
                "reliability.node_mtbf_hours")
