"""Runs too large for exact statistics: latency percentiles from relative-error sketches.

Below :data:`EXACT_BELOW` requests a run's latency percentiles are exact (numpy.percentile over
every completed request). At or above it they are read from a :class:`simulator.sketch.Sketch`
(±0.5% relative, DDSketch), fed in chunks, so the statistics need a few thousand buckets instead
of sorted copies of ten-million-row columns; the mean stays exact. The result's JSON keeps its
shape, and its warnings carry :data:`STREAMED_NOTE` saying where its percentiles came from.

In a streamed run the replicas fold their per-iteration logs into fine time bins as they go and
stream their token gaps into a sketch (:mod:`.binned`), and a single-service run's ledger keeps a
request's in-flight state (first scheduled, first token, tokens generated, preemption stalls) only
while it is in flight: at its completion its latencies go into :class:`StreamStats` (sketches and
the SLO count) and its entries are dropped. What stays per request is its inputs (arrival, lengths,
class, priority) and outcome (done time, replica, preemptions, status, reason), ~55 bytes, so the
counts are still taken from the requests' own states; the per-request frame then has no
queueing, TTFT, TPOT or largest-gap columns (NaN), only the end-to-end latency.
"""

from __future__ import annotations

from array import array
from typing import Any

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
    return sketch_percentiles(sketch_of(values))


def sketch_percentiles(sk: Sketch) -> Percentiles:
    """:class:`Percentiles` read from a sketch (p50, p90, p99 within its bound; exact mean)."""
    if sk.n == 0:
        return Percentiles(None, None, None, None)
    p50, p90, p99 = sk.quantiles([0.50, 0.90, 0.99])
    return Percentiles(rounded(p50), rounded(p90), rounded(p99), rounded(sk.mean))


LATENCIES = ("queue_s", "ttft_s", "e2e_s", "tpot_s")
BUFFER = 1 << 16
"""completed requests whose latencies are buffered before they go into the sketches (~2 MiB)"""


class StreamStats:
    """A streamed run's latencies of its measured completed requests, taken at each completion (as
    :func:`.frames.latency_columns` defines them) and fed to sketches in chunks of :data:`BUFFER`:
    overall, per request class (TTFT and E2E) and the count within every per-request SLO bound
    (``bounds``: the scenario's, ``ttft_p99_s`` → bounds each request's ``ttft_s``; ITL bounds are
    checked on its percentiles)."""

    def __init__(self, warmup: int, classes: int, bounds: dict[str, float]) -> None:
        self.warmup = warmup
        self.bounds = [(key.rsplit("_", 2)[0] + "_s", b) for key, b in bounds.items() if not key.startswith("itl_")]
        self.sketches = {c: Sketch() for c in LATENCIES}
        self.by_class = [{"ttft_s": Sketch(), "e2e_s": Sketch()} for _ in range(classes)] if classes > 1 else []
        self.within = 0
        self._buf = {c: array("d") for c in LATENCIES}
        self._klass = array("h")

    def completed(self, led: Any, r: int, t: float) -> None:
        """Request ``r`` of ledger ``led`` completed at ``t`` (before its in-flight state is dropped)."""
        if r < self.warmup:
            return
        q = led.reqs
        a, first, out = float(q.arrival[r]), led.first_token[r], led.output[r]
        b = self._buf
        b["queue_s"].append(led.first_sched[r] - a)
        b["ttft_s"].append(first - a)
        b["e2e_s"].append(t - a)
        b["tpot_s"].append((t - first) / (out - 1) if out > 1 else np.nan)
        self._klass.append(int(q.klass[r]))
        if len(self._klass) >= BUFFER:
            self.flush()

    def flush(self) -> None:
        """Feed the buffered latencies to the sketches."""
        if not len(self._klass):
            return
        cols = {c: np.frombuffer(self._buf[c], dtype=np.float64) for c in LATENCIES}
        ok = np.ones(len(self._klass), dtype=bool)
        for c, bound in self.bounds:
            ok &= ~(cols[c] > bound)            # NaN (a one-token output's TPOT) cannot miss
        self.within += int(ok.sum())
        for c, v in cols.items():
            self.sketches[c].add(v)
        if self.by_class:
            k = np.frombuffer(self._klass, dtype=np.int16)
            for i, sk in enumerate(self.by_class):
                for c in ("ttft_s", "e2e_s"):
                    sk[c].add(cols[c][k == i])
        del cols
        self._buf = {c: array("d") for c in LATENCIES}
        self._klass = array("h")

    def percentiles(self, c: str, klass: int | None = None) -> Percentiles:
        self.flush()
        return sketch_percentiles(self.sketches[c] if klass is None else self.by_class[klass][c])
