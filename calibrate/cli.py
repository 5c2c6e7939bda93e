"""``capsim calibrate``: catalog shapes in, calibrated profile out, optional validation.

Resolves the model and the base spec profile through the simulator, runs the measurements of
``calibrate.run``, writes the profile under ``hardware_profiles/calibrated/`` (or ``--out``), and for
``--validate`` compares real training steps with the simulator's prediction from the new profile.
The simulator is imported inside the functions, so importing this package still needs only torch,
numpy and PyYAML; the simulator itself never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .run import calibrate, device_info, write_profile

CALIBRATED_DIR = Path(__file__).resolve().parents[1] / "hardware_profiles" / "calibrated"


def _base_for(device_name: str) -> str | None:
    """The spec profile whose GPU matches the device name (H100 80GB HBM3 → h100-sxm, ...)."""
    from simulator.hardware import get_profile, profile_paths

    name = device_name.lower()
    best = None
    for key in profile_paths():
        if key.startswith("calibrated/"):
            continue
        gpu = get_profile(key).gpu.lower().replace(" sxm", "").replace(" pcie", "")
        if gpu.split()[0] in name:
            if ("pcie" in key) == ("pcie" in name) or best is None:
                best = key
    return best


def run_calibration(*, device: str, model: str | None, module: str | None, input_shape: str | None, dtype: str,
                    base: str | None, quick: bool, out_path: Path | None, validate: bool, console: Any,
                    err: Any) -> Path:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from simulator.catalog import get_model
    from simulator.errors import CapsimError
    from simulator.files import check_writable
    from simulator.hardware import get_profile

    if device == "cuda" and not torch.cuda.is_available():
        raise CapsimError("no CUDA device visible to torch; run on the GPU machine or pass --device cpu")
    if device not in ("cuda", "cpu"):
        raise CapsimError(f"--device {device!r}: use cuda or cpu")
    if module and not input_shape:
        raise CapsimError("--module needs --input-shape (e.g. 8,3,224,224)")
    shape_t = _input_shape(input_shape) if input_shape else None
    if module:
        _check_module(module)       # before any benchmark: a typo fails in a second, not after minutes
    if out_path is not None:
        check_writable(out_path, "--out", suffixes=(".yaml", ".yml"), make_folder=True)
    spec = get_model(model) if model else None
    # plain data for calibrate/: the flat keys, and every layer's description (LayerSpec.to_dict)
    shapes = ({**spec.model_dump(mode="json", exclude={"source"}),
               "layer_specs": [layer.to_dict() for layer in spec.layer_specs()]} if spec else None)
    if dtype not in ("fp32", "bf16", "fp16", "fp8"):
        raise CapsimError(f"--dtype {dtype!r}: use bf16, fp16, fp8 or fp32")
    base_doc = None
    if device == "cuda":
        info = device_info(torch.device("cuda"))
        key = base or _base_for(info["device"])
        if key is None:
            raise CapsimError(f"no spec profile matches {info['device']!r}; pass --base with the closest one")
        base_doc = get_profile(key).model_dump(exclude_none=True)
    shape_t = tuple(int(x) for x in input_shape.split(",")) if input_shape else None
    with Progress(TextColumn("{task.description:<32}"), BarColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("calibrating", total=1.0)
        prof = calibrate(device=device, shapes=shapes, dtype=dtype, quick=quick, base_profile=base_doc, module=module,
                         input_shape=shape_t, progress=lambda what, f: bar.update(task, completed=f, description=what))
    name = profile_name(prof["name"], spec.name if spec is not None else None)
    prof["name"] = name
    if base_doc is not None:
        prof["calibrated"]["base_profile"] = base_doc["name"]
    path = out_path or CALIBRATED_DIR / f"{name}.yaml"
    write_profile(prof, path)
    meas, cal = prof["calibrated"]["measurements"], prof["calibrated"]
    console.print(f"wrote {path} and its kernel tables {path.parent / prof['measured']}/: "
                  f"best GEMM {max(r['tflops'] for r in meas['gemm']):.3f} TFLOP/s ({cal['timed_dtype']}), "
                  f"copy {max(r['gb_s'] for r in meas['memory']):.1f} GB/s, "
                  f"kernel {prof['efficiency']['kernel_latency_us']:.1f} µs, {cal['wall_s']:.0f} s")
    if validate:
        if spec is None or model is None:
            raise CapsimError("--validate needs --model (a catalog model the simulator can predict)")
        report = validate_profile(path, model, device, dtype, prof)
        for line in report["lines"]:
            console.print(line)
        prof["calibrated"]["validation"] = report["rows"]
        write_profile(prof, path)
    return path


def profile_name(measured: str, model: str | None) -> str:
    """The calibrated profile's name (and file stem): the device's, with the model's when given. The
    model's name comes from the user (a config.json's _name_or_path, a folder such as ../../x), so only
    a safe file name is made of it: the profile stays in hardware_profiles/calibrated/."""
    from simulator.files import safe_name

    return measured if not model else f"{measured.removesuffix('-cal')}-{safe_name(model, default='model')}-cal"


def _input_shape(text: str) -> tuple[int, ...]:
    from simulator.errors import CapsimError

    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 or d > 1_000_000 for d in shape):
        raise CapsimError(f"--input-shape {text!r}: expected positive integers separated by commas, e.g. 8,3,224,224")
    return shape


def _check_module(module: str) -> None:
    """``pkg.mod:factory`` names an importable module and a callable in it (importing it runs the
    user's code, as calibrating with it will; README: calibrate --module)."""
    import importlib

    from simulator.errors import CapsimError

    mod, _, attr = module.partition(":")
    if not mod or not all(p.isidentifier() for p in mod.split(".")) or (attr and not attr.isidentifier()):
        raise CapsimError(f"--module {module!r}: expected pkg.module:factory (a function returning an nn.Module)")
    try:
        factory = getattr(importlib.import_module(mod), attr or "model")
    except ImportError as e:
        raise CapsimError(f"--module {module!r}: cannot import {mod!r}: {e}") from None
    except AttributeError:
        raise CapsimError(f"--module {module!r}: {mod!r} has no {attr or 'model'!r}") from None
    if not callable(factory):
        raise CapsimError(f"--module {module!r}: {attr or 'model'!r} is not callable")


def validate_profile(path: Path, model: str, device: str, dtype: str, prof: dict[str, Any]) -> dict[str, Any]:
    """Predict each measured training step (batch × seq on one device) from the calibrated profile and
    print measured vs predicted time (and peak memory on a GPU)."""
    from simulator.scenario import TrainingScenario, parse_scenario
    from simulator.training import simulate_training

    rows, lines = [], []
    for m in prof["calibrated"]["measurements"]["model"]:
        if m.get("mode") != "train_step":
            continue
        sc = parse_scenario({"kind": "training", "model": model, "hardware": str(path),
                             "cluster": {"nodes": 1, "gpus_per_node": 1},
                             "training": {"seq_len": m["seq"], "global_batch": m["batch"], "micro_batch": m["batch"],
                                          "precision": "fp32" if dtype == "fp32" else dtype,
                                          "grad_precision": "fp32", "recompute": "none"}})
        assert isinstance(sc, TrainingScenario)
        r = simulate_training(sc)
        pred = r.iteration_time_s
        err_pct = 100 * (pred - m["seconds"]) / m["seconds"]
        row = {"batch": m["batch"], "seq": m["seq"], "measured_s": m["seconds"], "predicted_s": pred,
               "error_pct": round(err_pct, 1)}
        line = (f"train step batch {m['batch']} seq {m['seq']}: measured {m['seconds'] * 1e3:.2f} ms, "
                f"predicted {pred * 1e3:.2f} ms ({err_pct:+.1f}%)")
        if m.get("peak_memory_bytes"):
            pm = r.memory_per_gpu_gib.total * 2**30
            row.update({"measured_peak_gib": m["peak_memory_bytes"] / 2**30, "predicted_peak_gib": pm / 2**30,
                        "memory_error_pct": round(100 * (pm - m["peak_memory_bytes"]) / m["peak_memory_bytes"], 1)})
            line += f"; peak memory measured {row['measured_peak_gib']:.2f} GiB, predicted {row['predicted_peak_gib']:.2f}"
        rows.append(row)
        lines.append(line)
    del device
    return {"rows": rows, "lines": lines}
