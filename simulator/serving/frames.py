"""The frames of a serving result, from the replicas' logs: per request, per replica and time bin,
per time bin for the whole fleet, and per replica over its life.

Every time series shares one set of bins: ``time_bins(end)``, at most ``MAX_BINS`` of equal width
from 0 to the end of the simulated span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..order_stats import percentiles
from .ledger import DONE, REJECT_REASONS, Ledger
from .prefix_stats import replica_columns as prefix_columns
from .replica import Replica

if TYPE_CHECKING:        # pandas loads when a frame is built, not when a run starts
    import pandas as pd

MAX_BINS = 120


def time_bins(end: float) -> np.ndarray:
    """Bin edges over [0, end]: one per simulated second, at most MAX_BINS (one bin of 1 s for an empty run)."""
    bins = max(1, min(MAX_BINS, int(np.ceil(end)) if end > 0 else 1))
    return np.linspace(0.0, end, bins + 1) if end > 0 else np.array([0.0, 1.0])


def step_integral(times: np.ndarray, values: np.ndarray, x: np.ndarray, t_end: float) -> np.ndarray:
    """∫₀ˣ v(t) dt of the step function that takes ``values[i]`` from ``times[i]`` (0 before the first)."""
    if len(times) == 0:
        return np.zeros_like(x, dtype=float)
    seg = np.diff(np.append(times, max(t_end, times[-1]))) * values
    cum = np.concatenate(([0.0], np.cumsum(seg)))
    i = np.searchsorted(times, x, side="right") - 1
    out = np.where(i >= 0, cum[np.maximum(i, 0)] + values[np.maximum(i, 0)] * (x - times[np.maximum(i, 0)]), 0.0)
    return out


def busy_series(rep: Replica, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Busy windows as a step function: value during [start, end), 0 between windows."""
    s, e = np.frombuffer(rep.busy_start), np.frombuffer(rep.busy_end)
    v = np.ones_like(s) if which == "busy" else np.frombuffer(rep.busy_kv if which == "kv" else rep.busy_tokens)
    t = np.empty(2 * len(s))
    t[0::2], t[1::2] = s, e
    val = np.zeros(2 * len(s))
    val[0::2] = v
    return t, val


def busy_seconds(rep: Replica, end: float) -> float:
    """Time the replica spent running iterations before ``end``."""
    if rep.bins is not None:                  # a streamed run's replica: its logs are folded (serving.binned)
        return float(rep.bins.integral_at("busy", end))
    s_, e_ = np.frombuffer(rep.busy_start), np.frombuffer(rep.busy_end)
    return float(np.sum(np.clip(np.minimum(e_, end) - s_, 0.0, None)))


def kv_seconds(rep: Replica, end: float) -> float:
    """KV-cache token-seconds in use while the replica ran iterations before ``end``."""
    if rep.bins is not None:
        return float(rep.bins.integral_at("kv", end))
    s_, e_ = np.frombuffer(rep.busy_start), np.frombuffer(rep.busy_end)
    return float(np.sum((np.minimum(e_, end) - np.minimum(s_, end)) * np.frombuffer(rep.busy_kv)))


def replica_seconds(lives: Sequence[Any], end: float, which: str) -> float:
    """Replica-seconds up to ``end`` from each life's request (``which="requested"``: paid for) or
    ready time (``"ready"``: able to work, draining included) until its release."""
    total = 0.0
    for life in lives:
        start = life.requested if which == "requested" else life.ready
        if start is None or start >= end:
            continue
        stop = life.released if life.released is not None else end
        total += max(0.0, min(stop, end) - start)
    return total


def ready_per_bin(lives: Sequence[Any], edges: np.ndarray) -> np.ndarray:
    """Mean number of replicas between ready and released (serving or draining) in each bin."""
    end = float(edges[-1])
    up = [(life.ready, life.released if life.released is not None else end) for life in lives if life.ready is not None]
    if not up:
        return np.zeros(len(edges) - 1)
    start, stop = (np.array(x, dtype=float)[:, None] for x in zip(*up, strict=True))
    overlap = (np.minimum(stop, edges[1:]) - np.maximum(start, edges[:-1])).clip(min=0.0)
    return overlap.sum(axis=0) / np.diff(edges)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What a result keeps of each request once the run is over: its inputs and outcome, columns of
    the ledger's own arrays (no copy; the replicas, their logs and the engines' state are let go).
    Per request: arrival, prompt and output (8 B each), class (2), first scheduled, first token and
    done (24), replica and preemptions (8), status and reason (2): 68 bytes. A streamed run's
    (serving.streamed) has no first-scheduled and first-token times (None): 52 bytes."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    klass: np.ndarray
    class_names: tuple[str, ...]
    warmup: int
    first_sched: np.ndarray | None
    first_token: np.ndarray | None
    done: np.ndarray
    replica: np.ndarray
    preemptions: np.ndarray
    status: np.ndarray
    reason: np.ndarray

    @classmethod
    def of(cls, ledger: Ledger) -> RequestRecord:
        q = ledger.reqs
        kept = ledger.stream is None          # a streamed run dropped each request's times at its completion
        return cls(q.arrival, q.prompt, q.output, q.klass, q.class_names, q.warmup,
                   ledger.first_sched if kept else None, ledger.first_token if kept else None, ledger.done,
                   ledger.replica, ledger.preemptions, ledger.status, ledger.reason)

    def __len__(self) -> int:
        return len(self.arrival)

    @property
    def nbytes(self) -> int:
        """Bytes of its per-request columns."""
        cols = [getattr(self, f) for f in ("arrival", "prompt", "output", "klass", "first_sched", "first_token",
                                           "done", "replica", "preemptions", "status", "reason")]
        return sum(c.nbytes for c in cols if c is not None)


def latency_columns(rec: RequestRecord) -> dict[str, np.ndarray]:
    """Per request, seconds: ``queue_s`` (first scheduled − arrival), and for completed requests
    ``ttft_s``, ``e2e_s`` and ``tpot_s`` (NaN otherwise, and TPOT NaN for one-token outputs; all but
    ``e2e_s`` NaN for a streamed run's record, which has no first-scheduled and first-token times)."""
    done = rec.status == DONE
    nan = np.full(len(rec), np.nan)
    first_sched = rec.first_sched if rec.first_sched is not None else nan
    first_token = rec.first_token if rec.first_token is not None else nan
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = (rec.done - first_token) / (rec.output - 1)
    return {"queue_s": first_sched - rec.arrival,
            "ttft_s": np.where(done, first_token - rec.arrival, np.nan),
            "e2e_s": np.where(done, rec.done - rec.arrival, np.nan),
            "tpot_s": np.where(done & (rec.output > 1), tpot, np.nan)}


def request_frame(rec: RequestRecord, extra: dict[str, np.ndarray] | None = None,
                  generative: bool = True) -> pd.DataFrame:
    """One row per request (built only when asked: a million requests take ~0.2 GB as a frame).
    ``extra``: further columns, in order; ``generative=False`` blanks TTFT and TPOT."""
    import pandas as pd

    lat = latency_columns(rec)
    frame = pd.DataFrame({
        "arrival_s": rec.arrival, "prompt_tokens": rec.prompt, "output_tokens": rec.output,
        "class": pd.Categorical.from_codes(rec.klass, pd.Index(list(rec.class_names))),
        "replica": rec.replica,
        "status": pd.Categorical.from_codes(rec.status, pd.Index(["in_flight", "completed", "rejected", "failed"])),
        "reject_reason": pd.Categorical.from_codes(rec.reason, pd.Index(list(REJECT_REASONS))),
        "queue_s": lat["queue_s"], "ttft_s": lat["ttft_s"], "e2e_s": lat["e2e_s"],
        "preemptions": rec.preemptions, "warmup": np.arange(len(rec)) < rec.warmup,
    })
    frame["tpot_s"] = lat["tpot_s"]
    if not generative:       # one forward per request: no first token, no output tokens (the frame keeps its columns)
        frame["ttft_s"] = np.nan
        frame["tpot_s"] = np.nan
    for k, v in (extra or {}).items():
        frame[k] = v
    return frame


def timeseries_columns(replicas: list[Replica], end: float, kv_capacity: int) -> dict[str, np.ndarray]:
    """Per replica and time bin (the replicas one after the other, each over every bin): mean queue
    length, requests running, utilization, batch tokens, KV-cache use and the prefix cache's columns.
    Plain arrays: the result builds its ``timeseries`` frame from them only when it is read."""
    edges = time_bins(end)
    bins = len(edges) - 1
    width = np.diff(edges)
    rows: list[dict[str, np.ndarray]] = []
    for rep in replicas:
        cols: dict[str, np.ndarray] = {"t_s": edges[:-1], "replica": np.full(bins, rep.index, dtype=np.int64)}
        if rep.bins is not None:              # a streamed run's replica: read from its fine bins (serving.binned)
            for name, channel in (("queue", "queue"), ("running", "running"), ("utilization", "busy"),
                                  ("kv_tokens", "kv"), ("batch_tokens", "tokens")):
                cols[name] = rep.bins.per_bin(channel, edges)
        else:
            lt = np.frombuffer(rep.log_t)
            for name, vals in (("queue", rep.log_wait), ("running", rep.log_run)):
                cols[name] = np.diff(step_integral(lt, np.frombuffer(vals, dtype=np.int64).astype(float), edges,
                                                   end)) / width
            for name, which in (("utilization", "busy"), ("kv_tokens", "kv"), ("batch_tokens", "tokens")):
                t, v = busy_series(rep, which)
                cols[name] = np.diff(step_integral(t, v, edges, end)) / width
        cols["kv_cache_utilization"] = cols.pop("kv_tokens") / kv_capacity if kv_capacity else np.zeros(bins)
        cols.update(prefix_columns(rep, edges))     # the hashed prefix cache's lookups and tiers (zeros without)
        rows.append(cols)
    if not rows:
        return {}
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def fleet_frame(ts: pd.DataFrame, ready: np.ndarray, main: str, main_ready: np.ndarray) -> pd.DataFrame:
    """Per time bin, over every service's replicas: replicas up, requests queued and running, GPU
    busy over the replicas up, and the last service's KV cache used over its replicas up.

    ``ts`` is the result's per-replica time series (with a ``service`` column), ``ready`` the
    replicas up per bin (all services) and ``main_ready`` those of the service ``main``."""
    import pandas as pd

    agg = ts.groupby("t_s", sort=True)[["queue", "running", "utilization"]].sum()
    kv = ts[ts.service == main].groupby("t_s", sort=True).kv_cache_utilization.sum().reindex(agg.index, fill_value=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):   # fractions: above 1 only by the integrals' rounding
        busy = np.where(ready > 1e-9, agg.utilization.to_numpy() / ready, 0.0).clip(0.0, 1.0)
        kv_used = np.where(main_ready > 1e-9, kv.to_numpy() / main_ready, 0.0).clip(0.0, 1.0)
    return pd.DataFrame({"t_s": agg.index.to_numpy(), "replicas_up": ready, "queue": agg.queue.to_numpy(),
                         "running": agg.running.to_numpy(), "gpu_busy": busy, "kv_cache_utilization": kv_used})


REPLICA_COLUMNS = ("service", "replica", "busy_s", "ready_s", "gpu_utilization")


def replica_rows(services: Sequence[tuple[str, list[Replica]]], end: float) -> list[dict[str, Any]]:
    """Per replica of each service: busy and ready seconds within the span, and their ratio (0 for a
    replica that became ready only after the last request finished); the rows of ``replica_stats``."""
    rows = []
    for name, replicas in services:
        for rep in replicas:
            life = rep.life
            stop = life.released if life.released is not None else end
            ready_s = max(0.0, min(stop, end) - life.ready) if life.ready is not None else 0.0
            busy = busy_seconds(rep, end)
            rows.append({"service": name, "replica": rep.index, "busy_s": busy, "ready_s": ready_s,
                         "gpu_utilization": busy / ready_s if ready_s > 0 else 0.0})
    return rows


def scaling_columns(services: Sequence[Any], usd_replica_h: Sequence[float], ledger: Ledger,
                    end: float) -> dict[str, np.ndarray]:
    """Per time bin: arrival rate, replicas requested and ready (all services), e2e p50/p99 of the
    requests finishing in the bin, and cost accrued (``usd_replica_h``: each service's $ per replica-hour);
    the columns of ``scaling``."""
    edges = time_bins(end)
    bins = len(edges) - 1
    width = np.diff(edges)
    req = np.zeros(bins)
    ready = np.zeros(bins)
    cum = np.zeros(bins)
    for svc, rate in zip(services, usd_replica_h, strict=True):
        t = np.asarray(svc.scale_t)
        req += np.diff(step_integral(t, np.asarray(svc.scale_req, dtype=float), edges, end)) / width
        ready += np.diff(step_integral(t, np.asarray(svc.scale_ready, dtype=float), edges, end)) / width
        cum += np.array([replica_seconds(svc.lives, x, "requested") for x in edges[1:]]) / 3600 * rate
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
            p50[idx[0]], p99[idx[0]] = percentiles(chunk, (50, 99))   # np.percentile's, bit for bit
    return {"t_s": edges[:-1], "arrival_rps": arrivals, "replicas_requested": req, "replicas_ready": ready,
            "e2e_p50_s": p50, "e2e_p99_s": p99, "cost_usd_accrued": cum}
