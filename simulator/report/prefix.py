"""The serving report's prefix-cache section: the hit rate over time (overall and on the GPU) and
the offload tiers' blocks in use, from the result's per-replica time series."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from .page import Card, Section


def prefix_card(r: Any) -> list[Card]:
    p = r.prefix_cache
    if p is None:
        return []
    saved = f"{p.hit_tokens:,} of {p.queried_tokens:,} prompt tokens not recomputed"
    return [Card("prefix-cache hit rate", f"{100 * p.hit_rate:.1f}%", f"{100 * p.gpu_hit_rate:.1f}% on the GPU; {saved}")]


def prefix_section(r: Any, fig: Any) -> list[Section]:
    """The hit rate per time bin of the answering service's replicas, and the tiers (empty without a prefix cache)."""
    p = r.prefix_cache
    if p is None:
        return []
    ts = r.timeseries_frame()
    if "service" in ts:
        ts = ts[ts.service == ts.service.iloc[-1]]
    agg = ts.groupby("t_s", sort=True)[["prefix_queried_tokens", "prefix_hit_tokens", "prefix_tier_hit_tokens",
                                         "cpu_tier_blocks", "nvme_tier_blocks"]].sum()
    q = agg.prefix_queried_tokens.to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = np.where(q > 0, agg.prefix_hit_tokens.to_numpy() / q, np.nan)
        gpu = np.where(q > 0, (agg.prefix_hit_tokens - agg.prefix_tier_hit_tokens).to_numpy() / q, np.nan)
    t = agg.index.to_numpy()
    f_hit: go.Figure = fig("Prefix-cache hit rate over time",
                           xaxis_title="time (s)", yaxis_title="fraction", yaxis_range=[0, 1.05])
    f_hit.add_scatter(x=t, y=hit, name="found (GPU + tiers)", mode="lines+markers")
    if p.tiers:
        f_hit.add_scatter(x=t, y=gpu, name="found on the GPU", mode="lines")
    charts = [("chart-prefix-hit", f_hit)]
    note = (f"Prompt tokens found cached over those looked up by the admissions in each window. Overall "
            f"{100 * p.hit_rate:.1f}% ({100 * p.gpu_hit_rate:.1f}% on the GPU); {p.evicted_blocks:,} GPU blocks "
            "evicted, least recently used first.")
    if p.tiers:
        f_tier: go.Figure = fig("KV offload tiers: blocks held (all replicas)", xaxis_title="time (s)",
                                yaxis_title="blocks")
        for name, d in p.tiers.items():
            f_tier.add_scatter(x=t, y=agg[f"{name}_tier_blocks"].to_numpy(), name=f"{name} tier", mode="lines",
                               line_shape="hv")
            f_tier.add_scatter(x=[t[0], t[-1]], y=[d["capacity_blocks"]] * 2, name=f"{name} capacity", mode="lines",
                               line={"dash": "dot"})
            note += (f" {name}: {int(d['stored_blocks']):,} blocks written, {int(d['loaded_blocks']):,} loaded back "
                     f"({int(d['hit_tokens']):,} tokens not recomputed) in {d['load_s']:.3g} s of transfers.")
        charts.append(("chart-prefix-tiers", f_tier))
    return [Section("Prefix cache", charts, note)]
