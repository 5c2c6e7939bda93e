"""A relative-error percentile sketch (DDSketch, Masson, Rim and Lee, VLDB 2019), for latencies of
runs too large to keep one record per request.

Values ``x > 0`` fall into logarithmic buckets: bucket ``i`` holds ``γ^(i-1) < x ≤ γ^i`` with
``γ = (1 + α) / (1 − α)``, and stands for ``2γ^i / (γ + 1)``, which is within ``α`` (relative) of
every value in it. Any order statistic read from the sketch is thus within ``α`` of the true one;
a percentile is read as :func:`numpy.percentile`'s default (linear interpolation between the two
order statistics around rank ``q·(n−1)``), interpolating the two estimates, so it is within ``α``
of the exact percentile too (a convex combination of positive numbers each within ``α``).
Values at or below :data:`MIN_VALUE` (zero latencies) are counted apart and read as 0.

Memory: one count per occupied bucket — ``ln(max/min) / ln γ`` buckets, about 2,300 for
latencies from 1 µs to 1 hour at ``α = 0.005`` — whatever the number of values. The mean is exact
(a running sum). Adding is vectorised (``numpy.bincount``), so feeding values in chunks is cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

RELATIVE_ACCURACY = 0.005
"""±0.5%: the bound every percentile of the sketch keeps (DDSketch's α)"""
MIN_VALUE = 1e-12
"""values at or below this (seconds: a femtosecond clock's zero) are counted as 0"""


@dataclass
class Sketch:
    """Counts of values per logarithmic bucket, with their exact count, sum, minimum and maximum."""

    alpha: float = RELATIVE_ACCURACY
    counts: dict[int, int] = field(default_factory=dict)
    zeros: int = 0
    n: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"Sketch alpha must be in (0, 1), got {self.alpha}")
        self._gamma = (1 + self.alpha) / (1 - self.alpha)
        self._log_gamma = math.log(self._gamma)

    def add(self, x: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Count the finite values of ``x`` (NaN is skipped: a latency that was not measured), each
        ``weights[i]`` times (non-negative integers; default once)."""
        x = np.asarray(x, dtype=np.float64)
        keep = np.isfinite(x)
        x = x[keep]
        w = None if weights is None else np.asarray(weights, dtype=np.int64)[keep]
        if w is not None:
            if (w < 0).any():
                raise ValueError("Sketch weights are counts (non-negative)")
            x, w = x[w > 0], w[w > 0]
        if not len(x):
            return
        if (x < 0).any():
            raise ValueError("Sketch holds non-negative values (latencies)")
        self.n += len(x) if w is None else int(w.sum())
        self.total += float(x.sum()) if w is None else float(np.dot(x, w))
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))
        big = x > MIN_VALUE
        pos = x[big]
        self.zeros += len(x) - len(pos) if w is None else int(w[~big].sum())
        if not len(pos):
            return
        idx = np.ceil(np.log(pos) / self._log_gamma).astype(np.int64)
        base = int(idx.min())
        counts = np.bincount(idx - base) if w is None else np.bincount(idx - base, weights=w[big]).astype(np.int64)
        for i, c in enumerate(counts.tolist()):
            if c:
                self.counts[base + i] = self.counts.get(base + i, 0) + c

    def merge(self, other: Sketch) -> None:
        """Add another sketch's values (same ``alpha``)."""
        if other.alpha != self.alpha:
            raise ValueError("Sketch.merge needs the same alpha")
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.zeros += other.zeros
        self.n += other.n
        self.total += other.total
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)

    def _order_statistics(self, ranks: np.ndarray) -> np.ndarray:
        """Estimates of the order statistics ``ranks`` (0-based), each within ``alpha`` of the true one."""
        keys = sorted(self.counts)
        cum = np.cumsum([self.zeros, *(self.counts[k] for k in keys)])
        where = np.searchsorted(cum, ranks, side="right")     # the bucket holding each rank (0: the zeros)
        values = np.array([0.0, *(2 * self._gamma ** k / (self._gamma + 1) for k in keys)])
        est = values[np.minimum(where, len(values) - 1)]
        return np.clip(est, self.low, self.high)              # the extremes are known exactly

    def quantiles(self, qs: list[float]) -> list[float]:
        """The percentiles ``qs`` (fractions) as numpy.percentile's linear method reads them, each within
        ``alpha`` of the exact one; raises on an empty sketch."""
        if self.n == 0:
            raise ValueError("Sketch.quantiles of an empty sketch")
        pos = np.array(qs, dtype=np.float64) * (self.n - 1)
        lo = np.floor(pos)
        a = self._order_statistics(lo)
        b = self._order_statistics(np.minimum(lo + 1, self.n - 1))
        return [float(v) for v in a + (b - a) * (pos - lo)]

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def buckets(self) -> int:
        return len(self.counts) + (1 if self.zeros else 0)
