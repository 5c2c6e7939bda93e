"""``plan_serving``: serve a model at a traffic peak under an SLO — which GPU, TP and engine, how many
replicas, what per hour and per month, and what autoscaling over the day saves.

For each candidate (GPU × TP × engine preset) :mod:`simulator.plan.capacity` finds the largest rate
one replica sustains under the SLO (analytic estimate, then simulations near the boundary). Replicas
at peak are ``ceil(peak / capacity)`` (and at 2× and 3× peak, the load-test margins); for the best
candidates the fleet is then simulated at peak and the count adjusted until ``replicas`` meets the
SLO and ``replicas − 1`` does not (a pool of replicas behind one router can do better than its
replicas alone). Cost is static provisioning for the peak: replicas × GPUs per replica × the price
of the instance with that GPU count (``simulator.hardware.resolve_price``), $/month at 730 hours
(8,760 h a year / 12), $ per million output tokens (items for non-generative models) at the peak
rate. For the three best, each autoscaling policy runs the daily pattern with cold starts; the
recommended HPA targets ``concurrency`` at 70% of what one replica holds at its capacity (Little's
law: capacity × mean latency there), with Kubernetes' 300 s scale-down stabilization.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CapsimError
from .capacity import (
    SEARCH_REQUESTS,
    CapacityEstimate,
    CapacityResult,
    analytic_capacity,
    max_rate_per_replica,
    meets_slo,
    search_requests,
    with_rate,
)

__all__ = ["AutoscalingRow", "ServingCandidate", "ServingPlan", "plan_serving"]

HOURS_PER_MONTH = 730.0
"""8,760 hours a year / 12 (the convention of cloud pricing pages)"""
DEFAULT_TPS = (1, 2, 4, 8)
"""tensor-parallel sizes tried: the divisors of an 8-GPU node"""
DEFAULT_ENGINES = ("vllm",)
"""engine presets tried for generative models (simulator/serving/engines/presets.py)"""
REQUEST_ENGINES = ("dynamic",)
"""for vision and encoder models: Triton's dynamic batcher (request-level)"""
HEADROOM = 0.7
"""the recommended HPA target: 70% of one replica's concurrency at capacity (Knative's default
target utilization, 0.7, used as the same margin)"""
SCALE_DOWN_STABILIZATION_S = 300.0
"""Kubernetes HPA default --horizontal-pod-autoscaler-downscale-stabilization (5 minutes)"""
POLICIES = ("none", "hpa", "kpa", "queue", "predictive")
"""autoscaling policies run over the day (none: static at the peak count)"""
FLEET_REQUESTS_PER_REPLICA = SEARCH_REQUESTS
"""arrivals per replica in the fleet check at peak: as many as one replica's capacity search ran, so
one replica at peak is the same simulation in both"""
COLD_START_S = (120.0, 200.0)
"""node provisioning and model load, seconds, of an autoscaled replica (examples/serve_diurnal_hpa.yaml's)"""


@dataclass(frozen=True, slots=True)
class ServingCandidate:
    """One GPU × TP × engine under the SLO, statically provisioned for the peak."""

    hardware: str
    tp: int
    engine: str
    gpus_per_replica: int
    meets_slo: bool
    """one replica meets the SLO at some positive rate"""
    max_rate_per_replica_rps: float
    """one replica's largest rate meeting the SLO in the search; for a fleet-checked candidate the larger
    of that and peak / replicas (what each replica of the checked fleet carried within the SLO)"""
    limit: str
    """what the cost model says stops a replica: compute, kv_memory, tpot, latency_floor, memory"""
    limit_detail: str
    analytic_rate_rps: float
    simulations: int
    replicas: int | None
    replicas_at_2x: int | None
    replicas_at_3x: int | None
    replicas_verified: bool
    """the fleet was simulated at peak: ``replicas`` meets the SLO, ``replicas − 1`` does not"""
    usd_per_gpu_hour: float | None
    price_source: str | None
    usd_per_hour: float | None
    usd_per_month: float | None
    cost_per_million_tokens_usd: float | None
    """output tokens (items for non-generative models) at the peak rate"""
    ttft_floor_s: float | None
    tpot_floor_s: float | None
    kv_cache_tokens: int | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AutoscalingRow:
    """One policy over the daily pattern for one candidate."""

    hardware: str
    tp: int
    engine: str
    policy: str
    settings: dict[str, Any]
    slo_met: bool | None
    slo_attainment: float | None
    replicas_mean: float
    replicas_max: int
    scale_events: int
    oscillating: bool
    usd_per_month: float
    saving_vs_static: float
    """1 − this policy's $/month ÷ static peak provisioning's"""
    recommended: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """The plan: the inputs, the best candidate (cheapest $/hour meeting the SLO), every candidate,
    the closest misses when none meets it, and the autoscaling day of the best three."""

    model: str
    peak_rps: float
    pattern: str
    slo: dict[str, float]
    prompt_tokens: dict[str, Any]
    output_tokens: dict[str, Any]
    generative: bool
    best: ServingCandidate | None
    candidates: list[ServingCandidate]
    closest_misses: list[ServingCandidate]
    autoscaling: list[AutoscalingRow] = field(default_factory=list)
    recommended_autoscaler: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    best_scenario: dict[str, Any] | None = None
    """the best candidate as a scenario document: its replicas at the peak rate (``capsim serve`` runs it)"""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "peak_rps": self.peak_rps, "pattern": self.pattern, "slo": self.slo,
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "generative": self.generative, "best": self.best.to_dict() if self.best else None,
                "candidates": [c.to_dict() for c in self.candidates],
                "closest_misses": [c.to_dict() for c in self.closest_misses],
                "autoscaling": [a.to_dict() for a in self.autoscaling],
                "recommended_autoscaler": self.recommended_autoscaler, "warnings": self.warnings,
                "best_scenario": self.best_scenario}


def _length(v: int | dict[str, Any] | None, default: int) -> dict[str, Any]:
    if v is None:
        return {"dist": "fixed", "value": default}
    if isinstance(v, int):
        if v < 1:
            raise CapsimError(f"token count must be at least 1 (got {v})")
        return {"dist": "fixed", "value": v}
    return dict(v)


def _priced_profiles() -> list[str]:
    from ..hardware import price_catalog

    return sorted({i.gpu for i in price_catalog()})


def candidate_doc(*, model: str, hardware: str, tp: int, engine: str, precision: str, slo: dict[str, float],
                  prompt: dict[str, Any] | None, output: dict[str, Any] | None, pricing: dict[str, Any],
                  generative: bool, seed: int) -> dict[str, Any]:
    """The scenario document of one candidate (one replica; the rate is set by the search)."""
    if generative:
        replica: dict[str, Any] = {"tp": tp, "batching": "continuous", "engine": engine}
    else:
        replica = {"tp": tp, "batching": engine, "max_batch_size": 32}
    workload: dict[str, Any] = {}
    if prompt is not None:
        workload["prompt_tokens"] = prompt
    if output is not None:
        workload["output_tokens"] = output
    return {"kind": "serving", "name": f"{hardware}-tp{tp}-{engine}", "model": model, "hardware": hardware,
            "precision": precision, "replica": replica, "workload": workload, "slo": dict(slo),
            "pricing": dict(pricing), "cluster": {"replicas": 1, "router": "least_outstanding"}, "seed": seed}


def _fleet(doc: dict[str, Any], replicas: int, rate: float) -> dict[str, Any]:
    d = with_rate(doc, rate, requests=search_requests(doc, rate, FLEET_REQUESTS_PER_REPLICA * replicas))
    return {**d, "cluster": {**d["cluster"], "replicas": replicas}, "autoscaling": {"policy": "none"}}


def verify_replicas(doc: dict[str, Any], start: int, peak: float, *, limit: int = 4) -> tuple[int, bool]:
    """The fewest replicas meeting the SLO at ``peak`` in simulation near ``start``: up while it misses,
    down while one fewer meets it (at most ``limit`` steps each way); and whether both ends were seen."""
    n = start
    if not meets_slo(_fleet(doc, n, peak)):
        for _ in range(limit):
            n += 1
            if meets_slo(_fleet(doc, n, peak)):
                break
        else:
            return n, False
        return n, True
    for _ in range(limit):
        if n <= 1 or not meets_slo(_fleet(doc, n - 1, peak)):
            return n, True
        n -= 1
    return n, False


def _price(doc: dict[str, Any]) -> tuple[float, str]:
    from ..hardware import get_profile, resolve_price
    from ..scenario.base import Pricing

    return resolve_price(Pricing(**doc["pricing"]), get_profile(doc["hardware"]), gpus_per_node=doc["replica"]["tp"])


def _mean_output(doc: dict[str, Any], generative: bool) -> float:
    if not generative:
        return 1.0
    from ..scenario import ServingScenario, parse_scenario
    from ..serving.simulate import length_stats

    sc = parse_scenario(doc)
    assert isinstance(sc, ServingScenario)
    return length_stats(sc.workload.prompt_tokens, sc.workload.output_tokens).mean_output


def _candidate(doc: dict[str, Any], cap: CapacityResult | None, est: CapacityEstimate, peak: float,
               generative: bool, error: str | None = None) -> ServingCandidate:
    rate = cap.max_rate_rps if cap else 0.0
    gpr = int(doc["replica"]["tp"])
    price: float | None
    try:
        price, src = _price(doc)
    except CapsimError as e:
        price, src = None, str(e)
    n = math.ceil(peak / rate - 1e-9) if rate > 0 else None
    usd_h = n * gpr * price if n is not None and price is not None else None
    tokens_h = peak * _mean_output(doc, generative) * 3600 if usd_h is not None else 0
    return ServingCandidate(
        hardware=doc["hardware"], tp=gpr, engine=doc["replica"].get("engine") or doc["replica"]["batching"],
        gpus_per_replica=gpr, meets_slo=rate > 0, max_rate_per_replica_rps=round(rate, 4), limit=est.limit,
        limit_detail=est.detail, analytic_rate_rps=round(est.rate_rps, 4), simulations=cap.simulations if cap else 0,
        replicas=n, replicas_at_2x=math.ceil(2 * peak / rate - 1e-9) if rate > 0 else None,
        replicas_at_3x=math.ceil(3 * peak / rate - 1e-9) if rate > 0 else None, replicas_verified=False,
        usd_per_gpu_hour=round(price, 6) if price is not None else None, price_source=src,
        usd_per_hour=round(usd_h, 4) if usd_h is not None else None,
        usd_per_month=round(usd_h * HOURS_PER_MONTH, 2) if usd_h is not None else None,
        cost_per_million_tokens_usd=round(usd_h / tokens_h * 1e6, 4) if usd_h is not None and tokens_h else None,
        ttft_floor_s=est.ttft_floor_s, tpot_floor_s=est.tpot_floor_s, kv_cache_tokens=est.kv_cache_tokens,
        error=error)


def _search_group(docs: list[dict[str, Any]], peak: float, generative: bool,
                  step: Callable[[float], None] | None = None) -> list[ServingCandidate]:
    """The capacity searches of one GPU × TP's engines, each bracket started from the previous answer
    (warm state); runs in a worker process when the plan has ``workers``."""
    out: list[ServingCandidate] = []
    warm: float | None = None
    for i, doc in enumerate(docs):
        try:
            est = analytic_capacity(doc)
            on = (lambda f, i=i: step(i + f)) if step else None
            cap = max_rate_per_replica(doc, estimate=est, start_rps=warm, on_step=on) if est.rate_rps > 0 else None
            if cap is not None and cap.max_rate_rps > 0:
                warm = cap.max_rate_rps
            out.append(_candidate(doc, cap, est, peak, generative))
        except CapsimError as e:
            out.append(_candidate(doc, None, CapacityEstimate(0.0, "error", str(e)), peak, generative, error=str(e)))
    return out


def _rank_key(c: ServingCandidate) -> tuple[float, float, str, int, str]:
    return (c.usd_per_hour if c.usd_per_hour is not None else math.inf, -c.max_rate_per_replica_rps,
            c.hardware, c.tp, c.engine)


def plan_serving(*, model: str, peak_rps: float, pattern: str = "constant", peak_to_trough: float = 3.0,
                 slo: dict[str, float], prompt_tokens: int | dict[str, Any] | None = None,
                 output_tokens: int | dict[str, Any] | None = None, gpus: Sequence[str] | None = None,
                 tps: Sequence[int] | None = None, engines: Sequence[str] | None = None, precision: str = "bf16",
                 provider: str | None = None, market: str = "on_demand", autoscale: bool = False,
                 day_s: float = 7200.0, verify: int = 3, seed: int = 7, workers: int = 1, executor: str = "local",
                 progress: Callable[[float, float | None], None] | None = None) -> ServingPlan:
    """Plan a serving deployment (module docstring). ``pattern``: constant (Poisson at ``peak_rps``) or
    diurnal (a sinusoidal day peaking at ``peak_rps`` with ``peak_to_trough``; the autoscaling day,
    ``autoscale=True``, runs it over ``day_s`` seconds: 7,200 by default, a day compressed 12× so three
    candidates × five policies simulate in minutes on two cores; its ramps are 12× steeper than a real
    day's, which is harder on an autoscaler; pass 86400 for the real day). ``verify``: how many of the
    cheapest candidates get the fleet check at peak. ``workers`` > 1: the GPU × TP groups' searches run
    in that many processes (the same rows: each group's search does not depend on the others);
    ``executor``: ``local``, or ``ray`` / ``ray:ADDRESS`` to run the groups as Ray tasks, as sweeps do.
    ``progress(done, total)`` in candidates."""
    from ..catalog import get_model

    if peak_rps <= 0:
        raise CapsimError(f"peak rate must be positive (got {peak_rps})")
    if executor != "local" and executor != "ray" and not executor.startswith("ray:"):
        raise CapsimError(f"unknown executor {executor!r}; use local, ray or ray:ADDRESS")
    if pattern not in ("constant", "diurnal"):
        raise CapsimError(f"pattern must be constant or diurnal (got {pattern!r})")
    if not slo:
        raise CapsimError("give an SLO, e.g. ttft_p99_s=2,tpot_p99_s=0.05")
    spec = get_model(model)
    generative = spec.architecture == "decoder"
    gpus = list(gpus) if gpus else _priced_profiles()
    tps = list(tps) if tps else ([1] if spec.architecture == "cnn" else list(DEFAULT_TPS))
    engines = list(engines) if engines else list(DEFAULT_ENGINES if generative else REQUEST_ENGINES)
    prompt = _length(prompt_tokens, 512) if generative or prompt_tokens is not None else None
    output = _length(output_tokens, 128) if generative or output_tokens is not None else None
    pricing = {"market": market, **({"provider": provider} if provider else {})}
    docs = [candidate_doc(model=model, hardware=g, tp=t, engine=e, precision=precision, slo=slo, prompt=prompt,
                          output=output, pricing=pricing, generative=generative, seed=seed)
            for g in gpus for t in tps for e in engines]
    total = float(len(docs))
    rows: list[ServingCandidate] = []
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}     # one GPU × TP's engines share warm state
    for d in docs:
        groups.setdefault((d["hardware"], int(d["replica"]["tp"])), []).append(d)
    if executor != "local":
        from ..sweep.executors import ray_map

        finished = 0

        def arrived(_: int, part: list[ServingCandidate]) -> None:
            nonlocal finished
            rows.extend(part)
            finished += len(part)
            if progress:
                progress(finished, total)

        ray_map(_search_group, [(g, peak_rps, generative) for g in groups.values()],
                address=executor.partition(":")[2] or None, on_result=arrived)
    elif workers > 1 and len(groups) > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_search_group, g, peak_rps, generative) for g in groups.values()]
            done = 0
            for fut in as_completed(futures):
                got = fut.result()
                rows.extend(got)
                done += len(got)
                if progress:
                    progress(done, total)
    else:
        done = 0
        for g in groups.values():
            def step(f: float, base: int = done) -> None:
                if progress:
                    progress(base + f, total)

            got = _search_group(g, peak_rps, generative, step)
            rows.extend(got)
            done += len(got)
            if progress:
                progress(done, total)
    rows.sort(key=_rank_key)
    by_doc = {(d["hardware"], int(d["replica"]["tp"]), d["replica"].get("engine") or d["replica"]["batching"]): d
              for d in docs}
    ok = [c for c in rows if c.meets_slo and c.usd_per_hour is not None]
    for j, c in enumerate(ok[:verify]):           # the fleet at peak: replicas meets, replicas − 1 does not
        assert c.replicas is not None
        doc = by_doc[(c.hardware, c.tp, c.engine)]
        n, seen = verify_replicas(doc, c.replicas, peak_rps)
        price = (c.usd_per_gpu_hour or 0.0) * c.gpus_per_replica
        usd_h = n * price
        tokens_h = peak_rps * _mean_output(doc, generative) * 3600
        # the fleet of n sustains peak / n per replica under the SLO: a measured capacity too
        carried = max(c.max_rate_per_replica_rps, math.ceil(peak_rps / n * 1e4) / 1e4) if seen else c.max_rate_per_replica_rps
        ok[j] = _replace(c, replicas=n, replicas_verified=seen, max_rate_per_replica_rps=carried,
                         usd_per_hour=round(usd_h, 4),
                         usd_per_month=round(usd_h * HOURS_PER_MONTH, 2),
                         cost_per_million_tokens_usd=round(usd_h / tokens_h * 1e6, 4))
    ok.sort(key=_rank_key)
    rest = [c for c in rows if not (c.meets_slo and c.usd_per_hour is not None)]
    candidates = ok + rest
    best = ok[0] if ok else None
    # the closest misses: those that fit before those that do not, then the lowest latency floor
    misses = [] if ok else sorted(rest, key=lambda c: (c.limit in ("memory", "error"), -c.analytic_rate_rps,
                                                       c.ttft_floor_s if c.ttft_floor_s is not None else math.inf,
                                                       c.tpot_floor_s if c.tpot_floor_s is not None else math.inf,
                                                       c.hardware, c.tp))[:3]
    plan = ServingPlan(model=spec.name, peak_rps=peak_rps, pattern=pattern, slo=dict(slo),
                       prompt_tokens=prompt or {}, output_tokens=output or {}, generative=generative, best=best,
                       candidates=candidates, closest_misses=misses,
                       best_scenario=_fleet(by_doc[(best.hardware, best.tp, best.engine)], best.replicas or 1, peak_rps)
                       if best is not None else None)
    if autoscale and ok:
        rec: dict[str, Any] | None = None
        for c in ok[:3]:
            rows_a, settings = autoscaling_day(by_doc[(c.hardware, c.tp, c.engine)], c, peak_rps,
                                               peak_to_trough=peak_to_trough, day_s=day_s)
            plan.autoscaling.extend(rows_a)
            if rec is None:
                hpa = next(a for a in rows_a if a.policy == "hpa")
                rec = {"hardware": c.hardware, "tp": c.tp, "engine": c.engine, "autoscaling": settings,
                       "slo_met": hpa.slo_met, "slo_attainment": hpa.slo_attainment,
                       "usd_per_month": hpa.usd_per_month, "day_s": day_s}
            for a in rows_a:
                if a.oscillating:
                    plan.warnings.append(f"{a.hardware} TP{a.tp} {a.policy} oscillates over the day "
                                         f"({a.scale_events} scale events)")
        object.__setattr__(plan, "recommended_autoscaler", rec)
    return plan


def _day(doc: dict[str, Any], peak: float, k: float, day_s: float) -> dict[str, Any]:
    """The sinusoidal day peaking at ``peak`` (mean = peak·(k+1)/(2k) for peak/trough k) at 14:00."""
    mean = peak * (k + 1) / (2 * k)
    w = {**doc["workload"], "duration_s": day_s,
         "arrival": {"process": "diurnal", "mean_rps": mean, "peak_to_trough": k, "period_s": day_s,
                     "peak_at_s": day_s * 14 / 24}}
    return {**doc, "workload": w}


def autoscaling_day(doc: dict[str, Any], c: ServingCandidate, peak: float, *, peak_to_trough: float,
                    day_s: float) -> tuple[list[AutoscalingRow], dict[str, Any]]:
    """Each policy of :data:`POLICIES` over the day for candidate ``c`` (cold starts of
    :data:`COLD_START_S`), and the recommended HPA settings: concurrency target at :data:`HEADROOM` of
    what one replica holds at its capacity (Little's law: capacity × its mean end-to-end latency there,
    from one simulation), scale-up held 60 s and scale-down :data:`SCALE_DOWN_STABILIZATION_S` × 3
    (a cold start of 320 s outlasts the 300 s default, which then flaps: examples/serve_diurnal_hpa.yaml)."""
    from ..scenario import ServingScenario, parse_scenario
    from ..serving import simulate_serving
    from ..serving.scale_events import scale_activity

    assert c.replicas is not None and c.replicas_at_2x is not None
    cap = c.max_rate_per_replica_rps
    at_cap = parse_scenario(with_rate({**doc, "autoscaling": {"policy": "none"}}, cap))
    assert isinstance(at_cap, ServingScenario)
    e2e_mean = simulate_serving(at_cap).e2e_s.mean
    held = max(cap * (e2e_mean if e2e_mean is not None else 1.0), 1.0)        # Little: L = λ·W
    cold = {"node_provision_s": COLD_START_S[0], "model_load_s": COLD_START_S[1]}
    bounds = {"min_replicas": 1, "max_replicas": max(c.replicas_at_2x, c.replicas + 1)}
    k = peak_to_trough
    start = max(1, math.ceil(peak / k / cap))      # the trough's replicas (the day starts at its trough side)
    hpa = {"policy": "hpa", "metric": "concurrency", "target": round(HEADROOM * held, 1), "tolerance": 0.2,
           "scale_up_stabilization_s": 60.0, "scale_down_stabilization_s": 3 * SCALE_DOWN_STABILIZATION_S,
           **bounds, **cold}
    policies: dict[str, tuple[dict[str, Any], int]] = {
        "none": ({"policy": "none"}, c.replicas),
        "hpa": (hpa, start),
        "kpa": ({"policy": "kpa", "target": round(held, 1), **bounds, **cold}, start),
        "queue": ({"policy": "queue", **bounds, **cold}, start),
        "predictive": ({"policy": "predictive", "target": round(cap, 4), **bounds, **cold}, start),
    }
    rows: list[AutoscalingRow] = []
    static_month = None
    for name in POLICIES:
        cfg, n0 = policies[name]
        d = _day(doc, peak, k, day_s)
        d = {**d, "cluster": {**d["cluster"], "replicas": n0}, "autoscaling": cfg}
        sc = parse_scenario(d)
        assert isinstance(sc, ServingScenario)
        r = simulate_serving(sc)
        act = scale_activity(r.scaling)
        month = r.usd_per_hour * HOURS_PER_MONTH
        if static_month is None:
            static_month = month
        rows.append(AutoscalingRow(
            hardware=c.hardware, tp=c.tp, engine=c.engine, policy=name, settings=cfg, slo_met=r.slo_met,
            slo_attainment=r.slo_attainment, replicas_mean=r.replicas.mean, replicas_max=r.replicas.max,
            scale_events=act.events, oscillating=act.oscillating, usd_per_month=round(month, 2),
            saving_vs_static=round(1 - month / static_month, 4) if static_month else 0.0, recommended=name == "hpa"))
    return rows, hpa


def _replace(c: ServingCandidate, **kw: Any) -> ServingCandidate:
    return ServingCandidate(**{**c.to_dict(), **kw})
