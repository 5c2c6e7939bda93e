"""simulator.order_stats gives np.percentile's and np.unique's results bit for bit (the serving
summary's percentiles, the scaling series' and the token gaps' come from it, without numpy.ma)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.order_stats import distinct, percentiles

QS = (0, 1, 25, 50, 90, 99, 99.9, 100)


def test_equals_numpy_bit_for_bit_on_many_samples() -> None:
    rng = np.random.default_rng(19)
    for _ in range(3000):
        n = int(rng.integers(1, 400))
        kind = rng.integers(0, 4)
        if kind == 0:
            x = rng.lognormal(-3, 1.5, n)                      # latencies, seconds
        elif kind == 1:
            x = rng.integers(0, 5, n).astype(float) * 0.125     # many ties
        elif kind == 2:
            x = rng.normal(0, 1e6, n)
        else:
            x = rng.integers(-50, 50, n)                        # integers
        got = percentiles(x, QS)
        want = np.percentile(x, QS)
        assert [float(g) for g in got] == want.tolist()
        assert np.array_equal(np.array(got).view(np.int64), np.asarray(want, dtype=float).view(np.int64))


def test_scalar_and_small_samples_by_hand() -> None:
    assert percentiles(np.array([3.0]), [0, 50, 99, 100]) == [3.0, 3.0, 3.0, 3.0]
    # two values: the 50th is their mean, the 99th 1% short of the top, as numpy's linear method
    assert percentiles(np.array([1.0, 2.0]), [50, 99]) == [1.5, pytest.approx(1.99, abs=1e-15)]
    assert percentiles(np.array([4.0, 1.0, 3.0, 2.0]), [25, 50, 75]) == [1.75, 2.5, 3.25]


def test_nan_gives_nan_and_bad_input_is_refused() -> None:
    assert all(np.isnan(v) for v in percentiles(np.array([1.0, np.nan, 2.0]), [50, 90]))
    assert all(np.isnan(v) for v in np.percentile(np.array([1.0, np.nan, 2.0]), [50, 90]))
    with pytest.raises(ValueError, match="empty"):
        percentiles(np.zeros(0), [50])
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentiles(np.ones(3), [101])


def test_distinct_equals_numpy_unique() -> None:
    rng = np.random.default_rng(7)
    for _ in range(2000):
        n = int(rng.integers(0, 300))
        x = rng.integers(-3, 40, n) if rng.integers(0, 2) else rng.integers(0, 6, n) * 0.5
        got, want = distinct(x), np.unique(x)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert distinct(np.array([2, 1, 2, 5, 1])).tolist() == [1, 2, 5]
    nan = distinct(np.array([1.0, np.nan, 1.0, np.nan]))
    assert nan[0] == 1.0 and np.isnan(nan[1]) and len(nan) == 2
