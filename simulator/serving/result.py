"""The typed result of a serving simulation: summary metrics, per-request records, time series.

Latencies per completed request: TTFT = first token − arrival; TPOT = (done − first token) /
(output − 1); end-to-end = done − arrival; queueing = first scheduled − arrival. Throughput and
cost are over the simulated span (time 0 to the last completion, or the horizon). SLO attainment
is the fraction of finished requests (completed or rejected; rejected ones miss) whose own
latencies meet every bound the scenario sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..costmodel.inference import InferenceModel
from ..hardware import resolve_price
from ..result_views import ResultViews
from ..scenario import ServingScenario
from .engines import ReplicaPlan
from .replica import DONE, FAILED, REJECT_REASONS, REJECTED, Ledger, Replica

MAX_BINS = 120


def _r(x: float, nd: int = 6) -> float | None:
    x = float(x)
    return float(f"{x:.{nd}g}") if np.isfinite(x) else None


def percentiles(x: np.ndarray) -> dict[str, float | None]:
    if len(x) == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"p50": _r(p50), "p90": _r(p90), "p99": _r(p99), "mean": _r(np.mean(x))}


def step_integral(times: np.ndarray, values: np.ndarray, x: np.ndarray, t_end: float) -> np.ndarray:
    """∫₀ˣ v(t) dt of the step function that takes ``values[i]`` from ``times[i]`` (0 before the first)."""
    if len(times) == 0:
        return np.zeros_like(x, dtype=float)
    seg = np.diff(np.append(times, max(t_end, times[-1]))) * values
    cum = np.concatenate(([0.0], np.cumsum(seg)))
    i = np.searchsorted(times, x, side="right") - 1
    out = np.where(i >= 0, cum[np.maximum(i, 0)] + values[np.maximum(i, 0)] * (x - times[np.maximum(i, 0)]), 0.0)
    return out


def _busy_series(rep: Replica, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Busy windows as a step function: value during [start, end), 0 between windows."""
    s, e = np.frombuffer(rep.busy_start), np.frombuffer(rep.busy_end)
    v = np.ones_like(s) if which == "busy" else np.frombuffer(rep.busy_kv if which == "kv" else rep.busy_tokens)
    t = np.empty(2 * len(s))
    t[0::2], t[1::2] = s, e
    val = np.zeros(2 * len(s))
    val[0::2] = v
    return t, val


@dataclass
class ServingResult(ResultViews):
    scenario: ServingScenario
    summary: dict[str, Any]
    requests: pd.DataFrame = field(repr=False)
    timeseries: pd.DataFrame = field(repr=False)
    scaling: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def requests_frame(self) -> pd.DataFrame:
        return self.requests

    def timeseries_frame(self) -> pd.DataFrame:
        return self.timeseries

    def scaling_frame(self) -> pd.DataFrame:
        """Per time bin: arrival rate, replicas requested/ready, e2e percentiles, cost accrued."""
        return self.scaling


def request_frame(ledger: Ledger) -> pd.DataFrame:
    q = ledger.reqs
    names = np.array(q.class_names)
    frame = pd.DataFrame({
        "arrival_s": q.arrival, "prompt_tokens": q.prompt, "output_tokens": q.output, "class": names[q.klass],
        "replica": ledger.replica, "status": np.array(["in_flight", "completed", "rejected", "failed"])[ledger.status],
        "reject_reason": np.array(REJECT_REASONS)[ledger.reason],
        "queue_s": ledger.first_sched - q.arrival, "ttft_s": ledger.first_token - q.arrival,
        "e2e_s": ledger.done - q.arrival, "preemptions": ledger.preemptions,
    })
    frame.loc[ledger.status != DONE, ["ttft_s", "e2e_s"]] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = (ledger.done - ledger.first_token) / (q.output - 1)
    frame["tpot_s"] = np.where((ledger.status == DONE) & (q.output > 1), tpot, np.nan)
    return frame


def timeseries(replicas: list[Replica], end: float, kv_capacity: int) -> pd.DataFrame:
    """Per replica and time bin: mean queue length, requests running, batch tokens, KV-cache use, utilization."""
    bins = max(1, min(MAX_BINS, int(np.ceil(end)) if end > 0 else 1))
    edges = np.linspace(0.0, end, bins + 1) if end > 0 else np.array([0.0, 1.0])
    width = np.diff(edges)
    rows = []
    for rep in replicas:
        lt = np.frombuffer(rep.log_t)
        cols: dict[str, np.ndarray] = {}
        for name, vals in (("queue", rep.log_wait), ("running", rep.log_run)):
            cols[name] = np.diff(step_integral(lt, np.frombuffer(vals, dtype=np.int64).astype(float), edges, end)) / width
        for name, which in (("utilization", "busy"), ("kv_tokens", "kv"), ("batch_tokens", "tokens")):
            t, v = _busy_series(rep, which)
            cols[name] = np.diff(step_integral(t, v, edges, end)) / width
        cols["kv_cache_utilization"] = cols.pop("kv_tokens") / kv_capacity if kv_capacity else np.zeros(bins)
        rows.append(pd.DataFrame({"t_s": edges[:-1], "replica": rep.index, **cols}))
    return pd.concat(rows, ignore_index=True)


def _replica_seconds(lives: list[Any], end: float, which: str) -> float:
    total = 0.0
    for life in lives:
        start = life.requested if which == "requested" else life.ready
        if start is None or start >= end:
            continue
        stop = life.released if life.released is not None else end
        total += max(0.0, min(stop, end) - start)
    return total


@dataclass
class Part:
    """One service of the run (a single-service run has one part)."""

    name: str
    sc: ServingScenario
    perf: InferenceModel
    plan: ReplicaPlan
    svc: Any


def _part_numbers(p: Part, end: float) -> dict[str, Any]:
    svc, plan, perf = p.svc, p.plan, p.perf
    busy = 0.0
    for rep in svc.all:
        s_, e_ = np.frombuffer(rep.busy_start), np.frombuffer(rep.busy_end)
        busy += float(np.sum(np.clip(np.minimum(e_, end) - s_, 0.0, None)))
    kv_used = 0.0
    if plan.kv_cache_tokens:
        for rep in svc.all:
            s_, e_ = np.frombuffer(rep.busy_start), np.frombuffer(rep.busy_end)
            kv_used += float(np.sum((np.minimum(e_, end) - np.minimum(s_, end)) * np.frombuffer(rep.busy_kv)))
    usd_gpu_h, price_src = resolve_price(p.sc.pricing, perf.hw)
    spot_gpu_h = usd_gpu_h
    if any(life.spot for life in svc.lives):
        spot_gpu_h, _ = resolve_price(p.sc.pricing.model_copy(update={"market": "spot"}), perf.hw)
    on_s = _replica_seconds([x for x in svc.lives if not x.spot], end, "requested")
    spot_s = _replica_seconds([x for x in svc.lives if x.spot], end, "requested")
    gpr = plan.gpus_per_replica
    idle_w, tdp = perf.hw.idle_w or 0.0, perf.hw.tdp_w or 0.0
    return {"busy": busy, "kv_used": kv_used, "on_s": on_s, "spot_s": spot_s,
            "ready_s": _replica_seconds(svc.lives, end, "ready"), "gpr": gpr, "usd_gpu_h": usd_gpu_h,
            "price_src": price_src, "usd_replica_h": usd_gpu_h * gpr,
            "cost": (on_s * usd_gpu_h + spot_s * spot_gpu_h) * gpr / 3600,
            "energy_kwh": gpr * (busy * tdp + (on_s + spot_s - busy) * idle_w) / 3.6e6,
            "max_req": int(max(svc.scale_req)) if svc.scale_req else len(svc.all)}


def scaling_frame(parts: list[Part], ledger: Ledger, end: float) -> pd.DataFrame:
    """Per time bin: arrival rate, replicas requested and ready (all services), e2e p50/p99 of the
    requests finishing in the bin, and cost accrued."""
    bins = max(1, min(MAX_BINS, int(np.ceil(end)) if end > 0 else 1))
    edges = np.linspace(0.0, end, bins + 1) if end > 0 else np.array([0.0, 1.0])
    width = np.diff(edges)
    req = np.zeros(bins)
    ready = np.zeros(bins)
    cum = np.zeros(bins)
    for p in parts:
        svc = p.svc
        t = np.asarray(svc.scale_t)
        req += np.diff(step_integral(t, np.asarray(svc.scale_req, dtype=float), edges, end)) / width
        ready += np.diff(step_integral(t, np.asarray(svc.scale_ready, dtype=float), edges, end)) / width
        rate = _part_numbers(p, end)["usd_replica_h"]
        cum += np.array([_replica_seconds(svc.lives, x, "requested") for x in edges[1:]]) / 3600 * rate
    q = ledger.reqs
    arrivals = np.histogram(q.arrival[np.isfinite(q.arrival)], bins=edges)[0] / width
    done = ledger.status == DONE
    e2e = (ledger.done - q.arrival)[done]
    which = np.clip(np.searchsorted(edges, ledger.done[done], side="right") - 1, 0, bins - 1)
    p50 = np.full(bins, np.nan)
    p99 = np.full(bins, np.nan)
    if len(e2e):
        order = np.argsort(which, kind="stable")
        w, v = which[order], e2e[order]
        cuts = np.flatnonzero(np.diff(w)) + 1
        for idx, chunk in zip(np.split(w, cuts), np.split(v, cuts), strict=True):
            p50[idx[0]], p99[idx[0]] = np.percentile(chunk, [50, 99])
    return pd.DataFrame({"t_s": edges[:-1], "arrival_rps": arrivals, "replicas_requested": req, "replicas_ready": ready,
                         "e2e_p50_s": p50, "e2e_p99_s": p99, "cost_usd_accrued": cum})


def _serving_mfu(p: Part, q: Any, done: np.ndarray, nums: dict[str, Any], end: float) -> float:
    """Model FLOPs of the tokens served (2 · active parameters per prompt and output token) over the
    peak FLOP/s of the GPU-seconds paid for: how much of what was rented did useful model work."""
    tokens = float(q.prompt[done].sum() + q.output[done].sum()) if p.plan.generative else float(q.prompt[done].sum())
    flops = 2.0 * p.perf.model.active_params() * tokens
    gpu_s = (nums["on_s"] + nums["spot_s"]) * nums["gpr"]
    return flops / max(p.perf.hw.peak_flops(p.sc.precision) * gpu_s, 1e-12)


def build_result(sc: ServingScenario, parts: list[Part], ledger: Ledger, end: float,
                 warnings: list[str]) -> ServingResult:
    main = parts[-1]
    perf, plan = main.perf, main.plan
    q = ledger.reqs
    frame = request_frame(ledger)
    arrived = np.isfinite(q.arrival) & (q.arrival <= end)
    done = ledger.status == DONE
    rejected = ledger.status == REJECTED
    failed = ledger.status == FAILED
    n_arr, n_done, n_rej, n_fail = int(arrived.sum()), int(done.sum()), int(rejected.sum()), int(failed.sum())
    span = max(end, 1e-12)
    out_tokens = float(q.output[done].sum()) if plan.generative else 0.0
    nums = [_part_numbers(p, end) for p in parts]
    m = nums[-1]
    busy, ready_s = sum(n["busy"] for n in nums), sum(n["ready_s"] for n in nums)
    kv_cap = plan.kv_cache_tokens
    cost = sum(n["cost"] for n in nums)
    usd_per_hour = cost / (span / 3600)
    energy_kwh = sum(n["energy_kwh"] for n in nums)
    replica_s = sum(n["on_s"] + n["spot_s"] for n in nums)
    R_mean = replica_s / span
    max_req = sum(n["max_req"] for n in nums)
    usd_gpu_h, price_src = m["usd_gpu_h"], m["price_src"]
    slo = sc.slo
    ok = done.copy()
    for col, bound in (("ttft_s", slo.ttft_p99_s), ("tpot_s", slo.tpot_p99_s), ("e2e_s", slo.e2e_p99_s)):
        if bound is not None:
            v = frame[col].to_numpy()
            ok &= ~(v > bound)   # NaN TPOT (one-token outputs) cannot miss
    has_slo = any(b is not None for b in (slo.ttft_p99_s, slo.tpot_p99_s, slo.e2e_p99_s))
    finished = n_done + n_rej + n_fail
    lat = {c: percentiles(frame.loc[done, c].dropna().to_numpy()) for c in ("ttft_s", "tpot_s", "e2e_s", "queue_s")}
    slo_met = None
    if has_slo:
        slo_met = all(lat[c]["p99"] is not None and lat[c]["p99"] <= b for c, b in
                      (("ttft_s", slo.ttft_p99_s), ("tpot_s", slo.tpot_p99_s), ("e2e_s", slo.e2e_p99_s)) if b is not None)
        slo_met = bool(slo_met and n_rej + n_fail == 0)
    reasons = {REJECT_REASONS[i]: int(np.sum(ledger.reason[rejected] == i)) for i in range(1, len(REJECT_REASONS))}
    svc = main.svc
    kv_used = m["kv_used"]
    main_ready_s = m["ready_s"]
    retries = sum(int(p.svc.retries.sum()) for p in parts)
    failures = sum(p.svc.failed_replicas for p in parts)
    preempted = sum(p.svc.preempted_replicas for p in parts)
    s: dict[str, Any] = {
        "kind": "serving",
        "name": sc.name,
        "model": perf.model.name,
        "hardware": perf.hw.name,
        "precision": sc.precision,
        "replica_layout": {"tp": sc.replica.tp, "pp": sc.replica.pp, "batching": sc.replica.batching,
                           "max_num_seqs": plan.max_num_seqs, "max_batched_tokens": plan.max_batched_tokens,
                           "kv_cache_precision": plan.kv_cache_precision},
        "kv_cache_tokens_per_replica": kv_cap,
        "memory_per_gpu_gib": {k: _r(v, 5) for k, v in plan.memory_per_gpu_gib.items()},
        "simulated_s": _r(end),
        "arrived": n_arr,
        "completed": n_done,
        "rejected": n_rej,
        "rejected_by_reason": {k: v for k, v in reasons.items() if v},
        "failed": n_fail,
        "in_flight": n_arr - n_done - n_rej - n_fail,
        "retries": retries,
        "replica_failures": failures,
        "spot_preemptions": preempted,
        "preemptions": int(ledger.preemptions.sum()),
        "throughput_rps": _r(n_done / span),
        "output_tokens_per_s": _r(out_tokens / span),
        "input_tokens_per_s": _r(float(q.prompt[done].sum()) / span),
        **lat,
        "replicas": {"mean": _r(R_mean, 4), "max": max_req},
        "replica_hours": _r(replica_s / 3600),
        "cold_start_s": _r(svc.cold_start),
        "autoscaling": sc.autoscaling.policy,
        "gpus": sum(n["max_req"] * n["gpr"] for n in nums),
        "gpu_utilization": _r(busy / max(ready_s, 1e-12), 4),
        "mfu": _r(_serving_mfu(main, q, done, m, end), 4),
        "kv_cache_utilization": _r(kv_used / (max(main_ready_s, 1e-12) * kv_cap), 4) if kv_cap else None,
        "slo": {k: v for k, v in slo.model_dump().items() if v is not None},
        "slo_attainment": _r(float(ok.sum()) / finished, 4) if has_slo and finished else None,
        "slo_met": slo_met,
        "usd_per_gpu_hour": _r(usd_gpu_h),
        "price_source": price_src,
        "usd_per_hour": _r(usd_per_hour),
        "cost_usd": _r(cost),
        "cost_per_million_tokens_usd": _r(cost / out_tokens * 1e6) if out_tokens else None,
        "energy_kwh": _r(energy_kwh),
        "warnings": warnings,
    }
    if len(q.class_names) > 1:
        s["classes"] = {
            name: {"completed": int((done & (q.klass == k)).sum()), "rejected": int((rejected & (q.klass == k)).sum()),
                   **{c: percentiles(frame.loc[done & (q.klass == k), c].dropna().to_numpy())
                      for c in ("ttft_s", "e2e_s")}}
            for k, name in enumerate(q.class_names)
        }
    if len(parts) > 1:
        s["services"] = {p.name: {"model": p.perf.model.name, "hardware": p.perf.hw.name,
                                  "replicas": {"mean": _r((n["on_s"] + n["spot_s"]) / span, 4), "max": n["max_req"]},
                                  "replica_hours": _r((n["on_s"] + n["spot_s"]) / 3600), "cost_usd": _r(n["cost"]),
                                  "gpu_utilization": _r(n["busy"] / max(n["ready_s"], 1e-12), 4),
                                  **p.svc.stage_stats()}
                         for p, n in zip(parts, nums, strict=True)}
    ts = pd.concat([timeseries(p.svc.all, end, p.plan.kv_cache_tokens).assign(service=p.name) for p in parts],
                   ignore_index=True)
    return ServingResult(sc, s, frame, ts, scaling_frame(parts, ledger, end))
