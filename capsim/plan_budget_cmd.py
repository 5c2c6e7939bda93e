"""``capsim plan budget FILE``: month-by-month GPU-hours and dollars of a year's training and serving
(simulator.plan.budget)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import HtmlOpt, JsonOpt, out, user_errors
from .plan_cmd import plan_app
from .tables import Col, print_table


@plan_app.command("budget")
@user_errors
def plan_budget_cmd(file: Annotated[Path, typer.Argument(help="budget YAML: pretraining, retraining, serving")],
                    as_json: JsonOpt = False, html: HtmlOpt = None) -> None:
    """GPU-hours and $ per month (on-demand vs spot; reserved where priced) of a pre-training run, a
    retraining cadence and growing serving demand."""
    from simulator.files import check_writable, write_atomic
    from simulator.plan.budget import load_budget, plan_budget

    if html:
        check_writable(html, "--html", suffixes=(".html", ".htm"))
    b = plan_budget(load_budget(file), base_dir=file.resolve().parent)
    if html:
        from simulator.report.plan import budget_html

        write_atomic(html, budget_html(b), "--html")
    if as_json:
        from simulator.invariants import strict_json

        print(strict_json(b.to_dict(), 2))
        return
    has_reserved = any("reserved" in m.cost_usd for m in b.months)
    parts = list(dict.fromkeys(p for m in b.months for p in m.gpu_hours["on_demand"]))
    cols = [Col("month", "num"), *(Col(p, "num") for p in parts), Col("replicas", "num"),
            Col("on-demand", "num"), Col("spot", "num")] + ([Col("reserved", "num")] if has_reserved else [])
    rows = []
    for m in b.months:
        r = [str(m.month), *(f"{m.gpu_hours['on_demand'].get(p, 0.0):,.0f}" for p in parts), str(m.serving_replicas),
             f"${m.cost_usd['on_demand']:,.0f}", f"${m.cost_usd['spot']:,.0f}"]
        if has_reserved:
            r.append(f"${m.cost_usd['reserved']:,.0f}" if "reserved" in m.cost_usd else "—")
        rows.append(r)
    total = ["total", *(f"{sum(m.gpu_hours['on_demand'].get(p, 0.0) for m in b.months):,.0f}" for p in parts), "",
             f"${b.total('on_demand'):,.0f}", f"${b.total('spot'):,.0f}"]
    if has_reserved:
        total.append(f"${b.total('reserved'):,.0f}")
    print_table(out, cols, [*rows, total],
                title=f"budget {b.name}: GPU-hours per part (on-demand runs) and $ per market, by month")
    for note in b.notes:
        out.print(f"  {note}", highlight=False, markup=False)
    if not has_reserved:
        out.print("  reserved: the price catalog lists no reserved price for these GPUs", highlight=False)
