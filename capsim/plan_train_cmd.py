"""``capsim plan train``: GPUs, count, layout and cost to train a model on T tokens by a deadline or
within a budget (simulator.plan.training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli import HtmlOpt, JsonOpt, ProgressOpt, err, out, user_errors
from .plan_cmd import plan_app
from .tables import Col, print_table

TABLE_ROWS = 15


def _money(v: float) -> str:
    return f"${v:,.0f}"


@plan_app.command("train")
@user_errors
def plan_train(
    model: Annotated[str, typer.Option("--model", help="catalog name (capsim models) or a config.json path")],
    tokens: Annotated[float, typer.Option("--tokens", help="training tokens, e.g. 2e12")],
    days: Annotated[float | None, typer.Option("--days", help="deadline in days (failures and checkpoints included)")] = None,
    budget: Annotated[float | None, typer.Option("--budget", help="budget in US dollars")] = None,
    gpu: Annotated[list[str] | None, typer.Option("--gpu", help="GPU profile to consider (repeat; default: every "
                                                                 "profile with a catalog price)")] = None,
    provider: Annotated[str | None, typer.Option("--provider", help="cloud provider in the price catalog")] = None,
    market: Annotated[str, typer.Option("--market", help="on_demand or spot")] = "on_demand",
    gpus: Annotated[list[int] | None, typer.Option("--gpus", help="GPU counts to consider (repeat; default "
                                                                   "8·2^k and 24·2^k up to 4,096)")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", help="tokens per sequence (default GPT-3's 2048)")] = 2048,
    global_batch: Annotated[int, typer.Option("--global-batch", help="sequences per step (default GPT-3's 1536)")] = 1536,
    precision: Annotated[str, typer.Option("--precision", help="bf16, fp16, fp8, ...")] = "bf16",
    framework: Annotated[str | None, typer.Option("--framework", help=(
        "training stack preset every plan runs with: megatron-core, nemo, torchtitan, fsdp, deepspeed, ... "
        "(capsim keys training.framework)"))] = None,
    node_mtbf_hours: Annotated[float | None, typer.Option("--node-mtbf-hours", help=(
        "mean time between failures of one 8-GPU node (default 6,335 h: Llama 3 405B's interruptions)"))] = None,
    executor: Annotated[str, typer.Option("--executor", help="local, ray or ray:ADDRESS")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", help="local processes (default: all cores)")] = None,
    emit_scenario: Annotated[Path | None, typer.Option("--emit-scenario", help=(
        "write each reported plan as a scenario YAML in this folder (capsim train reproduces it)"))] = None,
    as_json: JsonOpt = False, html: HtmlOpt = None, progress: ProgressOpt = None,
) -> None:
    """The cheapest plan meeting a deadline, the fastest within a budget, ranked plans and the time-cost frontier."""
    from simulator.errors import CapsimError
    from simulator.files import check_writable, write_atomic
    from simulator.plan.training import LLAMA3_NODE_MTBF_HOURS, emit_scenarios, plan_training

    from .progress import bar, wanted

    if html:
        check_writable(html, "--html", suffixes=(".html", ".htm"))
    with bar(err, "plan train", enabled=wanted(err, as_json=as_json, flag=progress), unit="candidates") as update:
        plan = plan_training(model=model, tokens=tokens, days=days, budget_usd=budget, gpus=gpu, provider=provider,
                             market=market, gpu_counts=gpus, seq_len=seq_len, global_batch=global_batch,
                             precision=precision, node_mtbf_hours=node_mtbf_hours or LLAMA3_NODE_MTBF_HOURS,
                             executor=executor, workers=workers, progress=update, framework=framework)
    reported = _reported(plan)
    if html:
        from simulator.report.plan import training_plan_html

        write_atomic(html, training_plan_html(plan), "--html")
        if not as_json:
            err.print(f"report written to {html}")
    if emit_scenario:
        paths = emit_scenarios(plan, reported, str(emit_scenario))
        if not as_json:
            err.print(f"{len(paths)} scenarios written to {emit_scenario}/", highlight=False)
    if as_json:
        print(plan.to_json())
    else:
        _print(plan)
    if plan.best is None:
        if not plan.rows:
            raise CapsimError(f"no candidate could be simulated ({plan.counts.invalid:,} invalid layouts, "
                              f"{plan.counts.out_of_memory:,} do not fit in memory): give more --gpus or other --gpu")
        goal = " and ".join(g for g in (f"{days:g} days" if days else "", f"${budget:,.0f}" if budget else "") if g)
        misses = "; ".join(f"{r.hardware} × {r.gpus} {r.layout.label()}: {why}" for r, why in plan.misses(3))
        raise CapsimError(f"no plan of {plan.model} meets {goal}; closest: {misses}")


def _reported(plan: object) -> list:
    """The rows a user is shown: the best, the cheapest meeting the deadline, the fastest within the
    budget, then the frontier (each once)."""
    from simulator.plan.training import TrainingPlan

    assert isinstance(plan, TrainingPlan)
    seen: dict[int, object] = {}
    for r in (plan.best, plan.cheapest_meeting_deadline, plan.fastest_within_budget, *plan.pareto):
        if r is not None:
            seen.setdefault(id(r), r)
    return list(seen.values())


def _print(plan: object) -> None:
    from simulator.plan.training import TrainingPlan

    assert isinstance(plan, TrainingPlan)
    c = plan.counts
    goal = ", ".join(g for g in (f"in {plan.deadline_days:g} days" if plan.deadline_days else "",
                                 f"within ${plan.budget_usd:,.0f}" if plan.budget_usd else "") if g)
    out.print(f"plan: {plan.model} ({plan.params_b:,.1f}B) on {plan.total_tokens:.3g} tokens"
              + (f" {goal}" if goal else "") + f", {plan.market.replace('_', '-')}", highlight=False)
    out.print(f"searched {c.enumerated:,} candidates: {c.pruned_by_bound:,} pruned by the time/cost bound, "
              f"{c.invalid:,} invalid, {c.out_of_memory:,} out of memory, {c.simulated:,} simulated", highlight=False)
    for label, r in (("cheapest meeting the deadline", plan.cheapest_meeting_deadline),
                     ("fastest within the budget", plan.fastest_within_budget),
                     ("best" if not (plan.deadline_days or plan.budget_usd) else "", plan.best)):
        if r is not None and label:
            out.print(f"{label}: {r.hardware} × {r.gpus:,} ({r.layout.label()}): {r.time_to_train_days:,.1f} days "
                      f"(compute {r.compute_days_without_failures:,.1f}), {r.gpu_hours:,.0f} GPU-hours, "
                      f"{_money(r.cost_usd)}, MFU {r.mfu:.1%}", highlight=False)
    cols = [Col("#", "num"), Col("GPU", "id"), Col("GPUs", "num"), Col("layout"), Col("days", "num"),
            Col("GPU-hours", "num"), Col("$", "num"), Col("MFU", "num"), Col("GiB/GPU", "num"), Col("goal"),
            Col("Pareto")]
    rows = [[str(k), r.hardware, f"{r.gpus:,}", r.layout.label(), f"{r.time_to_train_days:,.2f}",
             f"{r.gpu_hours:,.0f}", _money(r.cost_usd), f"{r.mfu:.1%}", f"{r.memory_gib:.1f}",
             "meets" if r.meets else "misses", "yes" if r.pareto else ""]
            for k, r in enumerate(plan.rows[:TABLE_ROWS], 1)]
    print_table(out, cols, rows, title=f"ranked plans (first {min(TABLE_ROWS, len(plan.rows))} of {len(plan.rows):,})")
    par = plan.pareto
    if par:
        print_table(out, [Col("days", "num"), Col("$", "num"), Col("GPU", "id"), Col("GPUs", "num"), Col("layout")],
                    [[f"{r.time_to_train_days:,.2f}", _money(r.cost_usd), r.hardware, f"{r.gpus:,}", r.layout.label()]
                     for r in par], title="time-vs-cost frontier")
    if plan.skipped_gpus:
        err.print("GPUs left out: " + "; ".join(f"{k} ({v})" for k, v in plan.skipped_gpus.items()),
                  highlight=False, markup=False)
