"""``capsim plan serve``: serve a model at a traffic peak under an SLO — GPU, TP, engine, replicas, $/month."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from simulator.errors import CapsimError

from .plan_cmd import plan_app
from .tables import Col, print_table, usd, usd_per_hour, usd_per_month

_SLO_HELP = ("latency bounds, comma-separated: ttft_p99_s=2,tpot_p99_s=0.05 (any of ttft, tpot, itl, e2e at p50, "
             "p90, p99)")


def parse_slo(text: str) -> dict[str, float]:
    """``ttft_p99_s=2,tpot_p99_s=0.05`` as a dict, each key checked against the scenario's SLO keys."""
    from simulator.scenario.serving import SLO

    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, val = part.partition("=")
        key = key.strip().removeprefix("slo.")
        if not sep or key not in SLO.model_fields:
            raise CapsimError(f"--slo: {part!r} is not KEY=SECONDS with KEY one of {', '.join(SLO.model_fields)}")
        try:
            v = float(val)
        except ValueError:
            raise CapsimError(f"--slo: {key}={val!r} is not a number of seconds") from None
        if not v > 0:
            raise CapsimError(f"--slo: {key} must be positive (got {val})")
        out[key] = v
    if not out:
        raise CapsimError("--slo: give at least one bound, e.g. ttft_p99_s=2")
    return out


def _trace_stats(path: Path) -> tuple[float, int, int]:
    """The busiest minute of a trace's arrivals (requests per second) and its mean prompt and output
    lengths (tokens)."""
    from simulator.scenario.workload import Trace
    from simulator.serving.traces import read_trace

    if not path.exists():
        raise CapsimError(f"--trace: {path} does not exist")
    arr, prompt, output, _ = read_trace(Trace(process="trace", path=str(path)))
    t = [float(x) for x in arr]
    if not t:
        raise CapsimError(f"--trace: {path} has no arrivals")
    best, j = 0, 0
    for i, x in enumerate(t):
        while t[j] < x - 60:
            j += 1
        best = max(best, i - j + 1)
    return best / 60.0, max(round(float(prompt.mean())), 1), max(round(float(output.mean())), 1)


def _rows(cands: list[Any], generative: bool) -> list[list[str]]:
    return [[c.hardware, str(c.tp), c.engine, "yes" if c.meets_slo else "no",
             f"{c.max_rate_per_replica_rps:.2f}" if c.meets_slo else "-", c.limit,
             f"{c.replicas}{'' if c.replicas_verified else '*'}" if c.replicas else "-",
             str(c.replicas_at_2x or "-"), str(c.replicas_at_3x or "-"), usd_per_hour(c.usd_per_hour),
             usd_per_month(c.usd_per_hour), usd(c.cost_per_million_tokens_usd)] for c in cands]


@plan_app.command("serve")
def serve(
    model: Annotated[str, typer.Option("--model", help="catalog name or a Hugging Face config.json")],
    slo: Annotated[str, typer.Option("--slo", help=_SLO_HELP)],
    rate: Annotated[float | None, typer.Option("--rate", help="constant Poisson traffic, requests (items) per second")] = None,
    pattern: Annotated[str | None, typer.Option("--pattern", help="diurnal: a sinusoidal day peaking at --peak")] = None,
    peak: Annotated[float | None, typer.Option("--peak", help="the daily peak rate with --pattern diurnal")] = None,
    trace: Annotated[Path | None, typer.Option("--trace", help=(
        "an arrival trace (capsim CSV): its busiest minute is the peak, its mean lengths the default lengths"))] = None,
    peak_to_trough: Annotated[float, typer.Option("--peak-to-trough", help="diurnal peak / trough (default 3)")] = 3.0,
    prompt_tokens: Annotated[int | None, typer.Option("--prompt-tokens", help="prompt length, tokens (default 512)")] = None,
    output_tokens: Annotated[int | None, typer.Option("--output-tokens", help="output length, tokens (default 128)")] = None,
    gpu: Annotated[list[str] | None, typer.Option(
        "--gpu", help="candidate GPU profile (repeat; default: every priced one)")] = None,
    tp: Annotated[list[int] | None, typer.Option("--tp", help="tensor-parallel size (repeat; default 1 2 4 8)")] = None,
    engine: Annotated[list[str] | None, typer.Option(
        "--engine", help="engine preset: vllm, sglang, trtllm (repeat; default vllm)")] = None,
    precision: Annotated[str, typer.Option("--precision", help="bf16 (default), fp8, ...")] = "bf16",
    provider: Annotated[str | None, typer.Option("--provider", help="price from this provider (default: cheapest)")] = None,
    market: Annotated[str, typer.Option("--market", help="on_demand (default) or spot")] = "on_demand",
    autoscale: Annotated[bool, typer.Option("--autoscale/--no-autoscale", help=(
        "run each autoscaling policy over the day (--peak-to-trough, --day-s) for the three best"))] = False,
    day_s: Annotated[float, typer.Option("--day-s", help=(
        "length of the simulated day, seconds (default 7200: a day compressed 12x; 86400 for the real one)"))] = 7200.0,
    workers: Annotated[int, typer.Option("--workers", help="processes for the capacity searches (default 1)")] = 1,
    executor: Annotated[str, typer.Option("--executor", help=(
        "local, ray or ray:ADDRESS: the GPU × TP groups' searches as Ray tasks, as sweeps run"))] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON on stdout, nothing else")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="a progress bar on stderr")] = None,
) -> None:
    """Serve a model at a peak rate under an SLO: per GPU × TP × engine, each replica's capacity, the
    replicas at peak (and 2×, 3×), $/hour, $/month and $/M tokens; the cheapest first."""
    from .cli import err, out, user_errors

    @user_errors
    def run() -> None:
        from simulator.files import check_writable, write_atomic
        from simulator.plan.serving import plan_serving

        from .progress import bar, wanted

        given = [x for x in (rate is not None, pattern is not None or peak is not None, trace is not None) if x]
        if len(given) != 1:
            raise CapsimError("give the traffic one way: --rate R, --pattern diurnal --peak R, or --trace FILE")
        if pattern is not None and (pattern != "diurnal" or peak is None):
            raise CapsimError("--pattern diurnal needs --peak R (the daily peak, requests per second)")
        if market not in ("on_demand", "spot"):
            raise CapsimError(f"--market must be on_demand or spot (got {market!r})")
        if html:
            check_writable(html, "--html", suffixes=(".html", ".htm"))
        bounds = parse_slo(slo)
        p_tokens, o_tokens = prompt_tokens, output_tokens
        if trace is not None:     # the busiest minute is the peak; lengths not given are the trace's means
            peak_rps, p_mean, o_mean = _trace_stats(trace)
            p_tokens, o_tokens = p_tokens or p_mean, o_tokens or o_mean
        else:
            peak_rps = rate if rate is not None else float(peak or 0)
        with bar(err, "plan serve", enabled=wanted(err, as_json=as_json, flag=progress),
                 unit="candidates") as update:
            plan = plan_serving(model=model, peak_rps=float(peak_rps), pattern="diurnal" if pattern else "constant",
                                peak_to_trough=peak_to_trough, slo=bounds, prompt_tokens=p_tokens,
                                output_tokens=o_tokens, gpus=gpu, tps=tp, engines=engine, precision=precision,
                                provider=provider, market=market, autoscale=autoscale,
                                day_s=day_s, workers=workers, executor=executor, progress=update)
        if html:
            from simulator.report.plan_serving import plan_serving_html

            write_atomic(html, plan_serving_html(plan), "--html")
        if as_json:
            print(json.dumps(plan.to_dict(), indent=2, allow_nan=False))
            return
        show(plan)

    def show(plan: Any) -> None:
        slo_text = ", ".join(f"{k} ≤ {v:g}" for k, v in plan.slo.items())
        cols = [Col("GPU", "id"), Col("TP", "num"), Col("engine", "id"), Col("meets", "id"),
                Col("req/s per replica", "num"), Col("limited by", "id"), Col("replicas", "num"),
                Col("at 2x", "num"), Col("at 3x", "num"), Col("$/hour", "num"), Col("$/month", "num"),
                Col("$/M tok" if plan.generative else "$/M items", "num")]
        print_table(out, cols, _rows(plan.candidates, plan.generative),
                    title=f"{plan.model} at {plan.peak_rps:g} req/s peak under {slo_text} "
                          "(* replicas not checked as a fleet)")
        b = plan.best
        if b is None:
            out.print("nothing meets the SLO; the closest misses:", highlight=False)
            for c in plan.closest_misses:
                out.print(f"  {c.hardware} TP{c.tp} {c.engine}: limited by {c.limit} ({c.limit_detail})", highlight=False)
            return
        out.print(f"best: {b.replicas} × {b.hardware} TP{b.tp} ({b.engine}), {b.max_rate_per_replica_rps:.2f} req/s "
                  f"per replica, {usd_per_hour(b.usd_per_hour)} = {usd_per_month(b.usd_per_hour)} "
                  f"({b.price_source})", highlight=False)
        for a in plan.autoscaling:
            out.print(f"  {a.hardware} TP{a.tp} {a.policy}: SLO attainment {a.slo_attainment}, "
                      f"{a.replicas_mean:.2f} replicas on average, {a.scale_events} scale events"
                      f"{' (oscillating)' if a.oscillating else ''}, {usd(a.usd_per_month)}/month "
                      f"({a.saving_vs_static:+.0%} vs static)", highlight=False)
        if plan.recommended_autoscaler:
            out.print(f"recommended autoscaler: {json.dumps(plan.recommended_autoscaler)}", highlight=False)
        for w in plan.warnings:
            err.print(f"warning: {w}", highlight=False)

    run()
