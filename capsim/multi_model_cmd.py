"""``capsim serve`` of a ``kind: multi_model`` scenario: several deployments on one GPU pool. The files,
the report, the JSON or the table, as ``capsim serve`` gives them for one deployment."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console

from .tables import KVTable, usd, usd_per_hour

if TYPE_CHECKING:
    from simulator.scenario import MultiModelScenario
    from simulator.serving.multi_result import MultiModelResult


def run(sc: MultiModelScenario, *, out: Console, err: Console, as_json: bool, html: Path | None,
        out_path: Path | None, timeseries_out: Path | None, progress: bool | None, force: bool) -> None:
    """Simulate the pool, then write what was asked and print the JSON or the table."""
    from simulator.serving.deployments import simulate_multi_model
    from simulator.workbound import allow_large

    from .outputs import report_or_json, request_records, write_frame
    from .progress import bar, wanted

    with allow_large() if force else contextlib.nullcontext(), \
            bar(err, "simulating", enabled=wanted(err, as_json=as_json, flag=progress), unit="s simulated") as upd:
        r = simulate_multi_model(sc, progress=upd)
    if out_path is not None:
        frame = pd.concat([request_records(x.requests_frame()).assign(deployment=name)
                           for name, x in r.results.items()], ignore_index=True)
        write_frame(frame, out_path)
        if not as_json:
            err.print(f"{len(frame):,} request rows written to {out_path}", highlight=False)
    if timeseries_out is not None:
        write_frame(pd.concat([x.timeseries_frame().assign(deployment=name) for name, x in r.results.items()],
                              ignore_index=True), timeseries_out)
        if not as_json:
            err.print(f"time series written to {timeseries_out}", highlight=False)
    report_or_json(r, html=html, as_json=as_json, err=err, show=lambda: print_result(r, out))


def _ms(p: object, q: str) -> str:
    v = getattr(p, q, None) if p is not None else None
    return "-" if v is None else f"{v * 1e3:,.0f}"


def print_result(r: MultiModelResult, out: Console) -> None:
    p = r.pool
    t = KVTable(title=f"{r.name}: {len(r.deployments)} deployments on {p.gpus} × {p.hardware}, policy {r.policy}")
    t.add_row("pool", f"{p.gpu_hours:,.2f} GPU-hours paid over {r.simulated_s:,.0f} s; {p.held_gpu_hours:,.2f} held by "
              f"replicas ({100 * p.allocation:.1f}%), {p.idle_gpu_hours:,.2f} idle; GPU busy {100 * p.utilization:.1f}%;"
              f" at most {p.peak_gpus_held} GPUs held; {p.moves} replicas moved")
    t.add_row("cost", f"{usd(p.cost_usd)} for this run, {usd_per_hour(p.usd_per_hour)} at {usd(p.usd_per_gpu_hour)}/GPU-h "
              f"({p.price_source})")
    for name, d in r.deployments.items():
        rej = f", [bold red]{d.rejected:,} rejected[/]" if d.rejected else ""
        rej += f", [bold red]{d.failed:,} failed[/]" if d.failed else ""
        fl = f", {d.in_flight:,} in flight" if d.in_flight else ""
        slo = "no SLO" if d.slo_attainment is None else (
            f"SLO {'[green]met[/]' if d.slo_met else '[bold red]missed[/]'} {100 * d.slo_attainment:.2f}%")
        t.add_row(f"{name}", f"{d.model}: {d.arrived:,} arrived, {d.completed:,} completed{rej}{fl}; {slo}; TTFT p50/p99 "
                  f"{_ms(d.ttft_s, 'p50')}/{_ms(d.ttft_s, 'p99')} ms, TPOT p99 {_ms(d.tpot_s, 'p99')} ms; replicas "
                  f"(×{d.gpus_per_replica} GPU) mean {d.replicas.mean:.2f} max {d.replicas.max}, +{d.replicas_given} "
                  f"−{d.replicas_taken} moved; {d.gpu_hours:,.2f} GPU-h, {usd(d.cost_usd)}")
    for w in r.warnings:
        t.add_row("[yellow]warning[/]", w)
    t.print(out)
