"""Runs too large for exact statistics: latency percentiles from relative-error sketches.

Below :data:`EXACT_BELOW` requests a run's latency percentiles are exact (numpy.percentile over
every completed request). At or above it they are read from a :class:`simulator.sketch.Sketch`
(±0.5% relative, DDSketch), fed in chunks, so the statistics need a few thousand buckets instead
of sorted copies of ten-million-row columns; the mean stays exact. The result's JSON keeps its
shape, and its warnings carry :data:`STREAMED_NOTE` saying where its percentiles came from.

The per-request record itself (the ledger: arrival, lengths, outcome times and states, about
90 bytes a request) is retained in both modes: the engines index it by request while the run
goes on, and the per-request frame is built from it when asked.
"""

from __future__ import annotations

import numpy as np

from ..sketch import RELATIVE_ACCURACY, Sketch
from .summary import Percentiles, rounded

EXACT_BELOW = 10_000_000
"""requests from which a run's latency percentiles are streamed through sketches (simulate_serving's
``exact_below``; simulator.workbound refuses more than this many requests unless forced)"""
CHUNK = 1 << 20
"""values fed to a sketch at once (bounds the temporaries of its vectorised add to ~8 MiB each)"""
STREAMED_NOTE = ("streamed statistics: {n:,} requests (at or above exact_below={exact_below:,}); latency "
                 f"percentiles are from relative-error sketches, within ±{RELATIVE_ACCURACY:.1%} of the exact "
                 "ones, and means are exact")


def sketch_of(values: np.ndarray) -> Sketch:
    """A sketch of the non-NaN values, fed in chunks of :data:`CHUNK`."""
    sk = Sketch()
    for i in range(0, len(values), CHUNK):
        sk.add(values[i:i + CHUNK])
    return sk


def streamed_percentiles(values: np.ndarray) -> Percentiles:
    """:class:`Percentiles` (p50, p90, p99 within the sketch's bound; exact mean) of the non-NaN values."""
    sk = sketch_of(values)
    if sk.n == 0:
        return Percentiles(None, None, None, None)
    p50, p90, p99 = sk.quantiles([0.50, 0.90, 0.99])
    return Percentiles(rounded(p50), rounded(p90), rounded(p99), rounded(sk.mean))
