"""The measured-profile format: kernel tables on disk, one layout for imported and calibrated data.

A measured profile is a folder holding ``tables.yaml`` (the manifest) and one gzipped CSV per table.
``scripts/import_silicon.py`` writes it from public measurements, ``capsim calibrate`` writes it on
the user's own GPU, and the cost model reads either the same way (``simulator.silicon.tables``).
``hardware_profiles/MEASURED.md`` documents the format for people; this module is its definition.

Times are microseconds (``time_us``) and sizes bytes, whatever the source used. Plain CSV on
purpose: numpy reads it at run time without pyarrow or pandas, and a diff shows what changed.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import CapsimError

FORMAT = "capsim-kernel-tables/1"
MANIFEST = "tables.yaml"

# Columns of each kind of table, in file order: the exact-match keys, then the size axes that are
# interpolated (see KEYS), then the measured time.
# Text columns are listed in TEXT; every other column is a number.
COLUMNS: dict[str, tuple[str, ...]] = {
    # time of one GEMM [m, k] x [k, n] in ``dtype`` (the precision vocabulary of simulator.precision)
    "gemm": ("dtype", "m", "n", "k", "time_us"),
    # prefill attention of ``batch`` prompts of ``seq`` tokens, causal, no cached prefix;
    # heads and kv_heads per GPU (after tensor parallelism); window 0 = full attention
    "context_attention": ("dtype", "kv_dtype", "heads", "kv_heads", "head_dim", "window", "batch", "seq", "time_us"),
    # one decode token for each of ``batch`` sequences, each attending to ``kv_len`` cached tokens
    "generation_attention": ("dtype", "kv_dtype", "heads", "kv_heads", "head_dim", "window", "batch", "kv_len",
                             "time_us"),
    # a collective over ``ranks`` GPUs (``gpus_per_node`` of them per node) on a ``bytes`` buffer (the
    # full, unsharded size, nccl-tests' "size"); implementation: nccl or an engine's own kernel
    "collective": ("op", "implementation", "dtype", "ranks", "gpus_per_node", "bytes", "time_us"),
    # a fused MoE layer (grouped GEMMs, routing, activation) over ``tokens`` tokens
    "moe": ("dtype", "hidden", "inter", "topk", "experts", "tp", "ep", "distribution", "tokens", "time_us"),
    # a memory-bound kernel moving ``bytes`` (reads + writes): op is copy, elementwise or norm
    "memory": ("op", "bytes", "time_us"),
    # an activation-quantization kernel of a quantized GEMM's input [m, k]: op compute_scale (the
    # dynamic per-tensor scale: an amax reduction) or scale_matrix (casting the input to ``dtype``)
    "quantize": ("op", "dtype", "m", "k", "time_us"),
}
# how many leading columns of each kind are exact-match keys; the rest before time_us are size axes
KEYS = {"gemm": 1, "context_attention": 6, "generation_attention": 6, "collective": 5, "moe": 8, "memory": 1,
        "quantize": 2}
TEXT = frozenset({"dtype", "kv_dtype", "op", "implementation", "distribution"})
KINDS = tuple(COLUMNS)


def table_file(kind: str, engine: str, version: str) -> str:
    """The conventional file name of one table: ``gemm.vllm-0.24.0.csv.gz``."""
    return f"{kind}.{engine}-{version}.csv.gz"


def write_table(path: Path, kind: str, rows: Sequence[Sequence[Any]]) -> None:
    """Write ``rows`` (in ``COLUMNS[kind]`` order) as a gzipped CSV, byte for byte reproducible."""
    cols = COLUMNS[kind]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        if len(r) != len(cols):
            raise ValueError(f"{kind} row {r!r} has {len(r)} values; columns are {', '.join(cols)}")
        w.writerow([_fmt(v) for v in r])
    # mtime=0 and no file name in the header: the same rows give the same bytes
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue().encode())


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _read_with_pandas(path: Path, kind: str) -> dict[str, list[Any]] | None:
    """The columns through pandas' C parser (2-3x faster than the csv module on a 100k-row GEMM
    table; pandas 3 parses every number exactly as ``float()`` does, and pandas 2 with ``round_trip``;
    tests/test_silicon.py checks it on the committed tables), or None where pandas is missing or the
    file is not a clean table: the csv-module reader below then names the problem."""
    try:
        import pandas as pd
    except ImportError:
        return None
    cols = COLUMNS[kind]
    try:
        text = {c: str for c in cols if c in TEXT}
        if int(pd.__version__.split(".")[0]) >= 3:
            f = pd.read_csv(path, dtype=text, keep_default_na=False, na_filter=False)
        else:
            f = pd.read_csv(path, dtype=text, keep_default_na=False, na_filter=False, float_precision="round_trip")
    except Exception:  # pandas raises several parser errors; the slow reader reports them precisely
        return None
    if tuple(f.columns) != cols or any(f[c].dtype == object for c in cols if c not in TEXT):
        return None
    return {c: f[c].tolist() if c in TEXT else f[c].astype(float).tolist() for c in cols}


def read_rows(path: Path, kind: str) -> dict[str, list[Any]]:
    """Columns of one table file: text columns as str lists, numbers as float lists."""
    cols = COLUMNS[kind]
    fast = _read_with_pandas(path, kind)
    if fast is not None:
        return fast
    try:
        with gzip.open(path, "rt", newline="") as f:
            reader = csv.reader(f)
            header = tuple(next(reader))
            if header != cols:
                raise CapsimError(f"kernel table {path}: columns {', '.join(header)}; a {kind} table has "
                                  f"{', '.join(cols)}")
            rows = list(reader)
            bad = next((n for n, row in enumerate(rows, start=2) if len(row) != len(cols)), None)
            if bad is not None:
                raise CapsimError(f"kernel table {path} line {bad}: {len(rows[bad - 2])} values, expected {len(cols)}")
            # column by column (map in C): the tables hold hundreds of thousands of values
            columns = list(zip(*rows, strict=True)) if rows else [() for _ in cols]
            data: dict[str, list[Any]] = {c: list(v) if c in TEXT else list(map(float, v))
                                          for c, v in zip(cols, columns, strict=True)}
    except (OSError, EOFError, StopIteration, ValueError) as e:
        raise CapsimError(f"kernel table {path} cannot be read ({e}); re-run the importer or calibration "
                          "that wrote it") from None
    return data


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    head = ("# capsim measured profile (format " + FORMAT + "); see hardware_profiles/MEASURED.md.\n"
            "# Written by a tool: re-run it rather than editing this file.\n")
    (folder / MANIFEST).write_text(head + yaml.safe_dump(dict(manifest), sort_keys=False, width=110))


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CapsimError(f"measured profile {folder}: cannot read {MANIFEST} ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CapsimError(f"measured profile {path}: format is {doc.get('format') if isinstance(doc, dict) else None!r}, "
                          f"this capsim reads {FORMAT!r}")
    for i, t in enumerate(doc.get("tables") or []):
        missing = [k for k in ("kind", "file", "engine", "engine_version") if k not in t]
        if missing or t.get("kind") not in COLUMNS:
            raise CapsimError(f"measured profile {path}: table {i} lacks {', '.join(missing) or 'a known kind'} "
                              f"(kinds: {', '.join(KINDS)})")
    return doc
