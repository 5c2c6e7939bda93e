"""Self-contained HTML reports of training, serving, multi-model and sweep results (plotly embedded, offline)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import CapsimError
from ..files import write_atomic
from ..serving.multi_result import MultiModelResult
from ..serving.outcome import ServingResult
from ..serving.summary import Percentiles
from ..training.result import TrainingResult
from .page import Card, Section, render, table_html
from .prefix import prefix_card, prefix_section

PASS_COLORS = {"F": "#4c78a8", "B": "#f58518", "W": "#54a24b", "R": "#b279a2", "fwd": "#4c78a8", "bwd": "#f58518",
               "F&B": "#9d755d"}


def _slots(tl: pd.DataFrame) -> pd.DataFrame:
    """The timeline with passes a schedule overlapped (same stage, same start and end: dualpipe's
    forward-and-backward slots) drawn as one bar, ``F&B``, its micro-batches joined."""
    key = [tl.stage, tl.start_s, tl.end_s]
    size = tl.groupby(key).transform("size") if len(tl) else tl.stage
    single, joined = tl[size.to_numpy() == 1], tl[size.to_numpy() > 1]
    if not len(joined):
        return tl
    merged = (joined.groupby(["stage", "start_s", "end_s"], sort=False)
              .agg(microbatch=("microbatch", lambda m: "/".join(dict.fromkeys(map(str, m)))))
              .reset_index().assign(**{"pass": "F&B"}))
    return pd.concat([single.astype({"microbatch": str}), merged], ignore_index=True)



def _fig(title: str, **layout: Any) -> go.Figure:
    return go.Figure(layout={"title": {"text": title, "font": {"size": 14}}, **layout})


# ---- training ---------------------------------------------------------------------------------------
def training_html(r: TrainingResult) -> str:
    lay, mem, fits = r.layout, r.memory_per_gpu_gib, r.fits_in_memory
    cards = [
        Card("iteration", f"{r.iteration_time_s:.3f} s", f"{r.tokens_per_s:,.0f} tokens/s"),
        Card("MFU", f"{100 * r.mfu:.1f}%", f"HFU {100 * r.hfu:.1f}%, {r.tflops_per_gpu_model:.0f} TFLOP/s/GPU"),
        Card("memory / GPU", f"{mem.total:.1f} GiB", f"of {r.memory_capacity_gib:.0f} GiB"
             + ("" if fits else " — does not fit"), "good" if fits else "bad"),
        Card("GPUs", f"{r.gpus:,}", f"TP{lay.tp} PP{lay.pp} DP{lay.dp} CP{lay.cp}"),
    ]
    job = r.job
    if job is not None:
        cards += [Card("time to train", f"{job.time_to_train_days:.1f} days",
                       f"p10 {job.time_to_train_days_p10:.1f} · p90 {job.time_to_train_days_p90:.1f}"),
                  Card("cost", f"${job.cost_usd:,.0f}", f"{job.gpu_hours:,.0f} GPU-h at ${job.usd_per_gpu_hour:.2f}"),
                  Card("energy", f"{job.energy_kwh:,.0f} kWh", f"goodput {100 * job.goodput:.1f}%")]
    bd = {k.removesuffix("_s").replace("_", " "): v for k, v in r.time_breakdown_s.to_dict().items() if v > 0}
    f_bd = _fig("Step-time breakdown (s per iteration)", xaxis_title="seconds")
    f_bd.add_bar(x=list(bd.values()), y=list(bd), orientation="h", marker_color="#4c78a8")
    f_mem = _fig("Memory per GPU (GiB)", barmode="stack", yaxis_title="GiB")
    for k in ("params", "grads", "optimizer", "activations", "buffers"):
        f_mem.add_bar(name=k, x=["this layout"], y=[getattr(mem, k)])
    f_mem.add_hline(y=r.memory_capacity_gib, line_dash="dash", line_color="#c0392b",
                    annotation_text=f"capacity {r.memory_capacity_gib:.0f} GiB")
    figs = [("chart-breakdown", f_bd), ("chart-memory", f_mem)]
    tl = _slots(r.timeline_frame())
    if len(tl):
        f_tl = _fig("Pipeline schedule of one step (stage × micro-batch)", barmode="overlay",
                    xaxis_title="time in step (s)", yaxis_title="pipeline stage", yaxis_autorange="reversed")
        for p, g in tl.groupby("pass"):
            f_tl.add_bar(name=str(p), base=g.start_s, x=g.end_s - g.start_s, y=g.stage, orientation="h",
                         marker_color=PASS_COLORS.get(str(p)), text=g.microbatch.astype(str) if len(tl) <= 400 else None,
                         textposition="inside", insidetextanchor="middle",
                         hovertext=[f"stage {a} {p} micro-batch {b}" for a, b in zip(g.stage, g.microbatch, strict=True)])
        # a micro-batch number only where it fits inside its bar (many micro-batches: the hover says it)
        f_tl.update_layout(uniformtext_minsize=8, uniformtext_mode="hide")
        figs.append(("chart-pipeline", f_tl))
    sections = [Section("Where the time goes", figs)]
    if job is not None and r.time_to_train_samples_days:
        f_ttt = _fig("Time to train over Monte Carlo runs (failures, restarts, checkpoints)",
                     xaxis_title="days", yaxis_title="runs")
        f_ttt.add_histogram(x=np.asarray(r.time_to_train_samples_days), marker_color="#54a24b")
        f_cost = _fig("Cost of the run ($)", yaxis_title="USD")
        f_cost.add_bar(x=["training work", "failures, restarts, checkpoints"], y=list(job.cost_split_usd()),
                       marker_color=["#4c78a8", "#e45756"])
        sections.append(Section("The whole run", [("chart-ttt", f_ttt), ("chart-cost", f_cost)],
                                f"{job.failures_mean:.1f} failures on average; "
                                + (f"checkpoint every {job.checkpoint_interval_s / 60:.0f} min"
                                   if job.checkpoint_interval_s is not None else "no checkpoints")
                                + f" ({job.price_source})."))
    warn = [] if r.infeasible_reason is None else [r.infeasible_reason]
    return render(title=f"capsim training report — {r.name}",
                  subtitle=f"{r.model} on {r.gpus:,} × {r.hardware}", cards=cards, sections=sections,
                  scenario_yaml=r.scenario_yaml(), warnings=warn)


# ---- serving ----------------------------------------------------------------------------------------
def _cdf(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    v = np.sort(values.dropna().to_numpy())
    if len(v) > 2000:   # keep the file small: 2,000 quantiles draw the same curve
        q = np.linspace(0, 1, 2000)
        return np.quantile(v, q), q
    return v, np.arange(1, len(v) + 1) / max(len(v), 1)


def _pct(d: Percentiles | None, unit: float = 1e3, suffix: str = "ms") -> str:
    return "-" if d is None or d.p50 is None or d.p99 is None else f"{d.p50 * unit:,.1f} / {d.p99 * unit:,.1f} {suffix}"


def _serving_cards(r: ServingResult) -> list[Card]:
    att, cpm = r.slo_attainment, r.cost_per_million_tokens_usd
    return [
        Card("SLO attainment", "no SLO set" if att is None else f"{100 * att:.2f}%",
             ", ".join(f"{k.removesuffix('_p99_s')} p99 ≤ {v} s" for k, v in r.slo.to_dict().items()),
             "" if att is None else ("good" if r.slo_met else "bad")),
        *([Card("TTFT p50 / p99", _pct(r.ttft_s)), Card("TPOT p50 / p99", _pct(r.tpot_s)),
           Card("E2E p50 / p99", _pct(r.e2e_s, 1.0, "s") if (r.e2e_s.p99 or 0) >= 1 else _pct(r.e2e_s)),
           Card("throughput", f"{r.throughput_rps:,.2f} req/s", f"{r.output_tokens_per_s:,.0f} output tokens/s")]
          if r.generative else
          [Card(f"latency per {r.item} p50 / p99", _pct(r.e2e_s), "end to end, one forward per request"),
           Card("throughput", f"{r.items_per_s or 0:,.1f} {r.item}s/s",
                "" if r.items_per_joule is None else f"{r.items_per_joule:,.2f} {r.item}s/s per W")]),
        Card("cost", f"${r.usd_per_hour:,.2f}/h", f"{r.replica_hours:,.1f} replica-hours; ${r.cost_usd:,.2f} "
             f"this run ({r.autoscaling} scaling)"),
        Card("saturation / MBU", ("-" if r.saturation is None else f"{100 * r.saturation:.0f}%") + " / "
             + ("-" if r.mbu is None else f"{100 * r.mbu:.0f}%"),
             f"load ÷ capacity / decode bytes vs bandwidth; GPU busy (DCGM-style) {100 * r.gpu_utilization:.0f}%, "
             f"MFU {100 * r.mfu:.1f}%"),
        Card("$ / M output tokens", "-" if cpm is None else f"${cpm:,.3f}") if r.generative else
        Card(f"$ / M {r.item}s", "-" if r.cost_per_million_items_usd is None else f"${r.cost_per_million_items_usd:,.2f}"),
        Card("requests", f"{r.completed:,} done", f"{r.rejected:,} rejected, {r.failed:,} failed, "
             f"{r.in_flight:,} in flight", "bad" if r.rejected or r.failed else ""),
    ]


def serving_html(r: ServingResult) -> str:
    req, sf, fleet = r.requests_frame(), r.scaling_frame(), r.fleet_frame()
    f_cdf = _fig("Latency CDFs", xaxis_title="seconds (log)", xaxis_type="log", yaxis_title="fraction of requests")
    curves = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "end-to-end"), ("queue_s", "queueing")) \
        if r.generative else (("e2e_s", "latency (end to end)"), ("queue_s", "queueing"))
    for col, name in curves:
        x, y = _cdf(req.loc[req.status == "completed", col].clip(lower=1e-6))
        if len(x):
            f_cdf.add_scatter(x=x, y=y, name=name, mode="lines")
    most = max(r.replicas.max, 1)
    f_rate = _fig("Arrivals and replicas", xaxis_title="time (s)", yaxis_title="requests/s",
                  yaxis2={"title": "replicas", "overlaying": "y", "side": "right", "range": [0, 1.25 * most],
                          **({"dtick": 1} if r.replicas.max <= 12 else {})})
    f_rate.add_scatter(x=sf.t_s, y=sf.arrival_rps, name="arrival rate", mode="lines")
    f_rate.add_scatter(x=sf.t_s, y=sf.replicas_requested, name="replicas requested", mode="lines", yaxis="y2",
                       line_shape="hv")
    f_rate.add_scatter(x=sf.t_s, y=sf.replicas_ready, name="replicas ready", mode="lines", yaxis="y2", line_shape="hv")
    f_q = _fig("Queue and batch", xaxis_title="time (s)", yaxis_title="requests (cluster total)")
    f_q.add_scatter(x=fleet.t_s, y=fleet.queue, name="queued", mode="lines")
    f_q.add_scatter(x=fleet.t_s, y=fleet.running, name="running (in batches)", mode="lines")
    scale = 1.0 if r.generative else 1e3         # one forward per request: milliseconds
    f_lat = _fig("End-to-end latency of requests finishing in each window", xaxis_title="time (s)",
                 yaxis_title="seconds" if r.generative else "ms")
    f_lat.add_scatter(x=sf.t_s, y=sf.e2e_p50_s * scale, name="p50", mode="lines")
    f_lat.add_scatter(x=sf.t_s, y=sf.e2e_p99_s * scale, name="p99", mode="lines")
    f_u = _fig("Utilization (mean over ready replicas)", xaxis_title="time (s)", yaxis_title="fraction", yaxis_range=[0, 1.05])
    f_u.add_scatter(x=fleet.t_s, y=fleet.gpu_busy, name="GPU busy (DCGM-style)", mode="lines")
    if r.generative:
        f_u.add_scatter(x=fleet.t_s, y=fleet.kv_cache_utilization, name="KV cache used", mode="lines")
    f_cost = _fig("Cost accrued ($)", xaxis_title="time (s)", yaxis_title="USD")
    f_cost.add_scatter(x=sf.t_s + (r.time_bin_s if len(sf) > 1 else 0), y=sf.cost_usd_accrued,
                       name="cost", mode="lines", fill="tozeroy")
    per = r.replica_frame()
    labels = [f"{s}/{i}" for s, i in zip(per.service, per.replica, strict=True)] if r.services else per.replica.astype(str)
    f_rep = _fig("Per-replica GPU utilization (over its time up)", xaxis_title="replica", yaxis_title="busy fraction",
                 yaxis_range=[0, 1.05])
    f_rep.add_bar(x=list(labels), y=per.gpu_utilization.to_numpy(), marker_color="#4c78a8")
    sections = [Section("Latency", [("chart-cdf", f_cdf), ("chart-rate", f_rate)]),
                Section("Over time", [("chart-queue", f_q), ("chart-latency", f_lat), ("chart-util", f_u),
                                      ("chart-cost", f_cost), ("chart-replicas", f_rep)],
                        f"Time bins of {r.time_bin_s:,.3g} s; {r.preemptions:,} preemptions; {r.price_source}."),
                *prefix_section(r, _fig)]
    lay = r.replica_layout
    extra = ""
    if r.services:
        cols = ["service", "model", "hardware", "replicas (mean)", "replicas (max)", "reached", "from cache",
                "p50 s", "p99 s", "GPU busy", "cost $"]
        rows = [[k, v.model, v.hardware, v.replicas.mean, v.replicas.max, v.reached, v.cache_hits,
                 v.latency_p50_s, v.latency_p99_s, v.gpu_utilization, v.cost_usd] for k, v in r.services.items()]
        extra = "<h2>Services on the request path</h2>" + table_html(cols, rows)
    extra += _engine_html(r)
    where = (" → ".join(f"{k}: {v.model} on {v.replicas.max} × {v.hardware}" for k, v in r.services.items())
             if r.services else f"{r.model} on {r.replicas.max} × {r.hardware} replicas (TP{lay.tp} "
                                f"PP{lay.pp}, {lay.batching} batching)")
    return render(title=f"capsim serving report — {r.name}", extra_html=extra,
                  subtitle=f"{where}, {r.simulated_s:,.0f} s simulated",
                  cards=[*_serving_cards(r), *prefix_card(r)], sections=sections, scenario_yaml=r.scenario_yaml(),
                  warnings=list(r.warnings))


def _engine_html(r: ServingResult) -> str:
    """The engine settings the replicas ran with, each with where its value came from (the preset's cited
    source, or the scenario), and the kernel tables that timed them."""
    es = r.engine_settings
    if not es:
        return ""
    from ..serving.engines.presets import engine_line

    sources = es.get("sources", {})
    rows = [[k, str(es.get(k, "")), src] for k, src in sources.items()]
    return (f"<h2>Engine</h2><p class=\"note\">{html.escape(engine_line(es))}; kernel tables: "
            f"{html.escape(r.kernel_tables)}</p>" + table_html(["setting", "value", "source"], rows))


# ---- sweeps -----------------------------------------------------------------------------------------
def sweep_html(frame: pd.DataFrame, *, x: str, y: str, title: str, scenario_yaml: str, best: int | None) -> str:
    """Cost-vs-latency (or time) scatter with the Pareto frontier and the chosen row highlighted, and a table."""
    ok: pd.DataFrame = frame[frame["feasible"] == True] if "feasible" in frame else frame  # noqa: E712
    f = _fig(f"{y} vs {x}", xaxis_title=x, yaxis_title=y)
    f.add_scatter(x=ok[x], y=ok[y], mode="markers", name="configurations", marker={"color": "#9aa5b1"},
                  hovertext=ok.get("config", ok.index.astype(str)))
    if "pareto" in ok:
        p = ok[ok["pareto"].astype(bool)].sort_values(by=x)
        f.add_scatter(x=p[x], y=p[y], mode="lines+markers", name="Pareto frontier", line={"color": "#4c78a8"})
    if best is not None and best in frame.index:
        f.add_scatter(x=[frame.loc[best, x]], y=[frame.loc[best, y]], mode="markers", name="chosen",
                      marker={"size": 16, "color": "#e45756", "symbol": "star"})
    cols = list(frame.columns)
    rows = frame.astype(object).where(frame.notna(), "").values.tolist()
    hi = list(frame.index).index(best) if best is not None and best in frame.index else None
    n_ok = len(ok)
    cards = [Card("configurations", f"{len(frame):,}", f"{n_ok:,} feasible")]
    if best is not None and best in frame.index:
        best_y = float(pd.to_numeric(frame[y], errors="coerce").loc[best])
        cards.append(Card("chosen", str(frame.loc[best].get("config", best)), f"{y} = {best_y:,.4g}", "good"))
    return render(title=title, subtitle=f"{len(frame):,} configurations", cards=cards,
                  sections=[Section("Trade-off", [("chart-pareto", f)])],
                  extra_html=f"<h2>All configurations</h2>{table_html(cols, rows, highlight=hi)}",
                  scenario_yaml=scenario_yaml)


def write_html(result: Any, path: str | Path) -> Path:
    """Write the report of a training, serving or multi_model result to ``path``."""
    if isinstance(result, TrainingResult):
        text = training_html(result)
    elif isinstance(result, ServingResult):
        text = serving_html(result)
    elif isinstance(result, MultiModelResult):
        from .multi_model import multi_model_html

        text = multi_model_html(result, _fig)
    else:
        raise CapsimError(f"no HTML report for {type(result).__name__}")
    path = Path(path)
    write_atomic(path, text, "HTML report")     # a temporary file, then a rename: never a truncated report
    return path


__all__ = ["serving_html", "sweep_html", "training_html", "write_html"]
