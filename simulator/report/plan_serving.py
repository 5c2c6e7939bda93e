"""HTML report of a serving plan (``capsim plan serve --html``): the ranked candidates, $/month against
per-replica capacity with the Pareto frontier and the SLO-missing candidates marked, the latency
floors against the SLO's lines, and the autoscaling day of the best three."""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go
import yaml

from ..plan.serving import HOURS_PER_MONTH, ServingCandidate, ServingPlan
from .page import Card, Section, render, table_html

COLUMNS = ["rank", "GPU", "TP", "engine", "meets SLO", "req/s per replica", "limited by", "replicas at peak",
           "at 2× peak", "at 3× peak", "$/hour", "$/month", "$/M tokens", "price from"]


def _fig(title: str, **layout: Any) -> go.Figure:
    return go.Figure(layout={"title": {"text": title, "font": {"size": 14}}, **layout})


def _label(c: ServingCandidate) -> str:
    return f"{c.hardware} TP{c.tp} {c.engine}"


def _pareto(ok: list[ServingCandidate]) -> list[ServingCandidate]:
    """Cheapest for its capacity: no other candidate costs less and carries more per replica."""
    front, best_rate = [], -1.0
    for c in sorted(ok, key=lambda c: (c.usd_per_month or 0.0, -c.max_rate_per_replica_rps)):
        if c.max_rate_per_replica_rps > best_rate:
            front.append(c)
            best_rate = c.max_rate_per_replica_rps
    return front


def plan_serving_html(plan: ServingPlan) -> str:
    """The report of ``plan`` as one self-contained page."""
    ok = [c for c in plan.candidates if c.meets_slo and c.usd_per_month is not None]
    miss = [c for c in plan.candidates if c not in ok]
    b = plan.best
    slo_text = ", ".join(f"{k} ≤ {v:g} s" for k, v in plan.slo.items())
    cards = [Card("candidates", f"{len(plan.candidates)}", f"{len(ok)} meet the SLO")]
    if b is not None:
        cards += [Card("best", f"{b.replicas} × {b.hardware} TP{b.tp}", f"{b.engine}; {b.max_rate_per_replica_rps:.2f} "
                       "req/s per replica", "good"),
                  Card("cost", f"${b.usd_per_month:,.0f}/month", f"${b.usd_per_hour:,.2f}/hour; "
                       f"${b.cost_per_million_tokens_usd or 0:,.3f} per M {'tokens' if plan.generative else 'items'}"),
                  Card("load tests", f"{b.replicas_at_2x} / {b.replicas_at_3x}", "replicas at 2× / 3× the peak")]
    else:
        cards.append(Card("best", "none meets the SLO", "see the closest misses", "bad"))
    f_p = _fig("$/month at peak vs capacity per replica (log axes)", xaxis_title="$/month (static, peak replicas)",
               yaxis_title="req/s per replica under the SLO", xaxis_type="log", yaxis_type="log")
    if ok:
        f_p.add_scatter(x=[c.usd_per_month for c in ok], y=[c.max_rate_per_replica_rps for c in ok], mode="markers",
                        name="meets the SLO", marker={"color": "#4c78a8", "size": 9},
                        hovertext=[_label(c) for c in ok])
        front = _pareto(ok)
        f_p.add_scatter(x=[c.usd_per_month for c in front], y=[c.max_rate_per_replica_rps for c in front],
                        mode="lines", name="Pareto frontier", line={"color": "#4c78a8"})
    priced_miss = [c for c in miss if c.usd_per_gpu_hour is not None and c.limit not in ("memory", "error")]
    bottom = min((c.max_rate_per_replica_rps for c in ok), default=1.0) / 2
    if priced_miss:   # at one replica's month, at the cost model's estimate (or the axis bottom when it is 0)
        f_p.add_scatter(x=[(c.usd_per_gpu_hour or 0) * c.gpus_per_replica * HOURS_PER_MONTH for c in priced_miss],
                        y=[c.analytic_rate_rps or bottom for c in priced_miss], mode="markers",
                        name="misses the SLO (one replica's $/month)",
                        marker={"color": "#e45756", "symbol": "x", "size": 10},
                        hovertext=[f"{_label(c)}: {c.limit} ({c.limit_detail})" for c in priced_miss])
    if b is not None:
        f_p.add_scatter(x=[b.usd_per_month], y=[b.max_rate_per_replica_rps], mode="markers", name="best",
                        marker={"size": 16, "color": "#f58518", "symbol": "star"})
    figs = [("chart-pareto", f_p)]
    fitted = [c for c in plan.candidates if c.ttft_floor_s is not None]
    if fitted:
        f_l = _fig("Latency floors of one request (no queue) and the SLO", yaxis_title="seconds", yaxis_type="log",
                   barmode="group")
        f_l.add_bar(x=[_label(c) for c in fitted], y=[c.ttft_floor_s for c in fitted], name="TTFT floor (prefill)")
        if plan.generative:
            f_l.add_bar(x=[_label(c) for c in fitted], y=[c.tpot_floor_s for c in fitted], name="TPOT floor (a step)")
        for k, v in plan.slo.items():
            f_l.add_hline(y=v, line_dash="dash", line_color="#c0392b", annotation_text=f"SLO {k} = {v:g} s")
        figs.append(("chart-latency", f_l))
    sections = [Section("Cost, capacity and latency", figs,
                        f"{plan.model} at {plan.peak_rps:g} req/s peak under {slo_text}. Per replica: the largest "
                        "rate one replica sustains within the SLO (simulated); $/month = replicas × GPUs × $/GPU-hour "
                        "× 730 h.")]
    if plan.autoscaling:
        f_a = _fig("The day: $/month by autoscaling policy", yaxis_title="$/month", barmode="group")
        for key in sorted({(a.hardware, a.tp, a.engine) for a in plan.autoscaling}):
            day = [a for a in plan.autoscaling if (a.hardware, a.tp, a.engine) == key]
            f_a.add_bar(x=[a.policy for a in day], y=[a.usd_per_month for a in day], name=f"{key[0]} TP{key[1]}",
                        hovertext=[f"SLO attainment {a.slo_attainment}, {a.scale_events} scale events"
                                   + (" (oscillating)" if a.oscillating else "") for a in day])
        sections.append(Section("Autoscaling over the day", [("chart-autoscaling", f_a)],
                                "Each policy over the daily pattern with cold starts; none = static at the peak count."))
    rows = [[i + 1, c.hardware, c.tp, c.engine, "yes" if c.meets_slo else "no",
             round(c.max_rate_per_replica_rps, 2) if c.meets_slo else "", c.limit, c.replicas or "",
             c.replicas_at_2x or "", c.replicas_at_3x or "", c.usd_per_hour if c.usd_per_hour is not None else "",
             round(c.usd_per_month) if c.usd_per_month is not None else "",
             c.cost_per_million_tokens_usd if c.cost_per_million_tokens_usd is not None else "",
             (c.price_source or "").split(" (")[0]] for i, c in enumerate(plan.candidates)]
    extra = f"<h2>Candidates, cheapest first</h2>{table_html(COLUMNS, rows, highlight=0 if b is not None else None)}"
    if plan.autoscaling:
        arows = [[a.hardware, a.tp, a.policy, a.slo_met, a.slo_attainment, a.replicas_mean, a.replicas_max,
                  a.scale_events, "yes" if a.oscillating else "no", round(a.usd_per_month),
                  f"{a.saving_vs_static:+.0%}"] for a in plan.autoscaling]
        extra += "<h2>Autoscaling policies</h2>" + table_html(
            ["GPU", "TP", "policy", "SLO met", "SLO attainment", "replicas mean", "replicas max", "scale events",
             "oscillating", "$/month", "saving vs static"], arows)
    warnings = list(plan.warnings)
    if b is None:
        warnings += [f"closest miss: {_label(c)} limited by {c.limit} ({c.limit_detail})" for c in plan.closest_misses]
    return render(title=f"capsim serving plan — {plan.model}", subtitle=f"{plan.peak_rps:g} req/s peak, {slo_text}",
                  cards=cards, sections=sections, extra_html=extra,
                  scenario_yaml=yaml.safe_dump(plan.best_scenario, sort_keys=False) if plan.best_scenario else
                  "# no candidate meets the SLO\n" + json.dumps({"slo": plan.slo, "closest_misses": [
                      c.to_dict() for c in plan.closest_misses]}, indent=2),
                  warnings=warnings)
