"""Build the typed result of a serving simulation from the services' logs and the request ledger.

Every number is computed here, once; ``ServingResult`` (in ``outcome``) holds them and the views
read its fields. Latency, throughput, cost and SLO definitions are in ``outcome``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..costmodel.inference import InferenceModel
from ..hardware import HardwareProfile, resolve_price
from ..invariants import check_serving_counts, check_summary
from ..scenario import ServingScenario
from .engines import ReplicaPlan
from .frames import (
    RequestRecord,
    busy_seconds,
    kv_seconds,
    latency_columns,
    ready_per_bin,
    replica_rows,
    replica_seconds,
    request_frame,
    scaling_columns,
    time_bins,
    timeseries_columns,
)
from .ledger import DONE, FAILED, PENDING, REJECT_REASONS, REJECTED, Ledger
from .outcome import ServingResult
from .prefix_stats import first_hits
from .prefix_stats import summarize as summarize_prefix
from .replica import FS_PER_S
from .result_frames import ResultFrames
from .streamed import EXACT_BELOW, STREAMED_NOTE, sketch_percentiles, streamed_percentiles
from .summary import (
    ClassSummary,
    Percentiles,
    ReplicaCount,
    ReplicaLayoutInfo,
    ReplicaMemory,
    ServiceSummary,
    SLOBounds,
    rounded,
    rounded_or_none,
)
from .tokens import token_gaps

if TYPE_CHECKING:
    import pandas as pd

SLO_COLUMN = {f"{m}_{q}_s": f"{m}_s" for m in ("ttft", "tpot", "itl", "e2e") for q in ("p50", "p90", "p99")}
"""bound → the request column (and latency) it bounds; ``_p50/_p90/_p99`` is the percentile it bounds"""


@dataclass
class Part:
    """One service of the run (a single-service run has one part)."""

    name: str
    sc: ServingScenario
    perf: InferenceModel
    plan: ReplicaPlan
    svc: Any


@dataclass(frozen=True, slots=True)
class PartNumbers:
    """One service's totals over the simulated span."""

    busy: float
    """GPU-busy seconds of its replicas"""
    kv_used: float
    """KV-cache token-seconds in use"""
    on_s: float
    """on-demand replica-seconds paid for"""
    spot_s: float
    """spot replica-seconds paid for"""
    ready_s: float
    """replica-seconds from ready to release"""
    gpr: int
    """GPUs per replica"""
    usd_gpu_h: float
    price_src: str
    usd_replica_h: float
    cost: float
    energy_kwh: float
    max_req: int
    """most replicas requested at once"""


# how the kinds of measured tables read in one line, in this order
TABLE_NAMES = {"gemm": "gemm", "context_attention": "attention", "generation_attention": "attention", "moe": "moe",
               "collective": "all-reduce", "memory": "memory"}
SPEC_SHEET = "spec sheet (no measured tables for this GPU)"


def kernel_tables_line(hw: HardwareProfile) -> str:
    """The tables a replica's kernels are timed with, grouped by engine and version: ``vllm 0.24.0 (gemm,
    attention, all-reduce), nccl 2.27.3``; :data:`SPEC_SHEET` for a GPU without measured tables. An
    autotuned GEMM format names the other engines' tables it takes the fastest kernel from."""
    basis = hw.kernels
    if basis is None:
        return SPEC_SHEET
    groups: dict[str, list[str]] = {}
    for kind, name in TABLE_NAMES.items():
        ref = basis.chosen.get(kind)
        if ref is None:
            continue
        names = groups.setdefault(f"{ref.engine} {ref.engine_version}", [])
        if name not in names:
            names.append(name)
    parts = [f"{ev} ({', '.join(names)})" for ev, names in groups.items()]
    for dtype, alts in basis.gemm_alternatives.items():    # an autotuned format (silicon.tables.AUTOTUNED_GEMMS)
        parts.append(f"{dtype} gemm also from " + ", ".join(f"{r.engine} {r.engine_version}" for r in alts)
                     + " (the fastest)")
    if basis.nccl is not None:
        parts.append(f"nccl {basis.nccl.engine_version}")
    if not basis.chosen:
        parts.insert(0, f"spec sheet (no {basis.engine} tables for this GPU)")
    return ", ".join(parts) or SPEC_SHEET


def preset_warnings(parts: list[Part]) -> list[str]:
    """The engine-preset warnings of every service (a version older than every preset), once each."""
    out: list[str] = []
    for p in parts:
        w = p.plan.engine.warning if p.plan.engine is not None else None
        if w and w not in out:
            out.append(w)
    return out


def table_warnings(parts: list[Part]) -> list[str]:
    """The measured-table warnings of every service (an engine version without tables), once each."""
    out: list[str] = []
    for p in parts:
        basis = p.perf.hw.kernels
        for w in basis.warnings if basis is not None else []:
            line = f"service {p.name}: {w}" if len(parts) > 1 else w
            if line not in out:
                out.append(line)
    return out


def _part_numbers(p: Part, end: float) -> PartNumbers:
    svc, plan, perf = p.svc, p.plan, p.perf
    busy = 0.0
    for rep in svc.all:
        busy += busy_seconds(rep, end)
    kv_used = 0.0
    if plan.kv_cache_tokens:
        for rep in svc.all:
            kv_used += kv_seconds(rep, end)
    gpr = plan.gpus_per_replica      # a replica is priced from the instance with its GPU count (a 1-GPU L4 from a 1-GPU VM)
    usd_gpu_h, price_src = resolve_price(p.sc.pricing, perf.hw, gpus_per_node=gpr)
    spot_gpu_h = usd_gpu_h
    if any(life.spot for life in svc.lives):
        spot_gpu_h, _ = resolve_price(p.sc.pricing.model_copy(update={"market": "spot"}), perf.hw, gpus_per_node=gpr)
    on_s = replica_seconds([x for x in svc.lives if not x.spot], end, "requested")
    spot_s = replica_seconds([x for x in svc.lives if x.spot], end, "requested")
    gpr = plan.gpus_per_replica
    idle_w, tdp = perf.hw.idle_w or 0.0, perf.hw.tdp_w or 0.0
    return PartNumbers(busy=busy, kv_used=kv_used, on_s=on_s, spot_s=spot_s,
                       ready_s=replica_seconds(svc.lives, end, "ready"), gpr=gpr, usd_gpu_h=usd_gpu_h,
                       price_src=price_src, usd_replica_h=usd_gpu_h * gpr,
                       cost=(on_s * usd_gpu_h + spot_s * spot_gpu_h) * gpr / 3600,
                       energy_kwh=gpr * (busy * tdp + (on_s + spot_s - busy) * idle_w) / 3.6e6,
                       max_req=int(max(svc.scale_req)) if svc.scale_req else len(svc.all))


def _serving_mfu(p: Part, q: Any, done: np.ndarray, nums: PartNumbers, end: float) -> float:
    """Model FLOPs of the tokens served (2 · active parameters per prompt and output token; prompt tokens
    found in the prefix cache were not computed) over the peak FLOP/s of the GPU-seconds paid for: how
    much of what was rented did useful model work."""
    tokens = float(q.prompt[done].sum() + q.output[done].sum()) if p.plan.generative else float(q.prompt[done].sum())
    cached = first_hits(p.svc.all, len(q.prompt))
    if cached is not None:
        tokens -= float(cached[done].sum())
    model = p.perf.model
    # a CNN: 2 FLOPs per multiply-add of its convolutions, per image; a transformer: 2 per active parameter per token
    flops = 2.0 * model.conv_macs() * float(done.sum()) if model.convnet is not None else \
        2.0 * model.active_params() * tokens
    gpu_s = (nums.on_s + nums.spot_s) * nums.gpr
    return flops / max(p.perf.hw.peak_flops(p.sc.precision) * gpu_s, 1e-12)


def _frames(parts: list[Part], nums: list[PartNumbers], ledger: Ledger, end: float) -> ResultFrames:
    """The result's series as arrays (its frames are built from them when first read): per replica and
    time bin, scaling and replicas up per time bin, per replica's life."""
    edges = time_bins(end)
    ready = [ready_per_bin(p.svc.lives, edges) for p in parts]
    return ResultFrames(
        series=[(p.name, timeseries_columns(p.svc.all, end, p.plan.kv_cache_tokens)) for p in parts],
        scaling_columns=scaling_columns([p.svc for p in parts], [n.usd_replica_h for n in nums], ledger, end),
        replica_rows=replica_rows([(p.name, p.svc.all) for p in parts], end),
        ready=np.sum(ready, axis=0), main_ready=ready[-1])


def _services(parts: list[Part], nums: list[PartNumbers], span: float) -> dict[str, ServiceSummary] | None:
    if len(parts) < 2:
        return None
    out = {}
    for p, n in zip(parts, nums, strict=True):
        st = p.svc.stage_stats()
        out[p.name] = ServiceSummary(
            model=p.perf.model.name, hardware=p.perf.hw.name,
            replicas=ReplicaCount(mean=rounded((n.on_s + n.spot_s) / span, 4), max=n.max_req),
            replica_hours=rounded((n.on_s + n.spot_s) / 3600), cost_usd=rounded(n.cost),
            gpu_utilization=rounded(n.busy / max(n.ready_s, 1e-12), 4), reached=st["reached"], served=st["served"],
            cache_hits=st["cache_hits"], not_completed=st["not_completed"], latency_p50_s=st["latency_p50_s"],
            latency_p99_s=st["latency_p99_s"])
    return out


def _arrival_span(t: np.ndarray, start: float) -> float:
    """Seconds from the measured phase's start to its last arrival (the load's span, drain left out)."""
    return max(float(t.max()) - start, 1e-12) if len(t) else 1e-12


def _honest_utilization(sc: ServingScenario, main: Part, frames: ResultFrames, *, arrival_rps: float,
                        ready_replicas: float, output_tokens_per_s: float) -> dict[str, float | None]:
    """Saturation (load ÷ capacity) and MBU of the last service (serving.saturation)."""
    from .saturation import mbu, saturation
    from .simulate import length_stats

    w = main.sc.workload
    ls = length_stats(w.prompt_tokens, w.output_tokens)
    sat = saturation(main.perf, main.plan, mean_prompt=ls.mean_prompt, mean_output=ls.mean_output,
                     arrival_rps=arrival_rps, ready_replicas=ready_replicas,
                     batch=getattr(main.sc.replica, "max_batch_size", None))
    u = mbu(main.perf, main.plan, frames.column("running", main.sc.name), output_tokens_per_s=output_tokens_per_s,
            ready_replicas=ready_replicas, mean_prompt=ls.mean_prompt, mean_output=ls.mean_output)
    return {"saturation": rounded(sat, 4) if sat is not None else None, "mbu": rounded(u, 4) if u is not None else None}


def scaling_warnings(sc: ServingScenario, scaling: Any) -> list[str]:
    """Autoscaling on busy time under continuous batching, and a fleet that flaps (serving.scale_events);
    ``scaling``: the result's scaling columns (its frame or the arrays it is built from)."""
    from .scale_events import FLAP_WINDOW_S, scale_activity

    out = []
    if getattr(sc.autoscaling, "metric", None) == "utilization" and sc.replica.iteration_level:
        out.append("autoscaling.metric utilization is the share of time a kernel runs (DCGM-style GPU busy): under "
                   "continuous batching it reads near 100% from low load on, so it saturates and cannot tell a busy "
                   "replica from an overloaded one; scale on concurrency, queue or kv_cache")
    a = scale_activity(scaling)
    if a.oscillating:
        out.append(f"autoscaling oscillates: {a.flaps} reversals within {FLAP_WINDOW_S:.0f} s of the previous scale "
                   "event; lengthen the scale-down stabilization window (beyond the cold start) or widen the tolerance")
    return out


def _request_table(rec: RequestRecord, generative: bool, hits: np.ndarray | None,
                   largest: np.ndarray | None) -> Any:
    """A builder of the per-request frame (called when the result's ``requests`` is first read). It holds
    the request record and two optional columns, not the ledger: the replicas and their logs are freed."""
    def build() -> pd.DataFrame:
        extra: dict[str, np.ndarray] = {"max_itl_s": largest if largest is not None else np.full(len(rec), np.nan)}
        if hits is not None:
            extra["prefix_hit_tokens"] = hits      # found in the prefix cache at the first admission
        return request_frame(rec, extra, generative=generative)
    return build


def build_result(sc: ServingScenario, parts: list[Part], ledger: Ledger, end: float,
                 warnings: list[str], *, measured_from: float = 0.0, exact_below: int = EXACT_BELOW) -> ServingResult:
    """The result. A closed loop's warm-up requests (the first ``ledger.reqs.warmup`` rows) are left
    out of the request counts, latencies, throughput and SLO, which cover the measured phase: its
    requests, over the span from ``measured_from`` (when the warm-up had drained) to ``end``. Cost,
    energy, replica-hours, utilization and MFU cover the whole run, warm-up included (it was paid for).

    A run of ``exact_below`` requests or more is streamed (:mod:`.streamed`): its latency percentiles
    come from relative-error sketches (±0.5%) and a warning says so; below, they are exact."""
    main = parts[-1]
    perf, plan = main.perf, main.plan
    q = ledger.reqs
    stream = ledger.stream           # a streamed single-service run: latencies taken at each completion
    streamed = ledger.streamed or len(q) >= exact_below
    measured = np.arange(len(q)) >= q.warmup
    arrived = np.isfinite(q.arrival) & (q.arrival <= end) & measured
    served = ledger.status == DONE                      # warm-up included: the work the GPUs did
    done = served & measured
    rejected = (ledger.status == REJECTED) & measured
    failed = (ledger.status == FAILED) & measured
    n_arr, n_done, n_rej, n_fail = int(arrived.sum()), int(done.sum()), int(rejected.sum()), int(failed.sum())
    # in flight: counted from the requests' states, never as the remainder (simulator.invariants)
    n_flight = int((arrived & (ledger.status == PENDING)).sum())
    check_serving_counts(arrived=n_arr, completed=n_done, rejected=n_rej, failed=n_fail, in_flight=n_flight,
                         finished_unarrived=int(((ledger.status != PENDING) & measured & ~arrived).sum()))
    span = max(end, 1e-12)
    window = max(end - measured_from, 1e-12)           # the measured phase
    out_tokens = float(q.output[done].sum()) if plan.generative else 0.0
    served_tokens = float(q.output[served].sum()) if plan.generative else 0.0
    nums = [_part_numbers(p, end) for p in parts]
    m = nums[-1]
    busy, ready_s = sum(n.busy for n in nums), sum(n.ready_s for n in nums)
    kv_cap = plan.kv_cache_tokens
    cost = sum(n.cost for n in nums)
    replica_s = sum(n.on_s + n.spot_s for n in nums)
    slo = SLOBounds(**sc.slo.model_dump())
    bounds = slo.to_dict()
    gen = plan.generative
    rec = RequestRecord.of(ledger)
    cols = latency_columns(rec) if stream is None else {}
    if stream is not None:
        stream.flush()
    n_within = stream.within if stream is not None else 0
    if stream is None:
        ok = done.copy()
        for key, bound in bounds.items():
            if key.startswith("itl_"):     # token gaps are not one number per request: checked on their percentiles
                continue
            ok &= ~(cols[SLO_COLUMN[key]] > bound)   # NaN TPOT (one-token outputs) cannot miss
        n_within = int(ok.sum())
        del ok
    finished = n_done + n_rej + n_fail
    if not gen and stream is None:          # one forward per request: no first token, no output tokens
        cols["ttft_s"] = cols["tpot_s"] = np.full(len(q), np.nan)

    def dist(c: str, klass: int | None = None) -> Percentiles:
        if stream is not None:
            none = not gen and c in ("ttft_s", "tpot_s")
            return Percentiles(None, None, None, None) if none else stream.percentiles(c, klass)
        v = cols[c][done if klass is None else done & (q.klass == klass)]
        return streamed_percentiles(v) if streamed else Percentiles.of(v[~np.isnan(v)])

    lat = {c: dist(c) for c in ("ttft_s", "tpot_s", "e2e_s", "queue_s")}
    itl = Percentiles(None, None, None, None)
    stream_gaps = main.svc.ledger.gaps
    gaps = token_gaps(main.svc.ledger, main.svc.all, done) if plan.generative and stream_gaps is None else None
    hits = first_hits(main.svc.all, len(q.prompt))
    if gaps is not None:
        itl = Percentiles.of_progressions(gaps.a, gaps.d, gaps.k, gaps.w, unit=1 / FS_PER_S)
    elif stream_gaps is not None and stream_gaps.known and plan.generative:
        itl = sketch_percentiles(stream_gaps.sketch)     # a streamed run's gaps, folded as it ran (serving.binned)
    slo_met = None
    if bounds:
        dists = {**lat, "itl_s": itl}
        within = all((val := getattr(dists[SLO_COLUMN[key]], key.split("_")[1])) is not None and val <= b
                     for key, b in bounds.items())
        slo_met = bool(within and n_rej + n_fail == 0)
    reasons = {REJECT_REASONS[i]: int(np.sum(ledger.reason[rejected] == i)) for i in range(1, len(REJECT_REASONS))}
    classes = None
    if len(q.class_names) > 1:
        classes = {name: ClassSummary(
            completed=int((done & (q.klass == k)).sum()), rejected=int((rejected & (q.klass == k)).sum()),
            ttft_s=dist("ttft_s", k), e2e_s=dist("e2e_s", k))
            for k, name in enumerate(q.class_names)}
    frames = _frames(parts, nums, ledger, end)
    energy_kwh = sum(n.energy_kwh for n in nums)
    served_items = float(served.sum())
    notes = (STREAMED_NOTE.format(n=len(q), exact_below=exact_below),) if streamed else ()
    result = ServingResult(
        scenario=sc, name=sc.name, model=perf.model.name, hardware=perf.hw.name, precision=sc.precision,
        generative=gen, item=perf.model.item,
        kernel_tables=kernel_tables_line(perf.hw),
        kernel_table_versions=perf.hw.kernels.describe() if perf.hw.kernels is not None else {},
        replica_layout=ReplicaLayoutInfo(tp=sc.replica.tp, pp=sc.replica.pp, batching=sc.replica.batching,
                                         max_num_seqs=plan.max_num_seqs, max_batched_tokens=plan.max_batched_tokens,
                                         kv_cache_precision=plan.kv_cache_precision if gen else None),
        engine_settings=plan.engine.to_dict() if plan.engine is not None else {},
        kv_cache_tokens_per_replica=kv_cap if gen else None,
        memory_per_gpu_gib=ReplicaMemory.build(plan.memory_per_gpu_gib),
        simulated_s=rounded(end), warmup_requests=q.warmup, measured_from_s=rounded(measured_from), arrived=n_arr,
        completed=n_done, rejected=n_rej,
        rejected_by_reason={k: v for k, v in reasons.items() if v}, failed=n_fail,
        in_flight=n_flight, retries=sum(p.svc.resent for p in parts),
        replica_failures=sum(p.svc.failed_replicas for p in parts),
        spot_preemptions=sum(p.svc.preempted_replicas for p in parts), preemptions=int(ledger.preemptions.sum()),
        throughput_rps=rounded(n_done / window), items_per_s=None if gen else rounded(n_done / window),
        output_tokens_per_s=rounded(out_tokens / window),
        input_tokens_per_s=rounded(float(q.prompt[done].sum()) / window), ttft_s=lat["ttft_s"] if gen else None,
        tpot_s=lat["tpot_s"] if gen else None, itl_s=itl if gen else None, e2e_s=lat["e2e_s"], queue_s=lat["queue_s"],
        replicas=ReplicaCount(mean=rounded(replica_s / span, 4), max=sum(n.max_req for n in nums)),
        replica_hours=rounded(replica_s / 3600), cold_start_s=rounded(main.svc.cold_start),
        autoscaling=sc.autoscaling.policy, gpus=sum(n.max_req * n.gpr for n in nums),
        gpu_utilization=rounded(busy / max(ready_s, 1e-12), 4),
        **_honest_utilization(sc, main, frames, arrival_rps=n_arr / _arrival_span(q.arrival[arrived], measured_from),
                              ready_replicas=m.ready_s / span,
                              output_tokens_per_s=served_tokens / span),
        mfu=rounded(_serving_mfu(main, q, served, m, end), 4),
        kv_cache_utilization=rounded(m.kv_used / (max(m.ready_s, 1e-12) * kv_cap), 4) if kv_cap else None,
        slo=slo, slo_attainment=rounded(float(n_within) / finished, 4) if bounds and finished else None,
        slo_met=slo_met, usd_per_gpu_hour=rounded(m.usd_gpu_h), price_source=m.price_src,
        usd_per_hour=rounded(cost / (span / 3600)), cost_usd=rounded(cost),
        cost_per_million_tokens_usd=rounded_or_none(cost / served_tokens * 1e6) if served_tokens else None,
        cost_per_million_items_usd=rounded_or_none(cost / served_items * 1e6) if not gen and served_items else None,
        energy_kwh=rounded(energy_kwh),
        items_per_joule=rounded_or_none(served_items / (energy_kwh * 3.6e6)) if not gen and energy_kwh > 0 else None,
        warnings=(*warnings, *table_warnings(parts), *preset_warnings(parts),
                  *scaling_warnings(sc, frames.scaling_columns), *notes),
        classes=classes,
        services=_services(parts, nums, span), prefix_cache=summarize_prefix(main.svc.all),
        request_table=_request_table(rec, gen, hits, gaps.largest if gaps is not None else None),
        frames=frames)
    check_summary(result.summary, "serving")      # every number finite and >= 0
    return result
