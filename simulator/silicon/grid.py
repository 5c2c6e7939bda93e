"""Interpolation over a measured grid, in log space.

Kernel times are close to power laws in their sizes piecewise (flat where a launch dominates,
linear where the work does), so ``log t`` is interpolated multilinearly in ``log`` of each size
axis. A query outside the measured range, or whose surrounding cell has an unmeasured corner,
gets ``None``: the caller falls back to the roofline and counts it. Nothing is extrapolated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MEMO_LIMIT = 1 << 18     # remembered queries per table (a sweep's shapes are far fewer)


@dataclass(frozen=True)
class _Cell:
    axes: tuple[np.ndarray, ...]      # log of the measured values per axis, ascending
    values: np.ndarray               # log time (µs) on the grid, NaN where not measured
    sizes: tuple[np.ndarray, ...]     # the measured values themselves


class Grid:
    """``log time`` on the grid of ``axes`` for each combination of the ``keys`` columns."""

    def __init__(self, columns: Mapping[str, Sequence[Any]], *, keys: Sequence[str], axes: Sequence[str],
                 value: str = "time_us") -> None:
        self.keys, self.axis_names = tuple(keys), tuple(axes)
        n = len(columns[value])
        groups: dict[tuple[Any, ...], list[int]] = {}
        key_cols = [columns[k] for k in self.keys]
        for i in range(n):
            groups.setdefault(tuple(_norm(c[i]) for c in key_cols), []).append(i)
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
            self._cells[key] = _Cell(tuple(np.log(u) for u in uniq), vals, tuple(uniq))

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
        for a, x in zip(cell.axes, point, strict=True):
            if x <= 0:
                return None
            lx = float(np.log(x))
            if lx < a[0] - 1e-9 or lx > a[-1] + 1e-9:
                return None
            if len(a) == 1:
                lo_idx.append(0)
                frac.append(0.0)
                continue
            j = int(np.clip(np.searchsorted(a, lx, side="right") - 1, 0, len(a) - 2))
            lo_idx.append(j)
            frac.append(float(np.clip((lx - a[j]) / (a[j + 1] - a[j]), 0.0, 1.0)))
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
            v = cell.values[tuple(idx)]
            if np.isnan(v):
                return None
            total += w * float(v)
        return float(np.exp(total))


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
