"""The hashed prefix cache's numbers in a serving result: the summary over replicas and the
per-replica time series columns (prompt tokens looked up and found per time bin, tier blocks used)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .summary import PrefixCacheSummary, rounded

COLUMNS = ("prefix_queried_tokens", "prefix_hit_tokens", "prefix_tier_hit_tokens", "cpu_tier_blocks",
           "nvme_tier_blocks")


def _sched(rep: Any) -> Any:
    s = getattr(rep, "sched", None)
    return s if getattr(s, "pc", None) is not None else None


def replica_columns(rep: Any, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Per time bin of ``edges``: prompt tokens looked up, found (GPU or tier) and found in a tier by the
    admissions in the bin, and each tier's blocks in use at the bin's end (zeros without a prefix cache)."""
    bins = len(edges) - 1
    s = _sched(rep)
    if s is None or not len(s.log_t):
        return {c: np.zeros(bins) for c in COLUMNS}
    t = np.frombuffer(s.log_t)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    q = np.bincount(which, weights=np.frombuffer(s.log_q), minlength=bins)
    hit = np.bincount(which, weights=np.frombuffer(s.log_gpu) + np.frombuffer(s.log_tier), minlength=bins)
    tier = np.bincount(which, weights=np.frombuffer(s.log_tier), minlength=bins)
    out: dict[str, np.ndarray] = {"prefix_queried_tokens": q, "prefix_hit_tokens": hit, "prefix_tier_hit_tokens": tier}
    last = np.searchsorted(t, edges[1:], side="right") - 1     # the admission at or before each bin's end
    for k, name in enumerate(("cpu", "nvme")):
        used: np.ndarray = np.zeros(bins)
        if k < len(s.log_used):
            u = np.frombuffer(s.log_used[k])
            used = np.where(last >= 0, u[np.maximum(last, 0)], 0.0)
        out[f"{name}_tier_blocks"] = used
    return out


def summarize(replicas: list[Any]) -> PrefixCacheSummary | None:
    """The prefix cache over ``replicas`` (None when none of them has the hashed cache)."""
    scheds = [s for s in (_sched(rep) for rep in replicas) if s is not None]
    if not scheds:
        return None
    queried = sum(s.pc.queried for s in scheds)
    gpu = sum(s.pc.hit_gpu for s in scheds)
    tiers: dict[str, dict[str, float]] = {}
    tier_hits = 0
    for s in scheds:
        for k, tier in enumerate(s.pc.tiers):
            d = tiers.setdefault(tier.name, {"capacity_blocks": 0, "stored_blocks": 0, "loaded_blocks": 0,
                                             "hit_tokens": 0, "used_blocks": 0, "load_s": 0.0})
            d["capacity_blocks"] += tier.capacity
            d["stored_blocks"] += tier.stored
            d["loaded_blocks"] += tier.loaded
            d["hit_tokens"] += s.pc.hit_tier[k]
            d["used_blocks"] += len(tier.blocks)
            d["load_s"] = rounded(d["load_s"] + s.pc.tier_load_s[k])
            tier_hits += s.pc.hit_tier[k]
    hit = gpu + tier_hits
    return PrefixCacheSummary(
        hit_rate=rounded(hit / queried, 4) if queried else 0.0,
        gpu_hit_rate=rounded(gpu / queried, 4) if queried else 0.0,
        queried_tokens=int(queried), hit_tokens=int(hit), evicted_blocks=sum(s.pc.evicted for s in scheds),
        tiers=tiers)


def prefix_cache_text(p: PrefixCacheSummary) -> str:
    """One line for ``capsim serve``: the hit rate, what it saved, and each tier's use."""
    text = (f"{100 * p.hit_rate:.1f}% of prompt tokens found ({100 * p.gpu_hit_rate:.1f}% on the GPU), "
            f"{p.hit_tokens:,} of {p.queried_tokens:,} not recomputed; {p.evicted_blocks:,} blocks evicted")
    for name, d in p.tiers.items():
        text += (f"; {name} tier {int(d['used_blocks']):,}/{int(d['capacity_blocks']):,} blocks, "
                 f"{int(d['hit_tokens']):,} tokens loaded in {d['load_s']:.3g} s")
    return text


def first_hits(replicas: list[Any], n: int) -> np.ndarray | None:
    """Per request, the prompt tokens its first admission found cached (None without a prefix cache; a
    request retried after its replica was lost keeps its last replica's count)."""
    scheds = [s for s in (_sched(rep) for rep in replicas) if s is not None]
    if not scheds:
        return None
    out = np.zeros(n, dtype=np.int64)
    for s in scheds:
        if s.first_hit:
            idx = np.fromiter(s.first_hit.keys(), dtype=np.int64, count=len(s.first_hit))
            out[idx] = np.fromiter(s.first_hit.values(), dtype=np.int64, count=len(s.first_hit))
    return out
