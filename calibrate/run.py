"""Run the calibration and assemble the profile: the base (spec-sheet) profile of this device, with
its efficiency replaced by what was measured, plus provenance and the raw measurements."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from simulator.layers import AttentionSpec, LayerSpec, MLPSpec

from . import micro
from .model import build, layer_specs, measure_decode, measure_model
from .tables import write_tables

Progress = Callable[[str, float], None] | None   # (what, fraction done)
# GEMM shapes to time without a model (--module, or nothing): a 1024-wide GELU layer
DEFAULT_LAYER = LayerSpec(1024, AttentionSpec(16, 16, 64), MLPSpec(4096))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 16.0


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": str(torch.__version__), "python": sys.version.split()[0], "host": platform.node(),
                            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "command": _command()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update({"device": p.name, "memory_gib": p.total_memory / 2**30, "sms": p.multi_processor_count,
                     "cuda": str(torch.version.cuda), "driver": _driver()})
    else:
        info.update({"device": _cpu_name(), "memory_gib": _mem_gib(), "threads": torch.get_num_threads()})
    return info


def _command() -> str:
    """This process's command line, its program named as typed (``python -m capsim``, not the path of
    ``capsim/__main__.py``)."""
    prog = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    head = f"python -m {prog.parent.name}" if prog.name == "__main__.py" else prog.name
    return " ".join([head, *sys.argv[1:]])


def _driver() -> str | None:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    except (OSError, IndexError):
        return None


def cpu_base_profile(info: dict[str, Any], best_tflops: dict[str, float], copy_gb_s: float) -> dict[str, Any]:
    """A CPU has no spec sheet here: its 'peak' is the best GEMM measured, its bandwidth the best copy."""
    return {
        "name": "cpu", "gpu": info["device"], "memory_gib": round(info["memory_gib"], 2),
        "memory_bandwidth_tbps": copy_gb_s / 1e3, "peak_tflops": best_tflops, "num_sms": info["threads"],
        "intra_node": {"link": "none", "busbw_gb_s": copy_gb_s / 2},
        "inter_node": {"link": "ethernet", "busbw_gb_s": 1.25},
        "source": {"peak_tflops": "measured: best GEMM of the calibration grid",
                   "memory_bandwidth_tbps": "measured: best copy bandwidth of the calibration",
                   "intra_node": "not measured (one device); half the copy bandwidth",
                   "inter_node": "assumed: 10 Gb/s Ethernet"},
    }


QUICK_BUDGET_S = 120.0     # --quick: under 2 minutes
FULL_BUDGET_S = 900.0      # full: under 15 minutes


def calibrate(*, device: str = "cpu", shapes: dict[str, Any] | None = None, dtype: str = "fp32", quick: bool = False,
              base_profile: dict[str, Any] | None = None, name: str | None = None, module: str | None = None,
              input_shape: tuple[int, ...] | None = None, progress: Progress = None,
              budget_s: float | None = None) -> dict[str, Any]:
    """Measure this device and return a hardware profile document (YAML-ready).

    Within ``budget_s`` (default 2 minutes quick, 15 minutes full): when the budget runs out the
    remaining GEMM shapes and the optional stages are skipped, and the profile says which."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    tdt = micro.DTYPES[dtype]
    t_start = time.perf_counter()
    deadline = t_start + (budget_s if budget_s is not None else QUICK_BUDGET_S if quick else FULL_BUDGET_S)
    skipped: list[str] = []

    def over() -> bool:
        return time.perf_counter() > deadline

    info = device_info(dev)
    shapes = shapes or {}
    layers = layer_specs(shapes) if shapes else [DEFAULT_LAYER]
    gemms = micro.gemm_shapes(layers, quick, dev)
    total = len(gemms) + 32
    done = [0]

    def step(what: str) -> None:
        done[0] += 1
        if progress:
            progress(what, min(done[0] / total, 0.99))

    lat = micro.bench_latency(dev)
    disp = micro.bench_dispatch(dev)
    optim = micro.bench_optimizer(dev)
    step("kernel latency")
    g = micro.bench_gemm(gemms, tdt, dev, step, stop=over)
    if len(g) < len(gemms):
        skipped.append(f"{len(gemms) - len(g)} GEMM shapes (time budget)")
    mem = micro.bench_memory(dev, quick, step)
    meas: dict[str, Any] = {"gemm": g, "memory": mem, "add": micro.bench_add(dev, tdt, quick, step), "latency": lat,
                            "dispatch": disp, "optimizer": optim}
    if shapes and not over():
        meas["elementwise"] = micro.bench_elementwise(dev, tdt, layers[0].hidden, quick)
        meas["softmax"] = micro.bench_softmax(dev, tdt, layers[0].attention.heads, quick)
        # one benchmark per attention shape (heads, KV heads, head size) among the layers
        heads = {(a.heads, a.kv_heads, a.head_dim): a for a in (layer.attention for layer in layers)}
        meas["attention"] = [micro.bench_attention(a, int(shapes.get("max_positions") or 2048), tdt, dev, quick,
                                                   info["memory_gib"] * 2**30, step) for a in heads.values()]
    elif shapes:
        skipped.append("attention and elementwise (time budget)")
    meas["collectives"] = micro.bench_collectives(dev)
    model_rows: list[dict[str, Any]] = []
    if (shapes or module) and over():
        skipped.append("model measurements (time budget)")
    elif shapes or module:
        torch.manual_seed(0)
        model = build(shapes or None, dev, tdt, module)
        seq = min(shapes.get("max_positions", 512), 512 if dev.type == "cuda" else 128) if shapes else 0
        for b in ([1, 4] if quick else [1, 4, 8]):
            for train in (False, True):
                model_rows.append(measure_model(model, shapes, dev, batch=b, seq=seq, train=train, input_shape=input_shape))
                step(f"model batch {b} {'train' if train else 'forward'}")
        if shapes and shapes.get("architecture", "decoder") == "decoder":
            for b in ([1, 8] if quick else [1, 8, 32]):
                model_rows.append({"mode": "decode_step", **measure_decode(model, shapes, dev, batch=b, context=seq)})
                step(f"decode batch {b}")
        del model
    meas["model"] = model_rows

    best = max(r["tflops"] for r in g)
    copy_gb_s = max(r["gb_s"] for r in mem)
    if base_profile is None:
        prof = cpu_base_profile(info, {dtype: float(f"{best:.4g}")}, copy_gb_s)
    else:
        prof = {k: v for k, v in base_profile.items() if k not in ("efficiency", "calibrated")}
        prof.setdefault("source", {})
    peak = float(prof["peak_tflops"].get(dtype) or max(prof["peak_tflops"].values()))
    # the kernel tables themselves go to the measured-profile folder (write_profile); the profile keeps
    # the scalar efficiencies the roofline uses outside the tables' grid
    eff: dict[str, Any] = {
        "gemm_max": {dtype: round(min(best / peak, 1.0), 4)},
        "memory": round(min(copy_gb_s / (prof["memory_bandwidth_tbps"] * 1e3), 1.0), 4),
        "kernel_latency_us": round(lat["kernel_us"], 3),
    }
    att = [r for r in (meas["attention"][0]["prefill"] if meas.get("attention") else []) if "bwd_s" in r]
    if att:
        a = att[-1]               # one sequence, the longest
        eff["attention_fwd"] = round(min(a["fwd_tflops"] / best, 1.5), 4)
        eff["attention_bwd"] = round(min(a["bwd_tflops"] / best, 1.5), 4)
    # each memory-bound kernel class at its own measured share (costmodel.ops.memory_kind): the
    # residual add for elementwise kernels, LayerNorm for norms, softmax for attention scores
    def share(rows: list[dict[str, float]]) -> float:
        return round(min(rows[-1]["gb_s"] / (prof["memory_bandwidth_tbps"] * 1e3), 1.0), 4)

    if meas.get("add"):
        eff["elementwise"] = share(meas["add"])
    classes = {"norm": meas.get("elementwise"), "softmax": meas.get("softmax")}
    if any(classes.values()):
        eff["memory_kernels"] = {k: share(v) for k, v in classes.items() if v}
    eff["dispatch_us"] = round(disp["per_kernel_us"], 3)
    eff["optimizer_us_per_tensor"] = round(optim["per_tensor_us"], 3)
    prof["efficiency"] = eff
    prof["name"] = name or f"{prof['name']}-cal"
    prof["source"] = {**prof.get("source", {}), "efficiency": f"measured by capsim calibrate on {info['device']}"}
    spread = float(np.median([r["spread"] for r in g]))
    prof["calibrated"] = {**info, "dtype": dtype, "timed_dtype": micro.timed_dtype(dtype, dev), "quick": quick,
                          "wall_s": round(time.perf_counter() - t_start, 1), "budget_s": round(deadline - t_start, 1),
                          "skipped": skipped, "gemm_median_spread": round(spread, 4), "measurements": meas,
                          "env": {"threads": os.environ.get("OMP_NUM_THREADS")}}
    if progress:
        progress("done", 1.0)
    return prof


def write_profile(prof: dict[str, Any], path: str | Path) -> Path:
    """Write the profile YAML at ``path`` and, beside it, its kernel tables: the folder
    ``<stem>.tables/`` in the measured-profile format (``calibrate.tables``), which the profile's
    ``measured:`` names relative to the YAML's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent / f"{path.stem}.tables"
    write_tables(prof, folder)
    doc = {**prof, "measured": folder.name}
    # 'measured' right after the efficiency it complements, not after the raw measurements
    order = [k for k in prof if k != "measured"]
    at = order.index("efficiency") + 1 if "efficiency" in order else len(order)
    doc = {k: doc[k] for k in [*order[:at], "measured", *order[at:]]}
    prof["measured"] = folder.name
    header = (f"# calibrated by capsim on {prof['calibrated']['device']} at {prof['calibrated']['date']}\n"
              f"# {prof['calibrated']['command']}\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))
    return path
