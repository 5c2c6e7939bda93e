"""A disk cache of built kernel-table grids, so a run does not re-parse and re-grid the same CSVs.

Parsing a gzipped table and grouping its rows into interpolation cells (``grid.Grid``) costs about
0.1 s for a 100k-row GEMM table, every run. The result depends only on the table file's bytes, the
table kind and interpolation method, and the code that parses and grids it, so it is stored once per
combination as an ``.npz`` file (plain arrays, no pickle) under ``~/.cache/capsim`` (or
``$XDG_CACHE_HOME/capsim``; ``CAPSIM_CACHE_DIR`` overrides the folder and ``CAPSIM_CACHE_DIR=off``
turns the cache off).

A stale entry cannot be read: the file name is a hash of the table's content, the kind, the method,
the columns, numpy's version (``np.log`` may round differently across releases) and the source text
of the modules that build a grid (this one, ``grid.py``, ``format.py``). Entries are written to a
temporary file and renamed, so a reader never sees half of one; an unreadable entry is rebuilt, and a
folder that cannot be written only costs the speed. The arrays read back are the arrays built, bit for
bit (tests/test_silicon_cache.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .grid import Grid

ENV = "CAPSIM_CACHE_DIR"
_CODE = ("cache.py", "grid.py", "format.py")


def cache_dir() -> Path | None:
    """The folder of cached grids, or None when ``CAPSIM_CACHE_DIR=off``."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() in ("off", "0", "none", "false"):
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if base:
        return Path(base) / "capsim"
    try:
        return Path.home() / ".cache" / "capsim"
    except RuntimeError:      # no HOME and no password entry: run uncached
        return None


@cache
def _code_hash() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256(np.__version__.encode())
    for name in _CODE:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def entry_path(folder: Path, table: Path, *, kind: str, method: str, columns: tuple[str, ...],
               monotone: Mapping[str, float] | None = None) -> Path:
    """Where the grid of ``table`` is cached: named by everything the grid depends on."""
    h = hashlib.sha256(table.read_bytes())
    h.update(json.dumps([kind, method, list(columns), sorted((monotone or {}).items()), _code_hash()]).encode())
    return folder / f"grid-{kind}-{h.hexdigest()[:32]}.npz"


def cached_grid(table: Path, *, kind: str, method: str, columns: tuple[str, ...],
                build: Callable[[], Grid], monotone: Mapping[str, float] | None = None) -> Grid:
    """The grid of ``table``: read from the cache when an entry exists, else ``build()`` and stored."""
    folder = cache_dir()
    if folder is None:
        return build()
    try:
        path = entry_path(folder, table, kind=kind, method=method, columns=columns, monotone=monotone)
    except OSError:
        return build()      # the table cannot be read: build() reports it with its own message
    if path.exists():
        grid = _load(path)
        if grid is not None:
            return grid
    grid = build()
    _store(path, grid)
    return grid


def _load(path: Path) -> Grid | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"][()]))
            lens, sizes, values = z["lens"], z["sizes"], z["values"]
    except (OSError, ValueError, KeyError, EOFError):   # a corrupt or foreign file: rebuild it
        return None
    cells: dict[tuple[Any, ...], tuple[tuple[np.ndarray, ...], np.ndarray]] = {}
    s_at = v_at = 0
    for key, row in zip(meta["keys"], lens.tolist(), strict=True):
        axes = []
        for n in row:
            axes.append(sizes[s_at:s_at + n])
            s_at += n
        count = int(np.prod(row))
        cells[tuple(key)] = (tuple(axes), values[v_at:v_at + count].reshape(row))
        v_at += count
    return Grid.from_cells(cells, keys=meta["key_names"], axes=meta["axis_names"], method=meta["method"])


def _store(path: Path, grid: Grid) -> None:
    cells = grid.cells()
    keys = list(cells)
    ndim = len(grid.axis_names)
    lens = np.array([[len(a) for a in cells[k][0]] for k in keys], dtype=np.int64).reshape(len(keys), ndim)
    sizes = np.concatenate([a for k in keys for a in cells[k][0]] or [np.zeros(0)])
    values = np.concatenate([cells[k][1].ravel() for k in keys] or [np.zeros(0)])
    meta = json.dumps({"keys": [list(k) for k in keys], "key_names": list(grid.keys),
                       "axis_names": list(grid.axis_names), "method": grid.method})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, meta=np.array(meta), lens=lens, sizes=sizes, values=values)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass   # a read-only or full disk: the next run builds the grid again, nothing else changes
