"""The ``capsim`` command line. Thin: every command calls the public API and prints its result."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console

from simulator.errors import CapsimError

from .tables import Col, KVTable, metric, print_table, usd, usd_per_hour, usd_per_month

if TYPE_CHECKING:   # the simulator loads on first use, so --help stays fast
    from simulator.scenario import MultiModelScenario, ServingScenario, TrainingScenario
    from simulator.serving import ServingResult
    from simulator.training import TrainingResult

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="capsim: capacity-planning and cost simulator for NN training and serving clusters.")
out = Console(emoji=False)   # no ":name:" emoji codes in ids and paths (and no 15 ms to load their table)
err = Console(stderr=True, emoji=False)

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a scenario key: --set parallelism.tp=4")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout, nothing else")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="write a self-contained HTML report")]
ProgressOpt = Annotated[bool | None, typer.Option("--progress/--no-progress", help=(
    "a progress bar with the time left on stderr (default: when stderr is a terminal and not --json)"))]
ServeOutOpt = Annotated[Path | None, typer.Option("--out", help=(
    "write one row per request (arrival, lengths, status, queue/TTFT/TPOT/E2E, ...) to FILE.csv, .parquet or .json"))]
TimeseriesOpt = Annotated[Path | None, typer.Option("--timeseries-out", help=(
    "write per service, replica and time bin: queue, running, utilization, batch tokens, KV-cache use "
    "(.csv, .parquet or .json)"))]
TrainOutOpt = Annotated[Path | None, typer.Option("--out", help=(
    "write the pipeline timeline of one step (stage, pass, chunk, micro-batch, start_s, end_s) to "
    "FILE.csv, .parquet or .json"))]
ForceOpt = Annotated[bool, typer.Option("--force", help=(
    "run beyond the work bounds (10M requests, 8 GiB, an unstable overload, 100k sweep configurations; "
    "simulator/workbound.py)"))]


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn CapsimError into a one-line message and exit status 2 (no traceback); Ctrl-C into a
    message and exit status 130 (128 + SIGINT, the shell's convention)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CapsimError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted (Ctrl-C)", highlight=False)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@user_errors
def models(as_json: JsonOpt = False) -> None:
    """List the model catalog with parameter counts."""
    from simulator.catalog import catalog

    rows: list[dict[str, Any]] = [{"name": m.name, "architecture": m.architecture, "layers": m.layers, "hidden": m.hidden,
             "heads": m.heads, "kv_heads": m.kv_heads, "params_b": round(m.total_params() / 1e9, 4),
             "active_params_b": round(m.active_params() / 1e9, 4), "source": m.source}
            for m in catalog().values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print_table(out, [Col("model", "id"), Col("arch", "id"), *(Col(h, "num") for h in (
        "layers", "hidden", "heads", "kv", "params", "active"))],
        [[r["name"], r["architecture"], str(r["layers"]), str(r["hidden"]), str(r["heads"]), str(r["kv_heads"]),
          f"{r['params_b']:.3f} B", f"{r['active_params_b']:.3f} B"] for r in rows], title="model catalog")


@app.command()
@user_errors
def profiles(as_json: JsonOpt = False) -> None:
    """List hardware profiles: spec-sheet or measured (with the tables' source and engine versions)."""
    from simulator.hardware import get_profile, price_catalog, profile_paths, unpriced_reasons

    rows: list[dict[str, Any]] = []
    for name in profile_paths():
        p = get_profile(name)
        inst = [f"{i.provider}:{i.instance}" for i in price_catalog() if i.gpu == name]
        price = _profile_price(name, unpriced_reasons())
        mp = p.measured_profile
        measured = None
        if mp is not None:
            src = mp.source
            kernels: dict[str, dict[str, list[str]]] = {}
            for ref in mp.tables:
                kernels.setdefault(ref.engine, {}).setdefault(ref.kind, []).append(ref.engine_version)
            measured = {"source": f"{src.get('name', '?')} {src.get('version', '')}".strip(),
                        "licence": src.get("licence"), "device": mp.manifest.get("device"),
                        "engines": mp.engines(), "kernels": kernels, "folder": str(mp.folder)}
        rows.append({"name": name, "gpu": p.gpu, "basis": "measured" if measured else "spec",
                     "measured": measured, "memory_gib": p.memory_gib, "bf16_tflops": p.peak_tflops.get("bf16"),
                     "fp8_tflops": p.peak_tflops.get("fp8"), "fp4_tflops": p.peak_tflops.get("fp4"),
                     "memory_tbps": p.memory_bandwidth_tbps, "nvlink_domain_gpus": p.nvlink_domain_gpus,
                     "intra_busbw_gb_s": p.intra_node.busbw_gb_s, "inter_busbw_gb_s": p.inter_node.busbw_gb_s,
                     "tdp_w": p.tdp_w, "instances": inst, "calibrated": p.calibrated is not None, **price})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    def tf(v: float | None) -> str:
        return "-" if not v else f"{v:.0f}"

    def usd(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    print_table(out, [Col("profile", "id"), Col("basis", "id"), *(Col(h, "num") for h in (
        "GiB", "bf16", "fp8", "fp4", "TB/s", "NVL", "W", "$/GPU-h", "spot $/GPU-h")), Col("priced from")],
        [[r["name"], r["basis"], f"{r['memory_gib']:.0f}", tf(r["bf16_tflops"]), tf(r["fp8_tflops"]),
          tf(r["fp4_tflops"]), f"{r['memory_tbps']:.2f}", str(r["nvlink_domain_gpus"]), tf(r["tdp_w"]),
          usd(r["on_demand_usd_per_gpu_hour"]), usd(r["spot_usd_per_gpu_hour"]),
          r["price_instance"] or f"no price: {r['unpriced_reason']}"] for r in rows],
        title="hardware profiles (dense TFLOP/s; NVL: GPUs per NVLink domain; $ per GPU-hour of the cheapest "
              "smallest instance)")
    measured_rows = [[r["name"], r["measured"]["source"], _engine_versions(r["measured"]["kernels"])]
                     for r in rows if r["measured"] is not None]
    if measured_rows:
        print_table(out, [Col("profile", "id"), Col("source"),
                          Col("engines: GEMM/attention version (all-reduce versions)")],
                    measured_rows, title="measured kernel tables")
    n = sum(r["basis"] == "measured" for r in rows)
    out.print(f"{n} of {len(rows)} profiles measured; the others use spec-sheet peaks × efficiency "
              "(capsim calibrate measures your own GPU)")


def _profile_price(name: str, reasons: dict[str, str]) -> dict[str, Any]:
    """The profile's $/GPU-hour on demand and on spot from the cheapest smallest catalog instance (as a
    1-GPU replica is priced), with the instances and their source, or why it has no price."""
    from simulator.errors import CapsimError
    from simulator.hardware import find_instance

    out: dict[str, Any] = {"on_demand_usd_per_gpu_hour": None, "spot_usd_per_gpu_hour": None,
                           "price_instance": None, "spot_instance": None, "price_source": None,
                           "unpriced_reason": None}
    try:
        od = find_instance(gpu=name, gpus_per_node=1, market="on_demand")
        sp = find_instance(gpu=name, gpus_per_node=1, market="spot")
    except CapsimError:
        out["unpriced_reason"] = reasons.get(name, "no row in hardware_profiles/prices.yaml")
        return out
    if od.on_demand_usd_per_hour is not None:
        out.update(on_demand_usd_per_gpu_hour=round(od.usd_per_gpu_hour("on_demand"), 4),
                   price_instance=f"{od.provider}:{od.instance}", price_source=od.source)
    if sp.spot_usd_per_hour is not None:
        out.update(spot_usd_per_gpu_hour=round(sp.usd_per_gpu_hour("spot"), 4), spot_instance=f"{sp.provider}:{sp.instance}")
        out["price_instance"] = out["price_instance"] or f"{sp.provider}:{sp.instance} (spot only)"
        out["price_source"] = out["price_source"] or sp.source
    return out


def _engine_versions(kernels: dict[str, dict[str, list[str]]]) -> str:
    parts = []
    for engine, kinds in sorted(kernels.items()):
        main = sorted({v for k, vs in kinds.items() if k != "collective" for v in vs})
        comm = kinds.get("collective", [])
        text = f"{engine} {'/'.join(main)}" if main else engine
        if comm and comm != main:
            text += f" ({', '.join(comm)})"
        parts.append(text)
    return "; ".join(parts)


@app.command()
@user_errors
def cost(scenario: Path, set_: SetOpt = None, as_json: JsonOpt = False,
         coverage: Annotated[bool, typer.Option("--coverage", help=(
             "list the kernel shapes no measured table covered (the roofline timed them)"))] = False,
         deployment: Annotated[str | None, typer.Option("--deployment", help=(
             "a multi_model scenario: the deployment whose model to cost (default: the first)"))] = None) -> None:
    """Op-level cost of one layer (training: forward/backward; serving: prefill/decode; a model that generates
    nothing: one input's forward, a CNN's every convolution)."""
    from simulator.api import layer_cost_table, scenario_hardware
    from simulator.invariants import strict_json
    from simulator.scenario import MultiModelScenario, load_scenario

    loaded = load_scenario(scenario, set_)
    if isinstance(loaded, MultiModelScenario):
        names = [d.name for d in loaded.deployments]
        if deployment is not None and deployment not in names:
            raise CapsimError(f"--deployment {deployment!r}: {scenario} has deployments {', '.join(names)}")
        sc: TrainingScenario | ServingScenario = loaded.serving_scenario(names.index(deployment or names[0]))
    elif deployment is not None:
        raise CapsimError(f"--deployment is for a multi_model scenario; {scenario} is a {loaded.kind} scenario")
    else:
        sc = loaded
    hw = scenario_hardware(sc)
    rows = layer_cost_table(sc, hw)
    if coverage:
        _print_coverage(hw, as_json=as_json)
        return
    if as_json:
        print(strict_json(rows))   # the scenario's own numbers: never NaN or Infinity in the JSON
        return
    mixed = len({r["layers"] for r in rows}) > 1      # layers of several kinds: say which rows are which
    print_table(out, [Col("pass", "id"), *([Col("layers")] if mixed else []), Col("op", "id"), Col("kind", "id"),
                      Col("time µs", "num"), Col("TFLOP/s", "num"), Col("basis")],
                [[r["pass"], *([r["layers"]] if mixed else []), r["op"], r["kind"], f"{r['time_us']:.1f}",
                  f"{r['tflops']:.0f}" if r["tflops"] else "", r["basis"]] for r in rows],
                title=f"per-layer kernels: {scenario}")


def _print_coverage(hw: Any, *, as_json: bool) -> None:
    kb = hw.kernels
    if kb is None:
        msg = (f"hardware {hw.name!r} has no measured kernel tables: every kernel time is the roofline "
               "(datasheet peak × efficiency). Run `capsim calibrate` on it, or choose a measured GPU (capsim profiles).")
        print(json.dumps({"hardware": hw.name, "tables": None, "outside_tables": [], "note": msg}, indent=2)
              if as_json else msg)
        return
    missed = kb.coverage.rows()
    hits = sum(kb.coverage.hits.values())
    asked = hits + sum(r["count"] for r in missed)
    if as_json:
        print(json.dumps({"hardware": hw.name, "tables": kb.describe(), "measured_lookups": hits,
                          "lookups": asked, "outside_tables": missed}, indent=2))
        return
    tables = ", ".join(f"{k} {v}" for k, v in kb.describe().items())
    out.print(f"{hw.name}: tables {tables}")
    out.print(f"{hits} of {asked} kernel lookups answered by a measured table")
    if not missed:
        out.print("every kernel shape was inside a measured table")
        return
    print_table(out, [Col("kind", "id"), Col("shape", "id"), Col("times asked", "num")],
                [[r["kind"], r["shape"], str(r["count"])] for r in missed],
                title="kernel shapes outside every table (timed by the roofline)")


def _print_training(r: TrainingResult) -> None:
    lay, mem = r.layout, r.memory_per_gpu_gib
    t = KVTable(title=f"{r.name}: {r.model} on {r.gpus} × {r.hardware}")
    t.add_row("layout", f"TP{lay.tp} PP{lay.pp} DP{lay.dp} CP{lay.cp} v{lay.virtual_stages} {lay.schedule} "
              f"ZeRO-{lay.zero_stage} recompute={lay.recompute} micro-batch {lay.micro_batch} "
              f"({lay.microbatches_per_step} per step)")
    fit = "[green]fits[/]" if r.fits_in_memory else "[bold red]DOES NOT FIT[/]"
    t.add_row("memory / GPU", f"{mem.total:.1f} of {r.memory_capacity_gib:.0f} GiB {fit} (params {mem.params:.1f}, "
              f"grads {mem.grads:.1f}, optimizer {mem.optimizer:.1f}, activations {mem.activations:.1f})")
    t.add_row("iteration", f"{r.iteration_time_s:.3f} s, {r.tokens_per_s:,.0f} tokens/s")
    t.add_row("MFU / HFU", f"{100 * r.mfu:.1f}% / {100 * r.hfu:.1f}% ({r.tflops_per_gpu_model:.0f} TFLOP/s per GPU)")
    bd = r.time_breakdown_s.to_dict()
    t.add_row("breakdown", ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.3f}s" for k, v in bd.items() if v > 0))
    if (job := r.job) is not None:
        t.add_row("time to train", f"{job.time_to_train_days:.1f} days (p10 {job.time_to_train_days_p10:.1f}, "
                  f"p90 {job.time_to_train_days_p90:.1f}); goodput {100 * job.goodput:.1f}%, "
                  f"{job.failures_mean:.1f} failures")
        t.add_row("cost", f"{usd(job.cost_usd)} for {job.gpu_hours:,.0f} GPU-hours at "
                  f"{usd(job.usd_per_gpu_hour)}/GPU-h ({job.price_source})")
        t.add_row("energy", f"{job.energy_kwh:,.0f} kWh (GPUs at {job.gpu_power_w:.0f} W)")
    if r.infeasible_reason is not None:
        t.add_row("[bold red]infeasible[/]", r.infeasible_reason)
    t.print(out)


@app.command()
@user_errors
def train(scenario: Path, set_: SetOpt = None, as_json: JsonOpt = False, html: HtmlOpt = None,
          out_path: TrainOutOpt = None, force: ForceOpt = False) -> None:
    """Simulate a training scenario: step time, memory, MFU, time to train and cost."""
    _simulate(scenario, set_, "training", as_json=as_json, html=html, out_path=out_path, force=force)


COMMAND_FOR = {"training": "train", "serving": "serve", "multi_model": "serve"}


def _simulate(scenario: Path, set_: list[str] | None, kind: str, *, as_json: bool, html: Path | None,
              out_path: Path | None = None, timeseries_out: Path | None = None, progress: bool | None = None,
              force: bool = False) -> None:
    """Load, check the kind, simulate, then the files, the report, the JSON or the table: train and
    serve alike."""
    from .startup import loading

    with loading():        # the simulator's modules and the scenario: no garbage collection (capsim/startup.py)
        from simulator.files import check_writable
        from simulator.scenario import load_scenario
        from simulator.workbound import allow_large

        from .outputs import check_path, report_or_json, request_records, write_frame

        if html:
            check_writable(html, "--html", suffixes=(".html", ".htm"))   # before the run: a bad path loses nothing
        sc = load_scenario(scenario, set_)
        # by kind, not isinstance: naming TrainingScenario would load the training keys into a serve
        if sc.kind == "training":
            from simulator import simulate_training
        else:
            from simulator import simulate_serving
    if COMMAND_FOR[sc.kind] != COMMAND_FOR[kind]:
        raise CapsimError(f"{scenario} is a {sc.kind} scenario; use 'capsim {COMMAND_FOR[sc.kind]}'")
    for path, option in ((out_path, "--out"), (timeseries_out, "--timeseries-out")):
        if path is not None:
            check_path(path, option)
    if sc.kind == "multi_model":     # several deployments on one GPU pool: capsim/multi_model_cmd.py
        from . import multi_model_cmd

        multi_model_cmd.run(cast("MultiModelScenario", sc), out=out, err=err, as_json=as_json, html=html, out_path=out_path,
                            timeseries_out=timeseries_out, progress=progress, force=force)
        return
    # each kind imports its own simulator only: a serve loads no training modules, a train no serving ones
    tr: TrainingResult | None = None
    sr: ServingResult | None = None
    with allow_large() if force else contextlib.nullcontext():
        if sc.kind == "training":
            tr = simulate_training(cast("TrainingScenario", sc))
        else:
            from .progress import bar, wanted

            shown = wanted(err, as_json=as_json, flag=progress)
            with bar(err, "simulating", enabled=shown, unit="s simulated") as upd:
                # not shown: no progress callback, so one env.run and no slices of simulated time
                sr = simulate_serving(cast("ServingScenario", sc), progress=upd if shown else None)
    r: TrainingResult | ServingResult = tr if tr is not None else cast("ServingResult", sr)
    if out_path is not None:
        frame = tr.timeline_frame() if tr is not None else request_records(cast("ServingResult", sr).requests_frame())
        write_frame(frame, out_path)
        if not as_json:
            err.print(f"{len(frame):,} {'timeline' if tr is not None else 'request'} rows "
                      f"written to {out_path}", highlight=False)
    if timeseries_out is not None and sr is not None:
        write_frame(sr.timeseries_frame(), timeseries_out)
        if not as_json:
            err.print(f"time series written to {timeseries_out}", highlight=False)
    report_or_json(r, html=html, as_json=as_json, err=err,
                   show=lambda: _print_training(tr) if tr is not None else _print_serving(cast("ServingResult", sr)))


def _print_serving(r: ServingResult) -> None:
    from simulator.result_views import serving_latency_rows, serving_throughput_text
    from simulator.serving.prefix_stats import prefix_cache_text

    lay = r.replica_layout
    where = (" → ".join(f"{k} ({v.model} on {v.replicas.max} × {v.hardware})" for k, v in r.services.items())
             if r.services else f"{r.model} on {r.replicas.max} × {r.hardware} replicas")
    t = KVTable(title=f"{r.name}: {where}")
    kv = (f"; KV cache {r.kv_cache_tokens_per_replica:,} tokens ({lay.kv_cache_precision})"
          if r.kv_cache_tokens_per_replica is not None else "")
    t.add_row("replica", f"TP{lay.tp} PP{lay.pp} {lay.batching} batching, max {lay.max_num_seqs} seqs, "
              f"{lay.max_batched_tokens:,} tokens/{'iteration' if r.generative else 'batch'}{kv}")
    if r.engine_settings:
        from simulator.serving.engines.presets import engine_line

        t.add_row("engine", engine_line(r.engine_settings))
    t.add_row("kernel tables", r.kernel_tables)
    mem = r.memory_per_gpu_gib.to_dict()
    t.add_row("memory / GPU", ", ".join(f"{k.removesuffix('_gib')} {v:.1f}" for k, v in mem.items()) + " GiB")
    rej = f", [bold red]{r.rejected:,} rejected[/] {r.rejected_by_reason}" if r.rejected else ""
    rej += f", [bold red]{r.failed:,} failed[/]" if r.failed else ""
    inflight = f", {r.in_flight:,} still in flight" if r.in_flight else ""
    warm = (f"; {r.warmup_requests:,} warm-up requests left out, measured from {r.measured_from_s:,.1f} s"
            if r.warmup_requests else "")
    t.add_row("requests", f"{r.arrived:,} arrived, {r.completed:,} completed{rej}{inflight}; "
              f"{r.preemptions:,} preemptions; {r.simulated_s:,.1f} s simulated{warm}")
    t.add_row("throughput", serving_throughput_text(r))
    for label, text in serving_latency_rows(r):
        t.add_row(label, text)
    kv = f", KV cache {100 * r.kv_cache_utilization:.1f}% used" if r.kv_cache_utilization is not None else ""
    sat = "-" if r.saturation is None else f"{100 * r.saturation:.1f}%"
    mbu = "" if r.mbu is None else f", MBU {100 * r.mbu:.1f}% (decode bytes / memory bandwidth)"
    t.add_row("utilization", f"saturation {sat} (load ÷ capacity){mbu}; GPU busy (DCGM-style, any kernel running) "
              f"{100 * r.gpu_utilization:.1f}%{kv}; MFU {100 * r.mfu:.1f}% "
              "(model FLOPs of the tokens served / peak of the GPU-hours paid)")
    if r.prefix_cache is not None:
        t.add_row("prefix cache", prefix_cache_text(r.prefix_cache))
    if r.slo_attainment is not None:
        ok = "[green]met[/]" if r.slo_met else "[bold red]missed[/]"
        t.add_row("SLO", f"{ok}: {100 * r.slo_attainment:.2f}% of requests within "
                  + ", ".join(f"{k.removesuffix('_p99_s')} ≤ {v} s" for k, v in r.slo.to_dict().items()))
    cpm = r.cost_per_million_tokens_usd
    t.add_row("replicas", f"{r.autoscaling} scaling: mean {r.replicas.mean:.2f}, max {r.replicas.max}; "
              f"{r.replica_hours:,.1f} replica-hours; cold start {r.cold_start_s:.0f} s")
    if r.replica_failures or r.spot_preemptions or r.failed:
        t.add_row("faults", f"{r.replica_failures} replica failures, {r.spot_preemptions} spot preemptions, "
                  f"{r.retries} retries, {r.failed} requests failed after retries")
    t.add_row("cost", f"{usd_per_hour(r.usd_per_hour)} on average ({usd_per_month(r.usd_per_hour)}) at "
              f"{usd(r.usd_per_gpu_hour)}/GPU-h ({r.price_source}); {usd(r.cost_usd)} for this run"
              + (f"; {usd(cpm)} per million output tokens" if cpm is not None else "")
              + (f"; {usd(r.cost_per_million_items_usd)} per million {r.item}s"
                 if r.cost_per_million_items_usd is not None else ""))
    t.add_row("energy", f"{r.energy_kwh:,.2f} kWh")
    for name, v in (r.services or {}).items():
        lat = (f"p50 {v.latency_p50_s * 1e3:,.1f} · p99 {v.latency_p99_s * 1e3:,.1f} ms"
               if v.latency_p50_s and v.latency_p99_s is not None else "-")
        t.add_row(f"service {name}", f"{v.reached:,} reached, {v.cache_hits:,} from cache; {lat}; "
                  f"GPU busy {100 * v.gpu_utilization:.1f}%; {usd(v.cost_usd)}")
    for w in r.warnings:
        t.add_row("[yellow]warning[/]", w)
    t.print(out)


@app.command()
@user_errors
def serve(scenario: Path, set_: SetOpt = None, as_json: JsonOpt = False, html: HtmlOpt = None,
          out_path: ServeOutOpt = None, timeseries_out: TimeseriesOpt = None, progress: ProgressOpt = None,
          force: ForceOpt = False) -> None:
    """Simulate a serving scenario: latency percentiles, throughput, utilization, SLO attainment and cost
    (a multi_model scenario: per deployment on one GPU pool, and the pool's cost)."""
    _simulate(scenario, set_, "serving", as_json=as_json, html=html, out_path=out_path, timeseries_out=timeseries_out,
              progress=progress, force=force)


@app.command()
@user_errors
def sweep(
    scenario: Path,
    grid: Annotated[list[str] | None, typer.Option("--grid", help="KEY=V1,V2,... (repeat for a product)")] = None,
    layouts: Annotated[bool, typer.Option("--layouts", help="training: every valid TP/PP/DP/micro-batch/"
                                                             "recompute/ZeRO layout")] = False,
    layouts_full: Annotated[bool, typer.Option("--layouts-full", help="--layouts plus context parallelism and "
                                                                       "interleaved virtual stages")] = False,
    random: Annotated[int | None, typer.Option("--random", help="evaluate N configurations drawn at random")] = None,
    objective: Annotated[str | None, typer.Option("--objective", help="column to minimise (max:COL to maximise)")] = None,
    constraint: Annotated[list[str] | None, typer.Option("--constraint", help="e.g. 'ttft_p99_s<=0.5'")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local, ray or ray:ADDRESS")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", help="local processes (default: all cores)")] = None,
    max_rate: Annotated[bool, typer.Option("--max-rate", help="serving: bisect the highest rate meeting the SLO")] = False,
    out_path: Annotated[Path | None, typer.Option("--out", help="save the table (.parquet or .csv)")] = None,
    set_: SetOpt = None, as_json: JsonOpt = False, html: HtmlOpt = None, seed: int = 0, progress: ProgressOpt = None,
    force: ForceOpt = False,
) -> None:
    """Search configurations: rank by an objective under constraints, with the Pareto frontier."""
    from simulator.files import check_writable, write_atomic
    from simulator.scenario import load_scenario
    from simulator.sweep import SweepInterrupted, parse_grid
    from simulator.sweep import sweep as run_sweep
    from simulator.workbound import allow_large

    from .progress import bar, wanted

    if out_path:   # checked before the run: a bad path must not lose every result
        check_writable(out_path, "--out", suffixes=(".parquet", ".csv"))
    if html:
        check_writable(html, "--html", suffixes=(".html", ".htm"))
    sc = load_scenario(scenario, set_)
    try:
        with bar(err, "max-rate search" if max_rate else "sweep", enabled=wanted(err, as_json=as_json, flag=progress),
                 unit="configurations") as update, (allow_large() if force else contextlib.nullcontext()):
            r = run_sweep(sc, grid=parse_grid(grid), layouts="full" if layouts_full else layouts, random=random,
                          objective=objective, constraints=constraint, executor=executor, workers=workers,
                          max_rate=max_rate, seed=seed, progress=update)
    except SweepInterrupted as stop:   # Ctrl-C: queued work cancelled; write what finished, marked partial
        if stop.result is not None:
            if out_path:
                stop.result.save(str(out_path))
            if html:
                write_atomic(html, stop.result.html(), "--html")
        done = len(stop.result.frame) if stop.result is not None else 0
        where = ", ".join(str(p) for p in (out_path, html) if p) if done else ""
        err.print(f"{done} of {stop.planned} configurations finished"
                  + (f"; partial results written to {where}" if where else ""), highlight=False)
        raise
    if out_path:
        r.save(str(out_path))
    if html:
        write_atomic(html, r.html(), "--html")
        if not as_json:
            err.print(f"report written to {html}")
    if as_json:
        print(r.to_json())
        return
    f = r.frame
    ranked = f[f["rank"].notna()].sort_values("rank")
    metrics = [c for c in (r.objective, r.x, r.y, "mfu", "memory_gib", "slo_attainment", "max_rate_rps",
                           *(("output_tokens_per_s", "weights_gib_per_gpu", "kv_cache_tokens")
                             if "precision" in str(f["config"].iloc[0]) else ()))
               if c in f and c not in ("config",)]
    metrics = list(dict.fromkeys(metrics))
    if ranked.empty:
        err.print(f"sweep of {scenario}: none of {len(f)} configurations ranked", highlight=False)
    else:
        print_table(out, [Col("#", "num"), Col("configuration"), *(Col(c, "num") for c in metrics)],
                    [[str(row["rank"]), row["config"], *(metric(c, row[c]) for c in metrics)]
                     for _, row in ranked.head(15).iterrows()],
                    title=f"sweep of {scenario}: {len(f)} configurations, {int(f['feasible'].sum())} feasible, "
                          f"{int(f['meets_constraints'].sum())} meet the constraints; "
                          f"{'max' if r.maximize else 'min'} {r.objective}")
    if r.best is None:
        err.print("[bold red]no configuration meets the constraints[/]")
    errors = f.loc[~f["feasible"].astype(bool), "error"].dropna()
    if len(errors):
        counts = errors.value_counts(sort=True)
        err.print(f"{len(errors)} of {len(f)} configurations infeasible or invalid"
                  + ("" if out_path else " (--out FILE.csv saves every row with its error)") + ":",
                  highlight=False, markup=False)
        for text, n in counts.head(5).items():
            err.print(f"  {n} × {text}", highlight=False, markup=False)
        if len(counts) > 5:
            err.print(f"  ... and {len(counts) - 5} other errors", highlight=False)


@app.command("calibrate")
@user_errors
def calibrate_cmd(
    device: Annotated[str, typer.Option("--device", help="cuda or cpu")] = "cuda",
    model: Annotated[str | None, typer.Option("--model", help="catalog model (or HF config.json) to calibrate for")] = None,
    module: Annotated[str | None, typer.Option("--module", help="pkg.mod:factory returning an nn.Module")] = None,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="with --module: e.g. 8,3,224,224")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="bf16, fp16, fp8 or fp32")] = "bf16",
    base: Annotated[str | None, typer.Option("--base", help="spec profile of this GPU (default: matched by name)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a smaller grid (under 2 minutes on an H100)")] = False,
    out_path: Annotated[Path | None, typer.Option("--out", help="profile to write")] = None,
    validate: Annotated[bool, typer.Option("--validate", help="run a real training step and compare with the "
                                                             "simulator's prediction from the new profile")] = False,
) -> None:
    """Measure this GPU (or CPU) with torch microbenchmarks and write a calibrated hardware profile."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise CapsimError("calibration needs torch: pip install 'capsim[calibrate]' (on a machine without a GPU "
                          "pin the CPU wheel: pip install torch==2.13.0)")
    from calibrate.cli import run_calibration  # the calibrate package is the one that imports torch

    run_calibration(device=device, model=model, module=module, input_shape=input_shape, dtype=dtype, base=base,
                    quick=quick, out_path=out_path, validate=validate, console=out, err=err)


@app.command()
@user_errors
def tui(scenario: Annotated[Path | None, typer.Argument(help="scenario to open (default: an example)")] = None) -> None:
    """Explore scenarios in a terminal UI: edit, run, compare, export."""
    from tui import run_tui

    run_tui(str(scenario) if scenario else None)


@app.command()
@user_errors
def init(kind: Annotated[str, typer.Argument(help="train or serve")],
         model: Annotated[str | None, typer.Option("--model", help="catalog model (default llama-3.1-8b)")] = None,
         hardware: Annotated[str | None, typer.Option("--hardware", help="GPU profile (default h100-sxm)")] = None,
         out_path: Annotated[Path | None, typer.Option("--out", help="file to write (default KIND.yaml; - for stdout)")]
         = None) -> None:
    """Write a commented scenario to start from (capsim init serve --model qwen3-32b --hardware h200)."""
    from .scaffold import scenario_template

    path = out_path or Path(f"{kind}.yaml")
    text = scenario_template(kind, model=model, hardware=hardware, path=str(path))
    if str(path) == "-":
        sys.stdout.write(text)
        return
    if path.exists():
        raise CapsimError(f"{path} exists; choose another name with --out (capsim init never overwrites a file)")
    path.write_text(text, encoding="utf-8")
    err.print(f"wrote {path}; run it with: capsim {'train' if kind == 'train' else 'serve'} {path}", highlight=False)


@app.command()
@user_errors
def keys(prefix: Annotated[str, typer.Argument(help="only keys starting with this, e.g. replica. or workload.arrival")] = "",
         kind: Annotated[str | None, typer.Option("--kind", help=(
             "training, serving or multi_model (default: all)"))] = None,
         as_json: JsonOpt = False) -> None:
    """Every scenario key: its type, default (or the engine preset's rule), allowed values and description."""
    from .scaffold import print_keys

    if kind not in (None, "training", "serving", "multi_model"):
        raise CapsimError(f"--kind {kind!r}: choose training, serving or multi_model")
    print_keys(out, prefix, kind, as_json=as_json)


@app.command()
@user_errors
def schema(out_path: Annotated[Path | None, typer.Option("--out", help="file to write (default: stdout)")] = None) -> None:
    """Write the JSON Schema of a scenario file (for editors: YAML language server's $schema)."""
    from .scaffold import schema_text

    text = schema_text()
    if out_path is None:
        sys.stdout.write(text)
    else:
        out_path.write_text(text, encoding="utf-8")
        err.print(f"wrote {out_path}", highlight=False)


def _version(value: bool) -> None:
    if value:
        from simulator.version import __version__

        print(f"capsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """capsim: capacity-planning and cost simulator for NN training and serving clusters."""


from .plan_cmd import plan_app  # noqa: E402  (the group's commands define themselves on it)

app.add_typer(plan_app, name="plan")


def main() -> None:
    # pydantic looks for plugins (e.g. logfire's) through every installed package's entry points
    # when it builds its first model, ~15 ms of each command; the command line has no use for them.
    # An environment that sets PYDANTIC_DISABLE_PLUGINS (even to "", which enables them) is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from .startup import one_command

    one_command()         # this process is one command: loading may pause the garbage collector
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
