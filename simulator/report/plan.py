"""The HTML report of a training plan: the goal's answers, the time-vs-cost plot with the frontier
and the plans missing the deadline or budget marked, and the ranked table with readable columns."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import yaml

from .page import Card, Section, render, table_html

if TYPE_CHECKING:
    from ..plan.budget import Budget
    from ..plan.training import PlanRow, TrainingPlan

TABLE_COLUMNS = ["#", "GPU", "GPUs", "layout", "days", "compute days", "GPU-hours", "$", "MFU", "GiB/GPU", "goal",
                 "Pareto"]
CLIP_X = 4.0
"""the axes show up to 4× the frontier's slowest and most costly plan (or the goal): slower or costlier
outliers are drawn at the edge (an open marker) rather than squashing the frontier"""


def _row(k: int, r: PlanRow) -> list[object]:
    return [k, r.hardware, r.gpus, r.layout.label(), round(r.time_to_train_days, 2),
            round(r.compute_days_without_failures, 2), round(r.gpu_hours), round(r.cost_usd), f"{r.mfu:.1%}",
            round(r.memory_gib, 1), "meets" if r.meets else "misses", "yes" if r.pareto else ""]


def _hover(r: PlanRow) -> str:
    return (f"{r.hardware} × {r.gpus}<br>{r.layout.label()}<br>{r.time_to_train_days:,.2f} days, "
            f"${r.cost_usd:,.0f}, MFU {r.mfu:.1%}")


def training_plan_html(plan: TrainingPlan) -> str:
    rows = plan.rows
    best = plan.best
    par = plan.pareto
    ref_t = [r.time_to_train_days for r in par] + ([plan.deadline_days] if plan.deadline_days else [])
    ref_c = [r.cost_usd for r in par] + ([plan.budget_usd] if plan.budget_usd else [])
    t_max = CLIP_X * max(ref_t) if ref_t else np.inf
    c_max = CLIP_X * max(ref_c) if ref_c else np.inf
    f = go.Figure(layout={"title": {"text": "time to train vs cost (log axes)", "font": {"size": 14}},
                          "xaxis": {"title": "days (failures and checkpoints included)", "type": "log"},
                          "yaxis": {"title": "cost, US$", "type": "log"}})
    for meets, name, color in ((True, "meets the goal", "#54a24b"), (False, "misses the deadline or budget", "#e45756")):
        sel = [r for r in rows if r.meets == meets]
        inside = [r for r in sel if r.time_to_train_days <= t_max and r.cost_usd <= c_max]
        clipped = [r for r in sel if r not in inside]
        if inside:
            f.add_scatter(x=[r.time_to_train_days for r in inside], y=[r.cost_usd for r in inside], mode="markers",
                          name=name, marker={"color": color, "size": 7, "symbol": "circle" if meets else "x"},
                          hovertext=[_hover(r) for r in inside], hoverinfo="text")
        if clipped:
            f.add_scatter(x=[min(r.time_to_train_days, t_max) for r in clipped],
                          y=[min(r.cost_usd, c_max) for r in clipped], mode="markers",
                          name=f"{name}, beyond the axes (drawn at the edge)",
                          marker={"color": color, "size": 8, "symbol": "circle-open"},
                          hovertext=[_hover(r) for r in clipped], hoverinfo="text")
    if par:
        f.add_scatter(x=[r.time_to_train_days for r in par], y=[r.cost_usd for r in par], mode="lines+markers",
                      name="Pareto frontier", line={"color": "#4c78a8"}, hovertext=[_hover(r) for r in par],
                      hoverinfo="text")
    if best is not None:
        f.add_scatter(x=[best.time_to_train_days], y=[best.cost_usd], mode="markers", name="best",
                      marker={"size": 16, "color": "#f2b701", "symbol": "star"}, hovertext=[_hover(best)],
                      hoverinfo="text")
    if rows:     # explicit log ranges (plotly takes log10 values): the clipped points at the edge
        ts = [min(r.time_to_train_days, t_max) for r in rows] + ([plan.deadline_days] if plan.deadline_days else [])
        cs = [min(r.cost_usd, c_max) for r in rows] + ([plan.budget_usd] if plan.budget_usd else [])
        xr = [float(np.log10(min(ts) / 1.15)), float(np.log10(max(ts) * 1.15))]
        yr = [float(np.log10(min(cs) / 1.15)), float(np.log10(max(cs) * 1.15))]
        f.update_layout(xaxis_range=xr, yaxis_range=yr)
        if plan.deadline_days:   # goal lines as traces: a shape on a log axis would need log10 positions
            f.add_scatter(x=[plan.deadline_days] * 2, y=[10 ** yr[0], 10 ** yr[1]], mode="lines",
                          name=f"deadline {plan.deadline_days:g} days", line={"dash": "dash", "color": "#e45756"})
        if plan.budget_usd:
            f.add_scatter(x=[10 ** xr[0], 10 ** xr[1]], y=[plan.budget_usd] * 2, mode="lines",
                          name=f"budget ${plan.budget_usd:,.0f}", line={"dash": "dot", "color": "#e45756"})
    c = plan.counts
    cards = [Card("candidates", f"{c.enumerated:,}", f"{c.simulated:,} simulated, {c.pruned_by_bound:,} pruned by "
                                                     f"the bound, {c.out_of_memory:,} out of memory")]
    if best is not None:
        cards += [Card("best", f"{best.hardware} × {best.gpus:,}", best.layout.label(), "good"),
                  Card("time to train", f"{best.time_to_train_days:,.1f} days",
                       f"{best.compute_days_without_failures:,.1f} days of steps alone"),
                  Card("cost", f"${best.cost_usd:,.0f}", f"{best.gpu_hours:,.0f} GPU-hours, MFU {best.mfu:.1%}")]
    else:
        cards.append(Card("best", "none meets the goal", "see the closest plans below", "bad"))
    goal = ", ".join(g for g in (f"{plan.deadline_days:g} days" if plan.deadline_days else "",
                                 f"${plan.budget_usd:,.0f}" if plan.budget_usd else "") if g)
    table = table_html(TABLE_COLUMNS, [_row(k, r) for k, r in enumerate(rows, 1)],
                       highlight=rows.index(best) if best is not None else None)
    spec = {"model": plan.model, "tokens": plan.total_tokens, "days": plan.deadline_days, "budget_usd": plan.budget_usd,
            "market": plan.market, "provider": plan.provider}
    best_yaml = yaml.safe_dump(best.scenario, sort_keys=False) if best is not None else yaml.safe_dump(spec)
    return render(title=f"capsim plan train — {plan.model}",
                  subtitle=f"{plan.params_b:,.1f}B parameters on {plan.total_tokens:.3g} tokens"
                           + (f", goal {goal}" if goal else ""),
                  cards=cards, sections=[Section("Time vs cost", [("chart-plan", f)],
                                                 note="Each point is a simulated plan; green meets the goal, red "
                                                      "misses it. Axes are logarithmic and clipped at "
                                                      f"{CLIP_X:g}× the frontier.")],
                  extra_html=f"<h2>Ranked plans</h2>{table}", scenario_yaml=best_yaml)


def budget_html(b: Budget) -> str:
    """GPU-hours per month stacked by part, and $ per month per market."""
    months = [m.month for m in b.months]
    parts = list(dict.fromkeys(p for m in b.months for p in m.gpu_hours["on_demand"]))
    f = go.Figure(layout={"title": {"text": "GPU-hours per month (on-demand runs)", "font": {"size": 14}},
                          "barmode": "stack", "xaxis": {"title": "month", "dtick": 1}, "yaxis": {"title": "GPU-hours"}})
    for p in parts:
        f.add_bar(x=months, y=[m.gpu_hours["on_demand"].get(p, 0.0) for m in b.months], name=p)
    g = go.Figure(layout={"title": {"text": "cost per month", "font": {"size": 14}},
                          "xaxis": {"title": "month", "dtick": 1}, "yaxis": {"title": "US$ (log)", "type": "log"}})
    for mk in ("on_demand", "spot", "reserved"):
        if any(mk in m.cost_usd for m in b.months):
            g.add_scatter(x=months, y=[m.cost_usd.get(mk) for m in b.months], mode="lines+markers",
                          name=mk.replace("_", "-"))
    cards = [Card(f"total {mk.replace('_', '-')}", f"${b.total(mk):,.0f}")
             for mk in ("on_demand", "spot", "reserved") if any(mk in m.cost_usd for m in b.months)]
    cols = ["month", *(f"{p} GPU-h" for p in parts), "replicas", "$ on-demand", "$ spot"]
    rows = [[m.month, *(round(m.gpu_hours["on_demand"].get(p, 0.0)) for p in parts), m.serving_replicas,
             round(m.cost_usd["on_demand"]), round(m.cost_usd["spot"])] for m in b.months]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in b.notes)
    return render(title=f"capsim plan budget — {b.name}", subtitle=f"{len(b.months)} months", cards=cards,
                  sections=[Section("Month by month", [("chart-gpu-hours", f), ("chart-cost", g)])],
                  extra_html=f"<h2>Table</h2>{table_html(cols, rows)}<ul>{notes}</ul>",
                  scenario_yaml=yaml.safe_dump(b.to_dict()["total_cost_usd"]))
