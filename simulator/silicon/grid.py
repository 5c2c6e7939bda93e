"""Interpolation over a measured grid, in log space.

Kernel times are close to power laws in their sizes piecewise (flat where a launch dominates,
linear where the work does), so ``log t`` is interpolated in ``log`` of each size axis: by default
multilinearly (``method="linear"``), or with a monotone cubic along each axis (``"pchip"``).
A query outside the measured range, or whose surrounding cell has an unmeasured corner, gets
``None``: the caller falls back to the roofline and counts it. Nothing is extrapolated, and a
measured point reads back as measured with either method, except along an axis the table's kind
makes non-decreasing (``monotone``, :func:`nondecreasing`): there a point reads the least time
measured at its size or a larger one in the given range.

Why two methods. Between the launch floor and the work-bound regime ``log t`` bends upwards
(``t = a + b·x^p`` is convex in log-log), so a straight line across a cell overestimates: on the
held-out check of ``bench/validate_kernels.py`` (every 5th interior grid line left out and
predicted from the rest, nine GPUs) attention and collective tables came out +2 to +7% high
with ``"linear"`` (collectives -0.3 to +3%) and -1.3 to +3.6% with ``"pchip"``, whose slope at
each grid line comes from the neighbouring cells (Fritsch-Carlson: the weighted harmonic mean of
the two secants, zero at a local extremum, so it never overshoots the measured values around it).
GEMM and MoE times are staircases in their sizes instead (tile and wave quantization, a different
kernel per shape): two bf16 GEMMs one row of ``m`` apart differ by 5-9% on average in these tables
(fp8-block: up to 19%), and slopes taken from the neighbours carry those steps into the cell, so
``"linear"`` is 0.1-1.7 points better there (``simulator.silicon.tables.INTERPOLATION`` picks the
method per table kind).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

MEMO_LIMIT = 1 << 18     # remembered queries per table (a sweep's shapes are far fewer)
Method = Literal["linear", "pchip"]
METHODS: tuple[str, ...] = ("linear", "pchip")


@dataclass(frozen=True)
class _Cell:
    axes: tuple[np.ndarray, ...]      # log of the measured values per axis, ascending
    values: np.ndarray               # log time (µs) on the grid, NaN where not measured
    sizes: tuple[np.ndarray, ...]     # the measured values themselves
    # ``axes`` as Python floats: a query's search and weights in plain floats (the same IEEE
    # arithmetic as numpy scalars, without their per-call overhead)
    axis_lists: tuple[list[float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis_lists", tuple(a.tolist() for a in self.axes))


class Grid:
    """``log time`` on the grid of ``axes`` for each combination of the ``keys`` columns, interpolated
    by ``method`` (see the module docstring)."""

    def __init__(self, columns: Mapping[str, Sequence[Any]], *, keys: Sequence[str], axes: Sequence[str],
                 value: str = "time_us", method: Method = "linear",
                 monotone: Mapping[str, float] | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown interpolation method {method!r}; methods: {', '.join(METHODS)}")
        self.keys, self.axis_names, self.method = tuple(keys), tuple(axes), method
        n = len(columns[value])
        groups: dict[tuple[Any, ...], list[int]] = {}
        normed = []                    # each key column normalised once per distinct value
        for k in self.keys:
            memo: dict[Any, Any] = {}
            normed.append([memo[v] if v in memo else memo.setdefault(v, _norm(v)) for v in columns[k]])
        for i, key in enumerate(zip(*normed, strict=True) if normed else ((),) * n):
            groups.setdefault(key, []).append(i)
        t = np.asarray(columns[value], dtype=float)
        ax = [np.asarray(columns[a], dtype=float) for a in self.axis_names]
        if np.any(t <= 0) or any(np.any(a <= 0) for a in ax):
            raise ValueError("kernel table times and sizes must be positive")
        self._cells: dict[tuple[Any, ...], _Cell] = {}
        self._memo: dict[tuple[Any, ...], float | None] = {}
        for key, idx in groups.items():
            ix = np.asarray(idx)
            uniq = [np.unique(a[ix]) for a in ax]
            vals = np.full(tuple(len(u) for u in uniq), np.nan)
            pos = tuple(np.searchsorted(u, a[ix]) for u, a in zip(uniq, ax, strict=True))
            # duplicates (several kernels measured for one shape): keep the median
            if len(set(zip(*pos, strict=True))) < len(ix):
                acc: dict[tuple[int, ...], list[float]] = {}
                for p, v in zip(zip(*pos, strict=True), t[ix], strict=True):
                    acc.setdefault(p, []).append(float(v))
                for p, vs in acc.items():
                    vals[p] = np.log(float(np.median(vs)))
            else:
                vals[pos] = np.log(t[ix])
            for a, upto in (monotone or {}).items():
                i = self.axis_names.index(a)
                vals = nondecreasing(vals, i, int(np.searchsorted(uniq[i], upto, side="right")))
            self._cells[key] = _Cell(tuple(np.log(u) for u in uniq), vals, tuple(uniq))

    @classmethod
    def from_cells(cls, cells: Mapping[tuple[Any, ...], tuple[tuple[np.ndarray, ...], np.ndarray]], *,
                   keys: Sequence[str], axes: Sequence[str], method: Method) -> Grid:
        """A grid from what :meth:`cells` returned (``silicon.cache`` stores that): key -> (the measured
        sizes per axis, ascending; log time on their grid, NaN where unmeasured)."""
        out = cls.__new__(cls)
        out.keys, out.axis_names, out.method = tuple(keys), tuple(axes), method
        out._cells = {k: _Cell(tuple(np.log(u) for u in sizes), vals, tuple(sizes)) for k, (sizes, vals) in cells.items()}
        out._memo = {}
        return out

    def cells(self) -> dict[tuple[Any, ...], tuple[tuple[np.ndarray, ...], np.ndarray]]:
        """Key -> (measured sizes per axis, log time on their grid): everything the grid holds."""
        return {k: (c.sizes, c.values) for k, c in self._cells.items()}

    def has(self, key: Sequence[Any]) -> bool:
        return tuple(_norm(k) for k in key) in self._cells

    def keys_present(self) -> list[tuple[Any, ...]]:
        return sorted(self._cells, key=str)

    def axis_values(self, key: Sequence[Any]) -> tuple[np.ndarray, ...] | None:
        cell = self._cells.get(tuple(_norm(k) for k in key))
        return None if cell is None else cell.sizes

    def __call__(self, key: Sequence[Any], point: Sequence[float]) -> float | None:
        """Interpolated time (µs) at ``point`` for ``key``, or None when it is not covered (memoised:
        a simulation asks for the same few shapes many times)."""
        memo_key = (tuple(key), tuple(point))
        if memo_key in self._memo:
            return self._memo[memo_key]
        out = self._interpolate(key, point)
        if len(self._memo) < MEMO_LIMIT:
            self._memo[memo_key] = out
        return out

    def _interpolate(self, key: Sequence[Any], point: Sequence[float]) -> float | None:
        cell = self._cells.get(tuple(_norm(k) for k in key))
        if cell is None:
            return None
        lo_idx: list[int] = []
        frac: list[float] = []
        for a, x in zip(cell.axis_lists, point, strict=True):
            if x <= 0:
                return None
            lx = float(np.log(x))
            if lx < a[0] - 1e-9 or lx > a[-1] + 1e-9:
                return None
            if len(a) == 1:
                lo_idx.append(0)
                frac.append(0.0)
                continue
            j = min(max(bisect_right(a, lx) - 1, 0), len(a) - 2)
            lo_idx.append(j)
            frac.append(min(max((lx - a[j]) / (a[j + 1] - a[j]), 0.0), 1.0))
        if self.method == "pchip":
            v = _hermite(cell, lo_idx, frac, 0, ())
            return None if v is None else float(np.exp(v))
        total = 0.0
        for corner in range(1 << len(lo_idx)):
            w = 1.0
            idx = []
            for d, (j, f) in enumerate(zip(lo_idx, frac, strict=True)):
                up = (corner >> d) & 1
                wd = f if up else 1.0 - f
                if wd == 0.0:
                    w = 0.0
                    break
                w *= wd
                idx.append(j + up)
            if w == 0.0:
                continue
            v = float(cell.values[tuple(idx)])
            if math.isnan(v):
                return None
            total += w * v
        return float(np.exp(total))


def nondecreasing(values: np.ndarray, axis: int, stop: int) -> np.ndarray:
    """``values`` (log times, NaN where unmeasured) made non-decreasing along ``axis`` over its first
    ``stop`` sizes: each measured point there becomes the least measured value at its size or a
    larger one below ``stop``. Unmeasured points stay unmeasured; sizes from ``stop`` on are kept."""
    head = np.take(values, range(stop), axis=axis)
    flipped = np.flip(head, axis)
    filled = np.where(np.isnan(flipped), np.inf, flipped)
    low = np.flip(np.minimum.accumulate(filled, axis=axis), axis)
    low = np.where(np.isnan(head), np.nan, low)
    out = values.copy()
    idx = [slice(None)] * values.ndim
    idx[axis] = slice(0, stop)
    out[tuple(idx)] = low
    return out


def _hermite(cell: _Cell, lo: list[int], frac: list[float], d: int, at: tuple[int, ...]) -> float | None:
    """``log t`` at the query along axes ``d``.. with the axes before ``d`` fixed at grid lines ``at``:
    a cubic Hermite along axis ``d`` through the two grid lines around the query, its slopes from
    those lines and their outer neighbours, each value found the same way along the later axes.
    None when one of the two lines around the query is unmeasured; an unmeasured or absent outer
    neighbour makes that slope one-sided."""
    if d == len(lo):
        v = float(cell.values[at])
        return None if np.isnan(v) else v
    j, f = lo[d], frac[d]
    if f == 0.0 or f == 1.0:
        return _hermite(cell, lo, frac, d + 1, (*at, j + int(f)))
    y0 = _hermite(cell, lo, frac, d + 1, (*at, j))
    y1 = None if y0 is None else _hermite(cell, lo, frac, d + 1, (*at, j + 1))
    if y0 is None or y1 is None:
        return None
    a = cell.axes[d]
    h = float(a[j + 1] - a[j])
    s = (y1 - y0) / h
    ym = _hermite(cell, lo, frac, d + 1, (*at, j - 1)) if j >= 1 else None
    yp = _hermite(cell, lo, frac, d + 1, (*at, j + 2)) if j + 2 < len(a) else None
    hm = float(a[j] - a[j - 1]) if ym is not None else 0.0
    hp = float(a[j + 2] - a[j + 1]) if yp is not None else 0.0
    sm = None if ym is None else (y0 - ym) / hm
    sp = None if yp is None else (yp - y1) / hp
    if sm is not None:
        m0 = _inner_slope(hm, sm, h, s)
    else:
        m0 = s if sp is None else _end_slope(h, s, hp, sp)
    if sp is not None:
        m1 = _inner_slope(h, s, hp, sp)
    else:
        m1 = s if sm is None else _end_slope(h, s, hm, sm)
    f2, f3 = f * f, f * f * f
    return ((2 * f3 - 3 * f2 + 1) * y0 + (f3 - 2 * f2 + f) * h * m0
            + (3 * f2 - 2 * f3) * y1 + (f3 - f2) * h * m1)


def _inner_slope(h0: float, s0: float, h1: float, s1: float) -> float:
    """Fritsch-Carlson slope at a grid line between secants ``s0`` (cell width ``h0``) and ``s1``:
    their weighted harmonic mean, 0 at a local extremum (as scipy's PchipInterpolator)."""
    if s0 * s1 <= 0.0:
        return 0.0
    w0, w1 = 2 * h1 + h0, h1 + 2 * h0
    return (w0 + w1) / (w0 / s0 + w1 / s1)


def _end_slope(h0: float, s0: float, h1: float, s1: float) -> float:
    """Slope at the grid line on the open side of a cell with secant ``s0`` (width ``h0``), next to a
    cell with ``s1`` (width ``h1``): the three-point estimate, kept shape-preserving (scipy's pchip)."""
    m = ((2 * h0 + h1) * s0 - h0 * s1) / (h0 + h1)
    if np.sign(m) != np.sign(s0):
        return 0.0
    if np.sign(s0) != np.sign(s1) and abs(m) > abs(3 * s0):
        return 3 * s0
    return m


def _norm(v: Any) -> Any:
    """Key values compare as numbers when they are numbers (12 == 12.0 == "12")."""
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() else f
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v
