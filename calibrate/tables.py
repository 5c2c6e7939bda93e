"""A calibration's measurements as a measured profile: the folder of kernel tables the importer writes too.

The format is ``simulator/silicon/format.py`` (documented in ``hardware_profiles/MEASURED.md``): a
``tables.yaml`` manifest and one gzipped CSV per table, times in µs and sizes in bytes. Calibrated
tables carry engine ``torch`` at the torch version that timed them (the cost model lets them stand
in for any serving engine on this device), except collectives, which are NCCL's and carry its
version, as imported NCCL tables do. A calibrated profile and an imported one are read alike.

``simulator.silicon.format`` is imported when the tables are written, not when this module is: at
import time ``calibrate`` needs only torch, numpy and PyYAML (tests/test_boundaries.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.version import __version__

ENGINE = "torch"
TIMING = {"cuda": "CUDA events", "cpu": "wall clock (time.perf_counter)"}


def table_rows(prof: dict[str, Any]) -> list[tuple[str, str, str, list[tuple[Any, ...]], str]]:
    """(kind, engine, engine_version, rows in the format's column order, what was timed) for each
    table a calibration document's measurements fill; kinds with no measurement are absent."""
    cal = prof["calibrated"]
    meas = cal["measurements"]
    dt = cal["timed_dtype"]
    torch_v = str(cal["torch"])
    out: list[tuple[str, str, str, list[tuple[Any, ...]], str]] = []
    gemm = [(dt, int(r["m"]), int(r["n"]), int(r["k"]), r["seconds"] * 1e6) for r in meas["gemm"]]
    out.append(("gemm", ENGINE, torch_v, sorted(gemm),
                f"torch.matmul(a[m, k], b[k, n]) in {dt}, every (m, n, k) of the grid"))
    memory = [("copy", int(r["bytes"]), r["seconds"] * 1e6) for r in meas["memory"]]
    what = "copy: Tensor.copy_ of an fp32 buffer (bytes: read + written)"
    if meas.get("add"):
        memory += [("elementwise", int(r["bytes"]), r["seconds"] * 1e6) for r in meas["add"]]
        what += f"; elementwise: torch.add(x, y, out=z) in {dt} (bytes: two reads + one write)"
    if meas.get("elementwise"):
        memory += [("norm", int(r["bytes"]), r["seconds"] * 1e6) for r in meas["elementwise"]]
        what += (f"; norm: torch.nn.LayerNorm over [tokens, {meas['elementwise'][0]['hidden']}] in {dt} "
                 "(bytes: input read + output written)")
    if meas.get("softmax"):
        memory += [("softmax", int(r["bytes"]), r["seconds"] * 1e6) for r in meas["softmax"]]
        what += (f"; softmax: torch.softmax over [{meas['softmax'][0]['heads']}, seq, seq] scores in {dt} "
                 "(bytes: scores read + probabilities written)")
    out.append(("memory", ENGINE, torch_v, sorted(memory), what))
    context: list[tuple[Any, ...]] = []
    generation: list[tuple[Any, ...]] = []
    for a in meas.get("attention") or []:
        key = (dt, dt, int(a["heads"]), int(a["kv_heads"]), int(a["head_dim"]), 0)
        context += [(*key, int(r["batch"]), int(r["seq"]), r["fwd_s"] * 1e6) for r in a["prefill"]]
        generation += [(*key, int(r["batch"]), int(r["kv_len"]), r["seconds"] * 1e6) for r in a["decode"]]
    sdpa = "torch.nn.functional.scaled_dot_product_attention (KV heads read in place, enable_gqa)"
    if context:
        out.append(("context_attention", ENGINE, torch_v, sorted(context),
                    f"{sdpa}, causal, forward only, batch prompts of seq tokens, no cached prefix"))
    if generation:
        out.append(("generation_attention", ENGINE, torch_v, sorted(generation),
                    f"{sdpa}, one query per sequence against kv_len cached tokens"))
    coll = meas.get("collectives") or {}
    if coll.get("rows"):
        n, per_node = int(coll["world_size"]), int(coll["gpus_per_node"])
        rows = [(r["op"], "nccl", r["dtype"], n, per_node, int(r["bytes"]), r["seconds"] * 1e6) for r in coll["rows"]]
        out.append(("collective", "nccl", str(coll["nccl"]), sorted(rows),
                    f"torch.distributed.all_reduce (NCCL) over {n} GPUs, {per_node} per node"))
    return out


def manifest_notes(prof: dict[str, Any]) -> list[str]:
    cal = prof["calibrated"]
    meas = cal["measurements"]
    timing = TIMING.get("cuda" if cal.get("cuda") else "cpu", "wall clock")
    notes = [f"timing: {timing}; median of 5 trials after 2 warm-up calls, each trial repeating the call "
             "for at least 2 ms; the raw measurements with their spread are in the profile YAML's calibrated block"]
    if cal["dtype"] != cal["timed_dtype"]:
        notes.append(f"--dtype {cal['dtype']} was timed as {cal['timed_dtype']} (the dtype column says what ran)")
    if meas.get("attention"):
        notes.append("attention: full attention only (window 0); sliding-window layers fall back to the roofline")
    coll = meas.get("collectives") or {}
    if not coll.get("rows"):
        notes.append(f"no collective table: {coll.get('skipped', 'collectives not measured')}")
    notes.append("no moe table: calibration does not time fused MoE kernels (expert layers are timed only "
                 "inside the whole-model measurements)")
    notes += [f"skipped: {s}" for s in cal.get("skipped") or []]
    return notes


def write_tables(prof: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write ``folder`` (created, its old tables removed) and return the manifest written."""
    from simulator.silicon.format import FORMAT, table_file, write_manifest, write_table

    cal = prof["calibrated"]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv.gz"):
        old.unlink()
    tables = []
    for kind, engine, version, rows, what in table_rows(prof):
        name = table_file(kind, engine, version)
        write_table(folder / name, kind, rows)
        tables.append({"kind": kind, "file": name, "engine": engine, "engine_version": version, "rows": len(rows),
                       "command": cal["command"], "timed": what})
    source = {"name": "capsim calibrate", "version": __version__, "date": cal["date"], "host": cal["host"],
              "device": cal["device"], "torch": str(cal["torch"]), "cuda": cal.get("cuda")}
    if cal.get("driver"):
        source["driver"] = cal["driver"]
    manifest = {"format": FORMAT, "profile": prof["name"], "device": cal["device"], "source": source,
                "command": cal["command"], "notes": manifest_notes(prof), "tables": tables}
    write_manifest(folder, manifest)
    return manifest
