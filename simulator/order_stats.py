"""Order statistics of a sample without ``numpy.ma``: exact percentiles, the same numbers as
``np.percentile`` (its default ``linear`` method, Hyndman & Fan's 7th) bit for bit, and the sorted
distinct values ``np.unique`` gives.

Why not numpy's own: ``np.unique`` asks ``np.ma.is_masked`` and so imports ``numpy.ma`` (the
masked-array package, a fifth of numpy's import and ~10 ms of a ``capsim serve``) the first time it
runs, and ``np.percentile`` calls it to pick its order statistics. The percentile arithmetic here is
numpy's, step for step (numpy/lib/_function_base_impl.py ``_quantile``, ``_get_indexes``,
``_lerp``), on numpy scalars of the sample's dtype:

* the virtual index of ``q`` is ``(n − 1) · (q / 100)``; ``i = ⌊index⌋`` and ``γ = index − i``;
  an index at or past ``n − 1`` takes the largest value (numpy sets both neighbours to the last,
  and ``γ`` is then ``index + 1``);
* between neighbours ``a ≤ b``: ``a + (b − a)·γ`` when ``γ < 0.5``, else ``b − (b − a)·(1 − γ)``;
* a sample holding NaN gives NaN for every ``q``.

tests/test_order_stats.py checks both against numpy's on thousands of samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(x: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``list(np.percentile(x, qs))`` for a non-empty 1-D sample ``x`` and ``qs`` in [0, 100] (numpy
    float64 scalars, as numpy returns)."""
    s = np.sort(np.asarray(x), kind="quicksort")
    n = len(s)
    if n == 0:
        raise ValueError("percentiles of an empty sample")
    if not all(0 <= q <= 100 for q in qs):
        raise ValueError(f"percentiles must lie in [0, 100] (got {list(qs)})")
    if s.dtype.kind == "f" and np.isnan(s[-1]):      # NaN sorts last
        return [np.float64(np.nan) for _ in qs]
    out: list[float] = []
    for q in qs:
        index = np.float64(n - 1) * (np.float64(q) / np.float64(100))
        if index >= n - 1:
            lo = hi = n - 1
            gamma = index - np.float64(-1)
        else:
            lo = int(np.floor(index))
            hi = lo + 1
            gamma = index - np.float64(lo)
        a, b = s[lo], s[hi]
        diff = b - a
        value = (a + diff * gamma) if gamma < 0.5 else (b - diff * (np.float64(1) - gamma))
        out.append(np.float64(value))
    return out


def distinct(x: np.ndarray) -> np.ndarray:
    """``np.unique(x)`` of a 1-D array: its distinct values in increasing order, in its dtype (a float
    array holding NaN goes to ``np.unique`` itself, which keeps one NaN last)."""
    s = np.sort(np.asarray(x), kind="quicksort")
    if s.dtype.kind == "f" and len(s) and np.isnan(s[-1]):
        return np.unique(s)
    keep = np.empty(len(s), dtype=bool)
    keep[:1] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
