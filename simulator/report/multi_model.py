"""The report of several models on one GPU pool: per deployment its SLO attainment, latencies and
GPU-hours; the pool's GPUs held per deployment over time (the policy's moves) against its size,
each deployment's arrival rate, and its end-to-end p99 over time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

from ..serving.multi_result import MultiModelResult
from .page import Card, Section, render, table_html


def _ms(p: Any, q: str) -> float | None:
    v = getattr(p, q, None) if p is not None else None
    return None if v is None else round(v * 1e3, 1)


def multi_model_html(r: MultiModelResult, fig: Callable[..., go.Figure]) -> str:
    p = r.pool
    cards = [Card("pool", f"{p.gpus} × {p.hardware}", f"policy {r.policy}; {p.moves} replicas moved"),
             Card("pool cost", f"${p.cost_usd:,.2f}", f"${p.usd_per_hour:,.2f}/h; {p.gpu_hours:,.2f} GPU-h paid"),
             Card("GPUs held / busy", f"{100 * p.allocation:.0f}% / {100 * p.utilization:.0f}%",
                  f"{p.idle_gpu_hours:,.2f} GPU-h idle; at most {p.peak_gpus_held} GPUs held")]
    for name, d in r.deployments.items():
        att = d.slo_attainment
        cards.append(Card(f"{name} SLO", "no SLO" if att is None else f"{100 * att:.2f}%",
                          f"{d.model}: {d.completed:,} of {d.arrived:,} done, {d.rejected:,} rejected",
                          "" if att is None else ("good" if d.slo_met else "bad")))
    alloc = r.allocation_frame()
    end = r.simulated_s
    f_alloc = fig("GPUs held per deployment (starting, serving or draining)", barmode="stack",
                  xaxis_title="time (s)", yaxis_title="GPUs", yaxis_range=[0, 1.1 * p.gpus])
    for name in r.deployments:
        f_alloc.add_scatter(x=[*alloc.t_s, end], y=[*alloc[name], alloc[name].iloc[-1]], name=name, mode="lines",
                            line_shape="hv", stackgroup="gpus")
    f_alloc.add_scatter(x=[0, end], y=[p.gpus, p.gpus], name="pool size", mode="lines",
                        line={"dash": "dash", "color": "#c0392b"})
    f_rate = fig("Arrivals per deployment", xaxis_title="time (s)", yaxis_title="requests/s")
    f_lat = fig("End-to-end p99 of requests finishing in each window", xaxis_title="time (s)", yaxis_title="seconds")
    for name, x in r.results.items():
        sf = x.scaling_frame()
        f_rate.add_scatter(x=sf.t_s, y=sf.arrival_rps, name=name, mode="lines")
        f_lat.add_scatter(x=sf.t_s, y=sf.e2e_p99_s, name=name, mode="lines")
    cols = ["deployment", "model", "arrived", "completed", "rejected", "in flight", "SLO %", "TTFT p50 ms",
            "TTFT p99 ms", "TPOT p99 ms", "GPUs/replica", "replicas (mean)", "replicas (max)", "moved in",
            "moved out", "GPU-h", "GPU busy %", "cost $"]
    rows = [[k, d.model, d.arrived, d.completed, d.rejected, d.in_flight,
             "-" if d.slo_attainment is None else round(100 * d.slo_attainment, 2), _ms(d.ttft_s, "p50"),
             _ms(d.ttft_s, "p99"),
             _ms(d.tpot_s, "p99"), d.gpus_per_replica, d.replicas.mean, d.replicas.max, d.replicas_given,
             d.replicas_taken, round(d.gpu_hours, 2), round(100 * d.gpu_utilization, 1), round(d.cost_usd, 2)]
            for k, d in r.deployments.items()]
    sections = [Section("The pool", [("chart-pool", f_alloc)],
                        f"The pool's {p.gpus} GPUs are paid for the whole {end:,.0f} s at ${p.usd_per_gpu_hour:,.2f}"
                        f"/GPU-h ({p.price_source}); a deployment's cost is the GPU-hours its replicas held."),
                Section("Load and latency", [("chart-arrivals", f_rate), ("chart-p99", f_lat)])]
    return render(title=f"capsim multi-model report — {r.name}",
                  subtitle=f"{len(r.deployments)} deployments on {p.gpus} × {p.hardware}, {end:,.0f} s simulated",
                  cards=cards, sections=sections, extra_html="<h2>Deployments</h2>" + table_html(cols, rows),
                  scenario_yaml=r.scenario_yaml(), warnings=list(r.warnings))
