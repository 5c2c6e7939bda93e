"""The largest arrival rate one replica sustains under an SLO: an analytic estimate from the cost model
(iteration time, KV capacity) starts the bracket, and simulations bisect only near the boundary.

``analytic_capacity`` reads the replica's ``InferenceModel`` and ``ReplicaPlan`` (what the simulation
itself runs on). In steady state with ``n`` sequences decoding, each iteration emits ``n`` tokens and,
for arrivals to keep pace, prefills ``n·P/O`` prompt tokens (P, O: mean prompt and output lengths),
so it takes ``t(n) = iteration_time(tokens = n(1 + P/O), decode n reading n(P + O/2) cached tokens,
prefill n/O prompts of P²/2 query-key pairs)`` and the replica completes ``λ(n) = n / (O·t(n))``
requests/s. ``n`` is held below the engine's ``max_num_seqs``, the sequences the KV cache holds at
``P + O/2`` tokens each, and (with a TPOT bound) the largest ``n`` whose ``t(n)`` is within it. What
stops ``n`` is the limit reported: ``kv_memory``, ``compute`` (batch slots: the step time grows as
fast as the batch), ``tpot``; a prompt whose prefill alone exceeds the TTFT bound, or a one-sequence
decode step above the TPOT bound, is the ``latency_floor``. A request-level batcher (vision,
encoders) sustains ``B / forward(B)`` at its largest batch ``B``.

``max_rate_per_replica`` simulates one replica at Poisson rates around that estimate
(widening when the bound was wrong) and bisects until the bracket is within ``rel_tol``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CapsimError, InfeasibleError
from ..scenario import ServingScenario, parse_scenario
from ..workbound import Unstable

__all__ = ["CapacityEstimate", "CapacityResult", "analytic_capacity", "max_rate_per_replica", "meets_slo",
           "with_rate"]

SEARCH_REQUESTS = 600
"""requests per search simulation: the 6th-slowest is the p99 (capsim's choice, a trade of noise for speed)"""
REL_TOL = 0.05
"""bisection stops when the bracket is within 5% of its top (capsim's choice)"""
SPAN_FACTOR = 10.0
"""arrivals span at least 10× the largest TTFT/E2E bound: a 10% overload then queues about one bound's
worth of delay by the end, so a burst the replica absorbs is not taken for a rate it sustains
(capsim's rule)"""
MAX_SIMULATIONS = 12
"""the most simulations one search runs (bracketing and bisection together)"""


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    """The cost model's estimate of one replica's sustainable rate (queueing and prefill stalls left
    out, so it is a starting point, off by up to a few times), and what sets it."""

    rate_rps: float
    """requests (or items) per second; 0 when the SLO cannot be met at any rate"""
    limit: str
    """compute | kv_memory | tpot | latency_floor | memory (the weights do not fit)"""
    detail: str
    ttft_floor_s: float | None = None
    """prefill of a mean-length prompt alone (no queue, no batch)"""
    tpot_floor_s: float | None = None
    """one decode step of one sequence at the mean context"""
    kv_cache_tokens: int | None = None
    max_concurrency: int | None = None
    """sequences the replica runs at once at that bound"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CapacityResult:
    """The simulated maximum rate under the SLO, with the analytic bound it started from."""

    max_rate_rps: float
    """largest rate met in simulation (0: none met, down to the search's floor)"""
    estimate: CapacityEstimate
    simulations: int
    bracket_rps: tuple[float, float]
    """the last rate met and the first missed"""
    probes: list[tuple[float, bool]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bracket_rps"] = list(self.bracket_rps)
        d["probes"] = [list(p) for p in self.probes]
        return d


def with_rate(doc: dict[str, Any], rate: float, *, requests: int | None = SEARCH_REQUESTS) -> dict[str, Any]:
    """The scenario document at Poisson ``rate`` (``requests`` arrivals, or the document's duration)."""
    w = dict(doc.get("workload") or {})
    arrival: dict[str, Any] = {"process": "poisson", "rate_rps": rate}
    if requests is not None:
        arrival["requests"] = requests
        w["duration_s"] = max(float(w.get("duration_s") or 0), requests / rate * 4 + 60)
    w["arrival"] = arrival
    return {**doc, "workload": w}


def search_requests(doc: dict[str, Any], rate: float, base: int = SEARCH_REQUESTS) -> int:
    """Arrivals for a search simulation at ``rate``: ``base``, or more so they span :data:`SPAN_FACTOR`
    × the largest TTFT/E2E bound."""
    slo = doc.get("slo") or {}
    bound = max((float(v) for k, v in slo.items() if v is not None and k.startswith(("ttft_", "e2e_"))), default=0.0)
    return max(base, math.ceil(rate * SPAN_FACTOR * bound))


def meets_slo(doc: dict[str, Any]) -> bool:
    """Whether a simulation of ``doc`` meets its SLO (an overload too large to simulate does not)."""
    from ..serving import simulate_serving

    sc = parse_scenario(doc)
    assert isinstance(sc, ServingScenario)
    try:
        return bool(simulate_serving(sc).slo_met)
    except Unstable:
        return False


def _bounds(sc: ServingScenario) -> dict[str, float]:
    return {k: v for k, v in sc.slo.model_dump().items() if v is not None}


def analytic_capacity(doc: dict[str, Any]) -> CapacityEstimate:
    """The cost model's estimate of one replica's rate under the SLO (module docstring)."""
    from ..catalog import get_model
    from ..serving.inputs import resolve_inputs
    from ..serving.simulate import build_replica_model, length_stats

    sc = parse_scenario(doc)
    assert isinstance(sc, ServingScenario)
    sc = resolve_inputs(sc, get_model(sc.model))
    try:
        perf, plan = build_replica_model(sc)
    except InfeasibleError as e:
        return CapacityEstimate(0.0, "memory", str(e))
    bounds = _bounds(sc)
    ttft_b = min((v for k, v in bounds.items() if k.startswith("ttft_")), default=math.inf)
    tpot_b = min((v for k, v in bounds.items() if k.startswith(("tpot_", "itl_"))), default=math.inf)
    e2e_b = min((v for k, v in bounds.items() if k.startswith("e2e_")), default=math.inf)
    ls = length_stats(sc.workload.prompt_tokens, sc.workload.output_tokens)
    if not plan.generative:
        seq = max(round(ls.mean_prompt), 1)
        b = int(getattr(sc.replica, "max_batch_size", 1) or 1)
        floor = perf.forward_time(1, seq)
        if floor > e2e_b:
            return CapacityEstimate(0.0, "latency_floor", f"one input takes {floor * 1e3:.1f} ms > the "
                                    f"e2e bound {e2e_b * 1e3:.1f} ms", ttft_floor_s=floor)
        while b > 1 and perf.forward_time(b, seq) > e2e_b / 2:   # a batch and its wait fit in the bound
            b //= 2
        t = perf.forward_time(b, seq)
        return CapacityEstimate(float(b / t), "compute", f"batches of {b} in {t * 1e3:.2f} ms", ttft_floor_s=floor,
                                max_concurrency=b)
    p, o = max(ls.mean_prompt, 1.0), max(ls.mean_output, 1.0)
    pi = round(p)
    ttft_floor = perf.iteration_time(tokens=pi, sampled=1, prefill_work=p * (p + 1) / 2, decode_seqs=0, decode_ctx=0)
    tpot_floor = perf.iteration_time(tokens=1, sampled=1, prefill_work=0.0, decode_seqs=1, decode_ctx=int(p + o / 2))
    kv = plan.kv_cache_tokens
    if ttft_floor > ttft_b or tpot_floor > tpot_b or ttft_floor + (o - 1) * tpot_floor > e2e_b:
        what = (f"prefill of a {pi}-token prompt takes {ttft_floor:.3f} s" if ttft_floor > ttft_b else
                f"one decode step takes {tpot_floor * 1e3:.1f} ms")
        return CapacityEstimate(0.0, "latency_floor", f"{what}, beyond the SLO at any rate", ttft_floor, tpot_floor,
                                kv, 0)
    rate, n_cap, limit, t_step = steady_state(perf, plan, p, o, tpot_b)
    n_kv = max(int(kv / (p + o / 2)), 1)
    what = {"kv_memory": f"the KV cache holds {n_kv} sequences of {p + o / 2:.0f} tokens",
            "compute": f"{n_cap} batch slots (max_num_seqs) at {t_step * 1e3:.1f} ms a step",
            "tpot": f"{n_cap} sequences keep a step within the TPOT bound ({t_step * 1e3:.1f} ms)"}[limit]
    return CapacityEstimate(rate, limit, what, ttft_floor, tpot_floor, kv, n_cap)


def step_time(perf: Any, n: int, p: float, o: float) -> float:
    """One steady-state iteration with ``n`` sequences decoding (module docstring)."""
    return float(perf.iteration_time(tokens=max(round(n * (1 + p / o)), 1), sampled=n,
                                     prefill_work=n / o * p * p / 2, decode_seqs=n, decode_ctx=int(n * (p + o / 2))))


def steady_state(perf: Any, plan: Any, p: float, o: float, tpot_b: float = math.inf) -> tuple[float, int, str, float]:
    """(requests/s, sequences running, what limits them, step time) of a continuous-batching replica
    (``perf``: its InferenceModel, ``plan``: its ReplicaPlan) at mean prompt ``p`` and output ``o``,
    with steps held within ``tpot_b`` (module docstring)."""
    n_kv = max(int(plan.kv_cache_tokens / (p + o / 2)), 1)
    n_cap = min(plan.max_num_seqs, n_kv)
    limit = "kv_memory" if n_kv < plan.max_num_seqs else "compute"
    if step_time(perf, n_cap, p, o) > tpot_b:            # the largest batch whose step is within the TPOT bound
        lo, hi = 1, n_cap
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if step_time(perf, mid, p, o) <= tpot_b else (lo, mid)
        n_cap, limit = lo, "tpot"
    t = step_time(perf, n_cap, p, o)
    return float(n_cap / (o * t)), n_cap, limit, t


def max_rate_per_replica(doc: dict[str, Any], *, estimate: CapacityEstimate | None = None,
                         start_rps: float | None = None, rel_tol: float = REL_TOL,
                         requests: int = SEARCH_REQUESTS, max_simulations: int = MAX_SIMULATIONS,
                         on_step: Callable[[float], None] | None = None) -> CapacityResult:
    """The largest Poisson rate at which one replica of ``doc`` (its model, hardware, replica, lengths,
    SLO) meets the SLO in simulation. The bracket starts at ``start_rps`` (a similar candidate's
    answer: warm state from an earlier search) or the analytic bound; ``on_step(fraction)`` after each
    simulation, the fraction of ``max_simulations``."""
    sc = parse_scenario(doc)
    if not isinstance(sc, ServingScenario):
        raise CapsimError("max_rate_per_replica needs a serving scenario")
    if not _bounds(sc):
        raise CapsimError("the capacity search needs an SLO (slo.ttft_p99_s, tpot_p99_s, e2e_p99_s, ...)")
    est = estimate if estimate is not None else analytic_capacity(doc)
    if est.rate_rps <= 0:
        return CapacityResult(0.0, est, 0, (0.0, 0.0))
    doc1 = {**doc, "cluster": {**(doc.get("cluster") or {}), "replicas": 1}, "autoscaling": {"policy": "none"}}
    probes: list[tuple[float, bool]] = []

    def meets(rate: float) -> bool:
        ok = meets_slo(with_rate(doc1, rate, requests=search_requests(doc1, rate, requests)))
        probes.append((rate, ok))
        if on_step is not None:
            on_step(min(len(probes) / max_simulations, 1.0))
        return ok

    guess = float(start_rps if start_rps else est.rate_rps * 0.85)
    floor = est.rate_rps * 1e-3
    lo, hi = 0.0, math.inf
    r = guess
    while len(probes) < max_simulations:        # bracket: one met, one missed
        if meets(r):
            lo = r
            if hi < math.inf:
                break
            r *= 1.25 if r < est.rate_rps else 1.5
        else:
            hi = r
            if lo > 0:
                break
            if r < floor:
                break
            r *= 0.6
    while hi < math.inf and lo > 0 and (hi - lo) > rel_tol * hi and len(probes) < max_simulations:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return CapacityResult(lo, est, len(probes), (lo, hi if hi < math.inf else lo), probes)
