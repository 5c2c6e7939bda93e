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

import numpy as np
import yaml

from ..errors import CapsimError
from ..files import parse_yaml

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
    # MLA attention (DeepSeek-V3's shape: a 512-element latent and 64 RoPE dims per token, 128-dim nope and
    # value heads) of ``batch`` prompts of ``seq`` tokens, causal, no cached prefix; heads per GPU
    "context_mla": ("dtype", "kv_dtype", "heads", "batch", "seq", "time_us"),
    # one MLA decode token (the absorbed form over the cached latent) for each of ``batch`` sequences,
    # each attending to ``kv_len`` cached tokens; heads per GPU
    "generation_mla": ("dtype", "kv_dtype", "heads", "batch", "kv_len", "time_us"),
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
KEYS = {"gemm": 1, "context_attention": 6, "generation_attention": 6, "context_mla": 3, "generation_mla": 3,
        "collective": 5, "moe": 8, "memory": 1, "quantize": 2}
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


def _read_with_numpy(path: Path, kind: str) -> dict[str, list[Any]] | None:
    """The columns through numpy's C parser (``np.loadtxt``: about 4x faster than the csv module on a
    100k-row GEMM table, and it parses a number exactly as ``float()`` does; tests/test_silicon.py
    checks every committed table), or None where the file is not a clean table (a quote, a short or
    long row, a value that is not a number): the csv-module reader below then names the problem."""
    cols = COLUMNS[kind]
    try:
        raw = gzip.decompress(path.read_bytes()).decode()
    except (OSError, EOFError, ValueError):      # gzip.BadGzipFile and UnicodeDecodeError are ValueErrors
        return None
    head, _, body = raw.partition("\n")
    rows = body.count("\n") + (0 if body.endswith("\n") or not body else 1)
    if tuple(head.split(",")) != cols or not rows or '"' in body or "\r" in raw \
            or body.count(",") != rows * (len(cols) - 1) or "\n\n" in body:
        return None
    out: dict[str, list[Any]] = {}
    try:
        for want, dtype in ((False, float), (True, str)):
            idx = [i for i, c in enumerate(cols) if (c in TEXT) == want]
            if not idx:
                continue
            a = np.loadtxt(io.StringIO(body), delimiter=",", usecols=idx, dtype=dtype, comments=None, ndmin=2)
            for j, i in enumerate(idx):
                out[cols[i]] = a[:, j].tolist()
    except ValueError:
        return None
    return {c: out[c] for c in cols}


def read_rows(path: Path, kind: str) -> dict[str, list[Any]]:
    """Columns of one table file: text columns as str lists, numbers as float lists."""
    cols = COLUMNS[kind]
    fast = _read_with_numpy(path, kind)
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
        doc = parse_yaml(path.read_text())
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
