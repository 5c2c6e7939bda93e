"""The disk cache of kernel-table grids (simulator/silicon/cache.py): a grid read back is the grid
built, bit for bit; an entry is named by the table's content and the code, so an edited table or a
corrupt entry is rebuilt; ``CAPSIM_CACHE_DIR=off`` writes nothing; an unwritable folder costs only
the speed."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from hardware_profiles import PROFILE_DIR
from simulator.silicon.cache import ENV, cache_dir, cached_grid
from simulator.silicon.format import COLUMNS, read_rows, write_table
from simulator.silicon.grid import Grid
from simulator.silicon.tables import INTERPOLATION, table_grid

H100 = PROFILE_DIR / "measured" / "h100-sxm"
TABLES = ["gemm.vllm-0.24.0.csv.gz", "context_attention.vllm-0.24.0.csv.gz", "collective.nccl-2.27.3.csv.gz",
          "moe.trtllm-1.3.0rc20.csv.gz"]


def _grid(path: Path, calls: list[str] | None = None) -> Grid:
    kind = path.name.split(".")[0]

    def build() -> Grid:
        if calls is not None:
            calls.append(path.name)
        return table_grid(read_rows(path, kind), kind)

    return cached_grid(path, kind=kind, method=INTERPOLATION.get(kind, "linear"), columns=COLUMNS[kind], build=build)


def _same(a: Grid, b: Grid) -> None:
    assert (a.keys, a.axis_names, a.method) == (b.keys, b.axis_names, b.method)
    ca, cb = a.cells(), b.cells()
    assert list(ca) == list(cb)                  # the same keys, in the same order, of the same types
    assert [tuple(type(v) for v in k) for k in ca] == [tuple(type(v) for v in k) for k in cb]
    for k in ca:
        (sa, va), (sb, vb) = ca[k], cb[k]
        assert va.dtype == vb.dtype and va.shape == vb.shape and va.tobytes() == vb.tobytes()
        assert len(sa) == len(sb) and all(x.tobytes() == y.tobytes() for x, y in zip(sa, sb, strict=True))


@pytest.mark.parametrize("name", TABLES)
def test_a_cached_grid_is_the_built_grid_bit_for_bit(name, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    path = H100 / name
    calls: list[str] = []
    built = _grid(path, calls)                   # built and stored
    read = _grid(path, calls)                    # read back
    assert calls == [name] and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    _same(built, read)
    monkeypatch.setenv(ENV, "off")
    _same(_grid(path), read)                     # and the uncached grid is the same too
    # the interpolated times: the same floats at measured points and between them
    key = built.keys_present()[0]
    axes = built.axis_values(key)
    assert axes is not None
    lo = tuple(float(a[0]) for a in axes)
    mid = tuple(float(np.sqrt(a[0] * a[-1])) for a in axes)
    for point in (lo, mid):
        assert built(key, point) == read(key, point)


def test_an_edited_table_gets_a_new_entry_and_a_corrupt_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    table = tmp_path / "memory.t-1.csv.gz"
    write_table(table, "memory", [["copy", 1e6, 10.0], ["copy", 1e8, 100.0]])
    calls: list[str] = []
    assert _grid(table, calls)(("copy",), (1e7,)) == pytest.approx(np.sqrt(10.0 * 100.0))   # log-log midpoint
    write_table(table, "memory", [["copy", 1e6, 20.0], ["copy", 1e8, 200.0]])              # same name, new rows
    assert _grid(table, calls)(("copy",), (1e6,)) == pytest.approx(20.0)
    entries = sorted((tmp_path / "cache").glob("*.npz"))
    assert calls == [table.name] * 2 and len(entries) == 2
    for e in entries:
        e.write_bytes(b"not a zip file")
    assert _grid(table, calls)(("copy",), (1e8,)) == pytest.approx(200.0)                  # rebuilt, not misread
    assert len(calls) == 3
    assert _grid(table, calls)(("copy",), (1e8,)) == pytest.approx(200.0) and len(calls) == 3  # and stored again


def test_off_writes_nothing_and_an_unwritable_folder_only_costs_speed(tmp_path, monkeypatch):
    shutil.copy(H100 / "collective.nccl-2.27.3.csv.gz", tmp_path / "collective.nccl-2.27.3.csv.gz")
    table = tmp_path / "collective.nccl-2.27.3.csv.gz"
    monkeypatch.setenv(ENV, "off")
    assert cache_dir() is None
    calls: list[str] = []
    _grid(table, calls)
    _grid(table, calls)
    assert calls == [table.name] * 2
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(ENV, str(blocker / "cache"))       # a folder inside a file cannot be made
    _same(_grid(table, calls), _grid(table))
    assert not (blocker / "cache").exists()


def test_the_default_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "capsim"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "capsim"
