"""The parts of a serving result: latency percentiles, the replica's layout and memory, replica
counts, the SLO, and the per-class and per-service breakdowns.

Each part is a frozen dataclass whose fields are, in order, the keys ``capsim serve --json``
writes for it, so ``to_dict()`` is the JSON and an attribute reads the same number as the key.
Values are stored as reported: rounded to 6 significant digits (4 for fractions and means of
replica counts). Times are in seconds, memory in GiB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..order_stats import percentiles


def rounded(x: float, nd: int = 6) -> float:
    """``x`` to ``nd`` significant digits (for quantities finite by construction)."""
    x = float(x)
    return float(f"{x:.{nd}g}") if np.isfinite(x) else x


def rounded_or_none(x: float, nd: int = 6) -> float | None:
    """``x`` to ``nd`` significant digits; None when it is not finite (JSON null)."""
    x = float(x)
    return float(f"{x:.{nd}g}") if np.isfinite(x) else None


def _set_fields(obj: Any) -> dict[str, Any]:
    """The fields that are not None, in declaration order (keys absent from the JSON when unset)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Distribution of one latency over the completed requests (None when there are none)."""

    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None

    @classmethod
    def of(cls, x: np.ndarray) -> Percentiles:
        if len(x) == 0:
            return cls(None, None, None, None)
        p50, p90, p99 = percentiles(x, (50, 90, 99))     # np.percentile's numbers, without numpy.ma
        return cls(rounded(p50), rounded(p90), rounded(p99), rounded(float(np.mean(x))))

    @classmethod
    def of_progressions(cls, a: np.ndarray, d: np.ndarray, k: np.ndarray, w: np.ndarray,
                        unit: float = 1.0) -> Percentiles:
        """The percentiles :meth:`of` gives for the integer values ``a[i] + d[i]·(j−1)`` (j = 1..k[i],
        ``d ≥ 0``) each repeated ``w[i]`` times, scaled by ``unit`` — without expanding them.

        Each order statistic is the smallest ``x`` with ``count(x) = Σ w·#(values ≤ x)`` above its
        rank, found by bisection on ``x``. Bounds first narrow it: progressions wholly at or below
        ``x`` give a lower bound on the count, those starting at or below it an upper one, so only
        the progressions straddling the answer's bracket are counted in the bisection."""
        a, d, k, w = (np.asarray(v, dtype=np.int64) for v in (a, d, k, w))
        keep = (w > 0) & (k > 0)
        a, d, k, w = a[keep], d[keep], k[keep], w[keep]
        wk = w * k
        total = int(wk.sum())
        if total == 0:
            return cls(None, None, None, None)
        b = a + d * (k - 1)
        by_a, by_b = np.argsort(a, kind="stable"), np.argsort(b, kind="stable")
        a_sorted, cum_a = a[by_a], np.cumsum(wk[by_a])
        b_sorted, cum_b = b[by_b], np.cumsum(wk[by_b])

        def order_statistic(rank: int) -> int:       # the (rank+1)-th smallest repeated value
            lo = int(a_sorted[np.searchsorted(cum_a, rank, side="right")])   # count(lo - 1) <= rank
            hi = int(b_sorted[np.searchsorted(cum_b, rank, side="right")])   # count(hi) > rank
            below = int(cum_b[np.searchsorted(b_sorted, lo, side="left") - 1]) if b_sorted[0] < lo else 0
            near = (a <= hi) & (b >= lo)
            na, nd, nk, nw = a[near], d[near], k[near], w[near]
            flat = nd == 0
            nd1 = np.where(flat, 1, nd)
            lo -= 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                inside = np.where(flat, (na <= mid) * nk, np.clip((mid - na) // nd1 + 1, 0, nk))
                if below + int((nw * inside).sum()) > rank:
                    hi = mid
                else:
                    lo = mid
            return hi

        out = []
        for q in (0.50, 0.90, 0.99):
            pos = q * (total - 1)
            lo = int(np.floor(pos))
            x = order_statistic(lo)
            y = order_statistic(lo + 1) if pos > lo else x
            out.append((x + (y - x) * (pos - lo)) * unit)
        sums = wk.astype(np.float64) * a + w.astype(np.float64) * d * (k * (k - 1) / 2)
        mean = float(sums.sum()) / total * unit
        return cls(rounded(out[0]), rounded(out[1]), rounded(out[2]), rounded(mean))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ReplicaLayoutInfo:
    """How one replica of the (last) service runs the model."""

    tp: int
    """tensor-parallel GPUs"""
    pp: int
    """pipeline stages"""
    batching: str
    """none, static, dynamic or continuous"""
    max_num_seqs: int
    """sequences batched at once (the batch size for non-continuous batching)"""
    max_batched_tokens: int
    """tokens one iteration may process"""
    kv_cache_precision: str | None
    """the KV cache's number format; None for a model that generates nothing (no KV cache)"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ReplicaMemory:
    """GiB per GPU of one replica; a model without KV cache (an encoder) has only the first two."""

    capacity_gib: float
    weights_gib: float
    workspace_gib: float | None = None
    """activations of the largest batch"""
    runtime_gib: float | None = None
    """CUDA context, allocator and graph pools"""
    kv_cache_gib: float | None = None
    """what is left for the KV cache"""

    @classmethod
    def build(cls, gib: dict[str, float]) -> ReplicaMemory:
        return cls(**{k: rounded(v, 5) for k, v in gib.items()})

    def to_dict(self) -> dict[str, Any]:
        return _set_fields(self)


@dataclass(frozen=True, slots=True)
class ReplicaCount:
    """Replicas over the run: the time mean of those paid for, and the most requested at once."""

    mean: float
    max: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SLOBounds:
    """The latency bounds the scenario sets, each at its percentile (None: no bound)."""

    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None
    e2e_p99_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p90_s: float | None = None
    tpot_p50_s: float | None = None
    tpot_p90_s: float | None = None
    itl_p50_s: float | None = None
    itl_p90_s: float | None = None
    itl_p99_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p90_s: float | None = None

    def to_dict(self) -> dict[str, float]:
        """Only the bounds that are set."""
        return _set_fields(self)


@dataclass(frozen=True, slots=True)
class ClassSummary:
    """Outcomes of one request class (reported when the workload has more than one)."""

    completed: int
    rejected: int
    ttft_s: Percentiles
    e2e_s: Percentiles

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One service on a multi-service request path."""

    model: str
    hardware: str
    replicas: ReplicaCount
    replica_hours: float
    cost_usd: float
    gpu_utilization: float
    """busy GPU-seconds over ready replica-seconds of this service"""
    reached: int
    """requests that got to this service"""
    served: int
    """requests its replicas processed (cache hits excluded)"""
    cache_hits: int
    """requests answered from its cache"""
    not_completed: int
    """requests that reached it and did not complete (rejected, failed, in flight)"""
    latency_p50_s: float | None
    """arrival at this service to done, completed requests"""
    latency_p99_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PrefixCacheSummary:
    """The hashed prefix cache over every replica of the (last) service: what admissions looked up and
    found, and the offload tiers (:mod:`simulator.serving.engines.prefix_cache`, ``.offload``)."""

    hit_rate: float
    """prompt tokens found cached (GPU or a tier) over prompt tokens looked up, every admission (vLLM's
    prefix_cache_hits / prefix_cache_queries); a preempted request looks its prompt up again"""
    gpu_hit_rate: float
    """found on the GPU over looked up"""
    queried_tokens: int
    hit_tokens: int
    """prompt tokens not computed: prefill saved"""
    evicted_blocks: int
    """GPU blocks evicted (LRU) to make room, to a tier when there is one"""
    tiers: dict[str, dict[str, float]]
    """per offload tier: capacity_blocks, stored_blocks (written), loaded_blocks (read back), hit_tokens,
    used_blocks (at the end), load_s (transfer time charged)"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
