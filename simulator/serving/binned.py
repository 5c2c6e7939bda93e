"""A streamed run's replica logs, folded into fine time bins while the run goes on.

Below :data:`.streamed.EXACT_BELOW` requests a replica keeps one row per iteration window and per
change of its queue (:class:`.replica.Replica`'s logs) until the run is over, and the result reads
them exactly. That is O(requests): about 180 bytes a request. A streamed run instead folds its
rows every :data:`COMPACT_ROWS` into :class:`FineBins` (``Replica.compact``), keeping only the
newest row (an engine may still cut it short) and those the autoscaler's busy-time metric can still
look back to (``Replica.keep_s``), and streams its token gaps into a sketch (:class:`TokenGaps`).

Integrals are exact per fine bin: a step function (queue length, requests running) or a set of
intervals (busy windows, weighted by KV tokens or batch tokens) adds its integral over each bin.
Bins start at :data:`FIRST_WIDTH_S` and double (pairs merged) whenever the run outgrows
:data:`FINE_BINS` of them, so at the end the run spans more than ``FINE_BINS / 2`` bins whatever its
length. The result's time bins (``frames.time_bins``: at most 120) read the cumulative integral at
their edges, linear within the fine bin an edge falls in: each result bin spans at least 8 fine
bins, and only the two it shares with its neighbours are interpolated. Totals up to the run's end
(busy seconds, KV token-seconds: GPU utilization, KV use, cost and energy) are exact sums.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FINE_BINS = 2048
"""fine bins per replica and channel (16 KiB each); the run always spans more than half of them"""
FIRST_WIDTH_S = 1 / 64
"""the fine bins' width until the run outgrows FINE_BINS of them (then it doubles)"""
COMPACT_ROWS = 16384
"""rows a replica's logs hold before they are folded into its bins"""
CHANNELS = ("queue", "running", "busy", "kv", "tokens")
"""queue and running: step functions of the state log; busy (1), kv and tokens: the busy windows"""


class FineBins:
    """Integrals of each channel over fine bins of one width, with exact totals."""

    def __init__(self) -> None:
        self.width = FIRST_WIDTH_S
        self.sums = np.zeros((len(CHANNELS), FINE_BINS))
        self.total = np.zeros(len(CHANNELS))
        self.t_max = np.zeros(len(CHANNELS))
        """the latest time each channel has mass at (integrals at or after it are the totals)"""

    def _cover(self, t: float) -> None:
        while t > self.width * FINE_BINS:
            self.sums = self.sums.reshape(len(CHANNELS), FINE_BINS // 2, 2).sum(axis=2)
            self.sums = np.concatenate([self.sums, np.zeros_like(self.sums)], axis=1)
            self.width *= 2

    def add_step(self, channel: str, times: np.ndarray, values: np.ndarray, t_end: float) -> None:
        """The step function taking ``values[i]`` from ``times[i]`` (sorted) to the next time, the last
        until ``t_end``: its integral over each fine bin."""
        if not len(times):
            return
        t_end = max(t_end, float(times[-1]))
        seg = np.diff(np.append(times, t_end)) * values
        cum = np.concatenate(([0.0], np.cumsum(seg)))

        def integral(x: np.ndarray) -> np.ndarray:           # ∫ from times[0] to x
            i = np.searchsorted(times, x, side="right") - 1
            j = np.maximum(i, 0)
            return np.where(i >= 0, cum[j] + values[j] * (np.minimum(x, t_end) - times[j]), 0.0)

        self._add(CHANNELS.index(channel), float(times[0]), t_end, integral, float(cum[-1]))

    def add_intervals(self, channel: str, starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> None:
        """Intervals ``[starts[i], ends[i])`` (in order, not overlapping) of value ``values[i]``."""
        if not len(starts):
            return
        t = np.empty(2 * len(starts))
        t[0::2], t[1::2] = starts, np.maximum(ends, starts)
        v = np.zeros(2 * len(starts))
        v[0::2] = values
        self.add_step(channel, t, v, float(t[-1]))

    def _add(self, c: int, t0: float, t1: float, integral, whole: float) -> None:
        self._cover(t1)
        w = self.width
        i0, i1 = int(t0 // w), min(int(np.ceil(t1 / w)), FINE_BINS)
        edges = np.arange(i0, i1 + 1) * w
        self.sums[c, i0:i1] += np.diff(integral(edges))
        self.total[c] += whole
        self.t_max[c] = max(self.t_max[c], t1)

    def integral_at(self, channel: str, x: np.ndarray | float) -> np.ndarray:
        """∫₀ˣ of the channel at each ``x``: exact at the fine edges and from the channel's last mass on,
        linear between."""
        c = CHANNELS.index(channel)
        x = np.asarray(x, dtype=float)
        top = self.t_max[c]
        n = int(np.ceil(top / self.width))
        knots = np.append(np.arange(n) * self.width, top)
        cum = np.concatenate(([0.0], np.cumsum(self.sums[c, :n])))
        cum[-1] = self.total[c]
        return np.interp(x, knots, cum, left=0.0, right=float(self.total[c]))

    def per_bin(self, channel: str, edges: np.ndarray) -> np.ndarray:
        """The channel's mean value over each bin of ``edges``."""
        return np.diff(self.integral_at(channel, edges)) / np.diff(edges)


class TokenGaps:
    """A streamed run's gaps between consecutive streamed tokens (ITL), pooled, in a sketch.

    Each decode step of a replica gives every sequence decoding through it one gap: the step's
    duration, plus the prefill-only iterations just before it (they pause decoding), as
    :mod:`.tokens` counts them exactly. A preemption's stall (from the last token before it to the
    token its recomputed prefill samples) is one gap of its own (``Ledger.resumed``). The exact
    count differs only for a prefill-first engine's requests whose first token comes from a
    prefill-only iteration: their next gap is counted from the previous decode step rather than
    from that iteration. ``known`` turns false when an engine does not say how many sequences
    decode in its iterations (the request-level batchers, speculative decoding): the ITL is then
    not reported, as below the streamed threshold when the log does not give one iteration per token."""

    def __init__(self) -> None:
        from ..sketch import Sketch

        self.sketch = Sketch()
        self.known = True

    def add_steps(self, a_fs: np.ndarray, d_fs: np.ndarray, k: np.ndarray, weight: np.ndarray) -> None:
        """Runs of ``k`` steps lasting ``a + d·(j−1)`` fs (j = 1..k), each a gap of ``weight`` sequences."""
        from .replica import FS_PER_S

        keep = (k > 0) & (weight > 0)
        a_fs, d_fs, k, weight = (x[keep] for x in (a_fs, d_fs, k, weight))
        chunk = 1 << 16
        i = 0
        while i < len(k):                    # groups of rows expanding to about 64k steps (~4 MiB of temporaries)
            cum = np.cumsum(k[i:])
            j = i + max(int(np.searchsorted(cum, chunk)), 1)
            kk = k[i:j]
            first = np.repeat(np.cumsum(kk) - kk, kk)
            step = np.arange(int(kk.sum())) - first
            gaps = np.repeat(a_fs[i:j], kk) + np.repeat(d_fs[i:j], kk) * step
            self.sketch.add(gaps / FS_PER_S, np.repeat(weight[i:j], kk))
            i = j

    def add_gap(self, seconds: float) -> None:
        self.sketch.add(np.array([seconds]))


def fold_busy(rep: Any, *, final: bool = False) -> None:
    """Fold a streamed replica's busy rows into its bins and token gaps: all of them when ``final`` (the
    run is over), else all but the newest and those ending within ``rep.keep_s`` of now."""
    from .replica import to_fs

    if final:
        rep._close_window()
        m = len(rep.busy_start)
    else:
        ends = np.array(rep.busy_end, dtype=np.float64)
        m = min(len(ends) - 1, int(np.searchsorted(ends, rep.env.now - rep.keep_s, side="right")))
    if m <= 0:
        return
    s, e = np.array(rep.busy_start[:m], dtype=np.float64), np.array(rep.busy_end[:m], dtype=np.float64)
    bins: FineBins = rep.bins
    bins.add_intervals("busy", s, e, np.ones(m))
    bins.add_intervals("kv", s, e, np.array(rep.busy_kv[:m], dtype=np.float64))
    bins.add_intervals("tokens", s, e, np.array(rep.busy_tokens[:m], dtype=np.float64))
    kind = np.array(rep.busy_kind[:m], dtype=np.int8)
    pause = np.array(rep.busy_pause[:m], dtype=np.int8) == 1
    seqs = np.array(rep.busy_seqs[:m], dtype=np.int64)
    nw, ns = int((kind == 1).sum()), int((kind == 2).sum())
    A, C, c0, n, k = (np.array(col[:nw]) for col in rep._win[1:])
    A, C, c0, n, k = (x.astype(np.int64) for x in (A, C, c0, n, k))
    # each row as a run of steps: first step a fs, then d fs longer each, k steps, dur fs in all
    a, d, steps = to_fs(e - s), np.zeros(m, np.int64), np.ones(m, np.int64)
    dur = a.copy()
    w = np.flatnonzero(kind == 1)
    a[w], d[w], steps[w] = A + C * c0, C * n, k
    dur[w] = k * A + C * (k * c0 + n * (k * (k - 1) // 2))
    _fold_gaps(rep, pause, seqs, a, d, steps, dur, kind)
    for col in (rep.busy_start, rep.busy_end, rep.busy_kv, rep.busy_tokens, rep.busy_kind, rep.busy_pause,
                rep.busy_seqs):
        del col[:m]
    for col in rep._win:
        del col[:nw]
    del rep._step_ends[:ns]


def _fold_gaps(rep: Any, pause: np.ndarray, seqs: np.ndarray, a: np.ndarray, d: np.ndarray, steps: np.ndarray,
               dur: np.ndarray, kind: np.ndarray) -> None:
    """Token gaps of these rows (:class:`TokenGaps`); ``rep.gap_carry``: (pause fs since the last decode row,
    its sequences, the sequences of the row before) carried from the previous fold."""
    gaps: TokenGaps | None = rep.ledger.gaps
    if gaps is None or not gaps.known:
        return
    dec = np.flatnonzero(~pause)
    if (seqs[dec] < 0).any() or (kind[dec] == 2).any():
        gaps.known = False                  # the engine does not say how many sequences gain a token
        return
    carry_pause, carry_seqs, carry_before = rep.gap_carry
    csum = np.cumsum(np.where(pause, dur, 0))
    if len(dec):
        prev_sum = np.concatenate(([-carry_pause], csum[dec[:-1]]))
        pending = csum[dec] - prev_sum
        prev_seqs = np.concatenate(([carry_seqs], seqs[dec[:-1]]))
        before = np.where(dec > 0, seqs[np.maximum(dec - 1, 0)], carry_before)
        # paused through the pending iterations: decoding before them, present in the one before this
        # row, and still decoding now; the others (first token in a pause) gap from that iteration only
        paused = np.where(pending > 0, np.minimum(np.minimum(prev_seqs, before), seqs[dec]), 0)
        ad, dd, kd, wd = a[dec], d[dec], steps[dec], seqs[dec]
        one = np.ones(len(dec), np.int64)
        zero = np.zeros(len(dec), np.int64)
        gaps.add_steps(np.concatenate([ad + pending, ad, ad + dd]), np.concatenate([zero, zero, dd]),
                       np.concatenate([one, one, kd - 1]), np.concatenate([paused, wd - paused, wd]))
        carry_pause, carry_seqs = int(csum[-1] - csum[dec[-1]]), int(seqs[dec[-1]])
    else:
        carry_pause += int(csum[-1])
    rep.gap_carry = (carry_pause, carry_seqs, int(seqs[-1]))


def fold_log(rep: Any, end: float | None = None) -> None:
    """Fold a streamed replica's state log into its bins: all rows, the last held until ``end`` (the
    run is over), or (``end`` None) all but the newest, which still holds."""
    n = len(rep.log_t)
    m = n if end is not None else n - 1
    if m <= 0:
        return
    t = np.array(rep.log_t[:m], dtype=np.float64)
    t_end = end if end is not None else rep.log_t[m]
    rep.bins.add_step("queue", t, np.array(rep.log_wait[:m], dtype=np.float64), t_end)
    rep.bins.add_step("running", t, np.array(rep.log_run[:m], dtype=np.float64), t_end)
    for col in (rep.log_t, rep.log_wait, rep.log_run):
        del col[:m]
