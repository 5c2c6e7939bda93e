"""Streamed tokens: when each request's tokens came, and the gaps between them (ITL), exactly.

A decoding sequence gains one token in every iteration of its replica, so its tokens come at the
replica's iteration ends from its first token to its last, except while it is preempted (the
ledger's ``stalls``: from its last token before the preemption to the token its recomputed prefill
samples, one gap). Each iteration's duration is thus a gap of every request decoding through it.

Replicas log their iterations as runs of steps (:class:`.replica.Segments`: a fast-forward window
is one run whose step durations rise by a constant), so the gaps are never expanded token by token
(a day of traffic has hundreds of millions): the runs are cut where the number of requests decoding
through them changes, and each piece is an arithmetic progression of durations, all shared by the
same requests. :meth:`.summary.Percentiles.of_progressions` takes the pooled percentiles from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..order_stats import distinct
from .ledger import Ledger
from .replica import FS_PER_S, Replica, Segments

STEP_MATCH_S = 1e-9   # a token time and its iteration's end agree to float rounding (iterations last µs or more)


@dataclass(frozen=True)
class Gaps:
    """Every gap between consecutive streamed tokens, as pieces: piece ``i`` holds the ``k[i]`` gaps
    ``a[i] + d[i]·(j−1)`` fs (j = 1..k), each shared by ``w[i]`` requests. ``largest``: each request's
    largest gap in seconds (NaN where not measured)."""

    a: np.ndarray
    d: np.ndarray
    k: np.ndarray
    w: np.ndarray
    largest: np.ndarray


def token_gaps(ledger: Ledger, replicas: Sequence[Replica], which: np.ndarray) -> Gaps | None:
    """The gaps between consecutive streamed tokens of the requests ``which`` (completed here, two
    or more output tokens); None when an engine's log does not give one iteration per token.
    O(runs + requests) per replica."""
    q = ledger.reqs
    largest = np.full(len(q), np.nan)
    which = which & (q.output > 1) & (ledger.replica >= 0)     # served by a replica (not a cache hit)
    sel = np.flatnonzero(which)
    pieces: list[tuple[np.ndarray, ...]] = []
    reps = {rep.index: rep for rep in replicas}
    for idx in distinct(ledger.replica[sel]):
        rep = reps.get(int(idx))
        if rep is None:
            return None
        rs = sel[ledger.replica[sel] == idx]
        got = _replica_gaps(ledger, rep.segments(), rs, largest)
        if got is None:
            return None
        pieces.append(got)
    if not pieces:
        empty = np.zeros(0, dtype=np.int64)
        return Gaps(empty, empty, empty, empty, largest)
    a, d, k, w = (np.concatenate(c) for c in zip(*pieces, strict=True))
    return Gaps(a, d, k, w, largest)


def _replica_gaps(ledger: Ledger, seg: Segments, rs: np.ndarray,
                  largest: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """One replica's pieces (a, d, k, w) for its requests ``rs``; fills ``largest[rs]``.

    A decode step ``j`` (one where decoding sequences gain a token) gives every sequence decoding
    through it the gap ``G_j`` from the previous decode step: its duration, plus the prefill-only
    iterations just before it (they pause decoding). A request's own token events — its first token,
    a token after a preemption — may fall on a prefill-only iteration ``e``; its next gap then runs
    from ``e`` to the next decode step, and is counted on its own, like the stall of a preemption
    (from its last token before to the token its recomputed prefill samples)."""
    if len(seg.k) == 0:
        return None
    first = np.cumsum(seg.k) - seg.k                      # global index of each run's first step
    total = int(seg.k.sum())
    run_total = seg.offset(np.arange(len(seg.k)), seg.k)  # each run's duration, fs
    dec_runs = np.flatnonzero(seg.decodes)
    d_first, d_last = first[dec_runs], first[dec_runs] + seg.k[dec_runs] - 1

    def is_decode(x: np.ndarray) -> np.ndarray:
        return seg.decodes[np.searchsorted(first, x, side="right") - 1]

    def next_decode(x: np.ndarray) -> np.ndarray:     # the first decode step after x (total if none)
        i = np.searchsorted(d_last, x + 1)
        return np.where(i < len(d_first), np.maximum(d_first[np.minimum(i, len(d_first) - 1)], x + 1), total)

    def last_decode(x: int) -> int:                    # the last decode step at or before x (-1 if none)
        i = int(np.searchsorted(d_first, x, side="right")) - 1
        return min(int(d_last[i]), x) if i >= 0 else -1

    busy = np.concatenate(([0], np.cumsum(run_total)[:-1]))   # busy fs before each run (wraps past 2^63 fs)

    def end_fs(x: np.ndarray) -> np.ndarray:
        """Busy fs up to the end of step x: differences are exact (modulo 2^64) between steps the replica
        ran back to back, which a request's own gaps always span (it is in the replica meanwhile)."""
        r = np.searchsorted(first, x, side="right") - 1
        return busy[r] + seg.offset(r, x - first[r] + 1)

    i0, i1 = _step_index(seg, first, ledger.first_token[rs]), _step_index(seg, first, ledger.done[rs])
    if i0 is None or i1 is None:
        return None
    # coverage: +1 from the first decode step a request's gap is G_j, -1 after its last token
    pos: list[np.ndarray] = []
    delta: list[np.ndarray] = []
    own: list[int] = []                               # gaps counted on their own (from a pause, stalls), fs
    own_of: dict[int, list[int]] = {}
    ranges: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []   # (request, from, to) step ranges covered
    stalled = np.array([r in ledger.stalls for r in rs.tolist()], dtype=bool)
    plain = np.flatnonzero(~stalled)
    e, stop = i0[plain], i1[plain]
    paused = ~is_decode(e)
    start = e + 1
    if paused.any():                                  # first token on a prefill-only iteration
        j1 = next_decode(e[paused])
        if (j1 > stop[paused]).any():
            return None
        gaps = end_fs(j1) - end_fs(e[paused])
        own += gaps.tolist()
        for r, g in zip(rs[plain[paused]].tolist(), gaps.tolist(), strict=True):
            own_of.setdefault(r, []).append(g)
        start = start.copy()
        start[paused] = j1 + 1
    pos += [start, stop + 1]
    delta += [np.ones(len(start), np.int64), -np.ones(len(stop), np.int64)]
    ranges.append((rs[plain], start, stop + 1))
    for i in np.flatnonzero(stalled).tolist():
        r = int(rs[i])
        pairs = np.array(ledger.stalls[r], dtype=float)
        sa, sb = _step_index(seg, first, pairs[:, 0]), _step_index(seg, first, pairs[:, 1])
        if sa is None or sb is None:
            return None
        # its token events (first token, then each resumed token) and the step each stretch ends at
        events = [int(i0[i]), *sb.tolist()]
        stretch_ends = [*sa.tolist(), int(i1[i])]
        for q, (ev, end) in enumerate(zip(events, stretch_ends, strict=True)):
            lo = ev + 1
            if not is_decode(np.array([ev]))[0]:
                nd = int(next_decode(np.array([ev]))[0])
                lo = nd + 1
                if nd <= end:
                    g = int((end_fs(np.array([nd])) - end_fs(np.array([ev])))[0])
                    own.append(g)
                    own_of.setdefault(r, []).append(g)
            if lo <= end:
                pos.append(np.array([lo]))
                pos.append(np.array([end + 1]))
                delta += [np.ones(1, np.int64), -np.ones(1, np.int64)]
                ranges.append((np.array([r]), np.array([lo]), np.array([end + 1])))
            if q < len(events) - 1:                   # a stall: from its last token to its resumed one
                ld = last_decode(end)
                g = int((end_fs(np.array([events[q + 1]])) - end_fs(np.array([ld if ld > ev else ev])))[0])
                own.append(g)
                own_of.setdefault(r, []).append(g)
    p, dl = np.concatenate(pos), np.concatenate(delta)
    order = np.argsort(p, kind="stable")
    p, dl = p[order], np.cumsum(dl[order])
    # a decode run after prefill-only iterations: its first step's gap holds them, a piece of its own
    pause_fs = np.cumsum(np.where(seg.decodes, 0, run_total))
    prev = np.searchsorted(dec_runs, dec_runs, side="left") - 1
    before = np.where(prev >= 0, pause_fs[dec_runs] - pause_fs[dec_runs[np.maximum(prev, 0)]], 0)
    extra = np.zeros(len(seg.k), dtype=np.int64)
    extra[dec_runs] = before
    split = first[(extra > 0) & (seg.k > 1)] + 1
    # pieces: runs cut at every change point; each piece's weight is the count just after its start
    starts = distinct(np.concatenate([first, p[p < total], split]))
    stops = np.append(starts[1:], total)
    s = np.searchsorted(first, starts, side="right") - 1
    at = np.searchsorted(p, starts, side="right") - 1
    w = np.where(at >= 0, dl[np.maximum(at, 0)], 0)
    if (w < 0).any():
        return None
    w = np.where(seg.decodes[s], w, 0)                # prefill-only steps give decoding sequences no token
    k = stops - starts
    step = seg.step()[s]
    offset = starts - first[s]
    a = seg.first()[s] + step * offset + np.where(offset == 0, extra[s], 0)
    tokens = int((ledger.reqs.output[rs] - 1).sum())
    if int((w * k).sum()) + len(own) != tokens:
        return None                       # the log is not one iteration per token
    top = a + step * (k - 1)              # each piece's largest gap
    top = np.where(seg.decodes[s], top, 0)
    for who, lo, hi in ranges:            # largest gap: the pieces it decoded through, then its own gaps
        a_, b_ = np.searchsorted(starts, lo), np.searchsorted(starts, hi)
        ok = b_ > a_
        bounds = np.empty(2 * int(ok.sum()), dtype=np.int64)
        bounds[0::2], bounds[1::2] = a_[ok], b_[ok]
        if len(bounds):
            got = np.maximum.reduceat(np.append(top, 0), bounds)[0::2] / FS_PER_S
            largest[who[ok]] = np.fmax(largest[who[ok]], got)
    for r, gs in own_of.items():
        largest[r] = np.fmax(largest[r], max(gs) / FS_PER_S)
    keep = w > 0
    ones = np.ones(len(own), dtype=np.int64)
    return (np.concatenate([a[keep], np.array(own, dtype=np.int64)]),
            np.concatenate([step[keep], np.zeros(len(own), np.int64)]),
            np.concatenate([k[keep], ones]), np.concatenate([w[keep], ones]))


def _step_index(seg: Segments, first: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """The global index of the step ending at each time of ``t``; None if one is at no step's end."""
    t = np.asarray(t, dtype=float)
    run_end = seg.t0 + seg.offset(np.arange(len(seg.k)), seg.k) / FS_PER_S
    s = np.searchsorted(run_end, t - STEP_MATCH_S)
    if (s >= len(seg.k)).any():
        return None
    lo, hi = np.ones(len(t), dtype=np.int64), seg.k[s].copy()        # the first step ending at t or later
    while (lo < hi).any():
        mid = (lo + hi) // 2
        late = seg.t0[s] + seg.offset(s, mid) / FS_PER_S >= t - STEP_MATCH_S
        hi, lo = np.where(late, mid, hi), np.where(late, lo, mid + 1)
    if (np.abs(seg.t0[s] + seg.offset(s, lo) / FS_PER_S - t) > STEP_MATCH_S).any():
        return None
    return first[s] + lo - 1
