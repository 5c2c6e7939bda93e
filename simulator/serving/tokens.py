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

from .replica import FS_PER_S, Ledger, Replica, Segments, to_fs

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
    for idx in np.unique(ledger.replica[sel]):
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
    """One replica's pieces (a, d, k, w) for its requests ``rs``; fills ``largest[rs]``."""
    if len(seg.k) == 0:
        return None
    first = np.cumsum(seg.k) - seg.k                      # global index of each run's first step
    total = int(seg.k.sum())
    i0, i1 = _step_index(seg, first, ledger.first_token[rs]), _step_index(seg, first, ledger.done[rs])
    if i0 is None or i1 is None:
        return None
    # where the number of requests decoding through a step changes: +1 after a first token, -1 after
    # the last; a stall takes a request out from after its last token to its resumed token
    pos, delta = [i0 + 1, i1 + 1], [np.ones(len(rs), np.int64), -np.ones(len(rs), np.int64)]
    stalled = [r for r in rs.tolist() if r in ledger.stalls]
    stall_gaps: list[float] = []
    spans: dict[int, list[tuple[int, int]]] = {}
    row = {r: i for i, r in enumerate(rs.tolist())} if stalled else {}
    for r in stalled:
        pairs = np.array(ledger.stalls[r], dtype=float)
        sa, sb = _step_index(seg, first, pairs[:, 0]), _step_index(seg, first, pairs[:, 1])
        if sa is None or sb is None:
            return None
        pos += [sa + 1, sb + 1]
        delta += [-np.ones(len(sa), np.int64), np.ones(len(sb), np.int64)]
        stall_gaps += (pairs[:, 1] - pairs[:, 0]).tolist()
        i = row[r]
        cuts = [int(i0[i]), *[v for x, y in zip(sa.tolist(), sb.tolist(), strict=True) for v in (x, y)], int(i1[i])]
        spans[r] = [(cuts[j] + 1, cuts[j + 1] + 1) for j in range(0, len(cuts), 2)]   # decoding, as step ranges
    p, dl = np.concatenate(pos), np.concatenate(delta)
    order = np.argsort(p, kind="stable")
    p, dl = p[order], np.cumsum(dl[order])
    # pieces: runs cut at every change point; each piece's weight is the count just after its start
    starts = np.unique(np.concatenate([first, p[p < total]]))
    ends = np.append(starts[1:], total)
    s = np.searchsorted(first, starts, side="right") - 1
    at = np.searchsorted(p, starts, side="right") - 1
    w = np.where(at >= 0, dl[np.maximum(at, 0)], 0)
    k = ends - starts
    step = seg.step()[s]
    a = seg.first()[s] + step * (starts - first[s])
    tokens = int((ledger.reqs.output[rs] - 1).sum())
    if (w < 0).any() or int((w * k).sum()) + len(stall_gaps) != tokens:
        return None                       # the log is not one iteration per token
    top = a + step * (k - 1)              # each piece's largest gap
    plain = ~np.isin(rs, stalled)
    lo, hi = np.searchsorted(starts, i0[plain] + 1), np.searchsorted(starts, i1[plain] + 1)   # change points: piece starts
    if len(lo):
        bounds = np.empty(2 * len(lo), dtype=np.int64)
        bounds[0::2], bounds[1::2] = lo, hi
        largest[rs[plain]] = np.maximum.reduceat(np.append(top, 0), bounds)[0::2] / FS_PER_S
    for r in stalled:
        best = max(b - a_ for a_, b in ledger.stalls[r])
        for x, y in spans[r]:
            if y > x:
                best = max(best, float(top[np.searchsorted(starts, x):np.searchsorted(starts, y)].max()) / FS_PER_S)
        largest[r] = best
    keep = w > 0
    ones = np.ones(len(stall_gaps), dtype=np.int64)
    return (np.concatenate([a[keep], to_fs(np.array(stall_gaps))]),
            np.concatenate([step[keep], np.zeros(len(stall_gaps), np.int64)]),
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
