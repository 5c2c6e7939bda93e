"""What every replica shares: a waiting queue and the logs of its state (the per-request ledger it
fills in is :mod:`.ledger`).

A replica is a simpy process. Requests reach it through :meth:`Replica.enqueue` (called by the
router at the arrival time); the replica wakes if it was idle. Each batching engine subclasses
:class:`Replica` (the continuous-batching engine :mod:`.engines.continuous`, the request-level
batcher :mod:`.engines.batch`, or one a plug-in registers in :data:`.engines.ENGINES`) and
implements ``start`` and ``on_arrival_while_busy``.

Times are kept exactly: each replica carries its own clock ``t`` (the end of its last iteration,
computed by summing iteration times), so results do not depend on how many simpy events were
used to reach a time — that is what lets fast-forward give the same per-request results.

Streamed tokens: a decoding sequence gains one token in every iteration of its replica, so its
tokens arrive at the replica's iteration ends from its first token to its last, except while it
is preempted (the ledger's ``stalls``: from its last token before the preemption to the token its
recomputed prefill samples). An engine that runs several iterations as one event gives
:meth:`Replica.record_busy` the iterations (``steps``), so the gaps between tokens (ITL) follow
exactly without an event per step.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from .binned import COMPACT_ROWS, FineBins, fold_busy, fold_log
from .ledger import Ledger

if TYPE_CHECKING:     # the engines import this module while the scenario package loads: types only
    from ..costmodel.inference import InferenceModel
    from .engines.base import ReplicaConfig, ReplicaPlan

KILL = "killed"   # the cause of the interrupt that stops a replica's process
FS_PER_S = 10**15  # the continuous engine's clock (engines.fastforward.FS)


@dataclass(frozen=True)
class Segments:
    """A replica's iterations as runs of steps: run ``s`` starts at ``t0[s]`` (seconds) and its step
    ``j`` (1-based, up to ``k[s]``) lasts ``A + C·(c0 + n·(j−1))`` fs and ends ``j·A + C·(j·c0 +
    n·j(j−1)/2)`` fs after ``t0`` — fast-forward's closed form (:class:`.engines.fastforward.Window`);
    a single iteration is a run of one step with ``C = 0``."""

    t0: np.ndarray
    A: np.ndarray
    C: np.ndarray
    c0: np.ndarray
    n: np.ndarray
    k: np.ndarray
    decodes: np.ndarray
    """per run: whether sequences decoding then gain a token in each of its steps (False: it pauses them)"""

    def offset(self, s: np.ndarray, j: np.ndarray) -> np.ndarray:
        """End of step ``j`` of run ``s`` after the run's start, fs."""
        return j * self.A[s] + self.C[s] * (j * self.c0[s] + self.n[s] * (j * (j - 1) // 2))

    def first(self) -> np.ndarray:
        """Duration of each run's first step, fs."""
        return self.A + self.C * self.c0

    def step(self) -> np.ndarray:
        """How much longer each step of a run is than the one before, fs."""
        return self.C * self.n


def to_fs(seconds: np.ndarray) -> np.ndarray:
    """Seconds as integer femtoseconds (the continuous engine's clock)."""
    return np.rint(np.asarray(seconds) * FS_PER_S).astype(np.int64)


class Replica(ABC):
    """Base class: queue, logs, wake-up. ``running`` counts requests in the current batch(es)."""

    fold_rows: int = COMPACT_ROWS
    """a streamed run folds a log into the replica's bins when it holds this many rows"""

    def __init__(self, *, env: simpy.Environment, index: int, ledger: Ledger, perf: InferenceModel,
                 cfg: ReplicaConfig, plan: ReplicaPlan, fast_forward: bool = True) -> None:
        self.env, self.index, self.ledger, self.perf, self.cfg, self.plan = env, index, ledger, perf, cfg, plan
        self.reqs = ledger.reqs
        self.fast_forward = fast_forward
        self.waiting: list[tuple[int, int, int]] = []   # heap of (-priority, order, request)
        self._order = 0
        self._front = 0
        self.running = 0
        self.outstanding = 0          # queued + running; changes only on arrival and completion
        self.t = 0.0
        self.idle_ev: simpy.Event | None = None
        self.dead = False
        self.draining = False
        self.on_drained: Callable[[Replica, float], None] | None = None
        self.life: Any = None
        # state log: one row per change of the waiting/running counts
        self.log_t, self.log_wait, self.log_run = array("d"), array("q"), array("q")
        # busy log: one row per event-advanced window of iterations
        self.busy_start, self.busy_end, self.busy_kv, self.busy_tokens = array("d"), array("d"), array("d"), array("d")
        # what each busy row ran (see record_busy): 0 one iteration, 1 a fast-forward window (its
        # parameters in _win, 8 numbers; only the newest can still be cut short), 2 an array of step ends
        self.busy_kind = array("b")
        self.busy_pause = array("b")      # 1: a sequence decoding then gained no token (a prefill-only iteration)
        self._win = (array("d"), array("q"), array("q"), array("q"), array("q"), array("q"))  # t0 s, A, C, c0, n, k
        self._open_win: Any = None
        self._step_ends: list[np.ndarray] = []
        # a streamed run (Ledger.streamed) folds the logs into fine bins as they grow (serving.binned)
        self.bins = FineBins() if ledger.streamed else None
        self.busy_seqs = array("q")     # streamed: sequences decoding (or paused) in each busy row, -1 unknown
        self.keep_s = 0.0               # streamed: busy rows this recent stay unfolded (the autoscaler reads them)
        self.gap_carry = (0, 0, 0)
        self._fold_at = self.fold_rows
        self.proc: simpy.Process | None = self.start()

    # ---- queue ---------------------------------------------------------------------------------
    def push(self, r: int, *, front: bool = False) -> None:
        """Queue request ``r`` by priority, FIFO within a priority; preempted requests go first."""
        if front:
            self._front -= 1
            order = self._front
        else:
            self._order += 1
            order = self._order
        heapq.heappush(self.waiting, (-self.ledger.priority[r], order, r))

    def kv_load(self, t: float) -> float:
        """Fraction of the KV cache in use or claimed by queued prompts (for the KV-aware router)."""
        return self.outstanding / max(self.kv_capacity_tokens, 1)

    def log(self, t: float) -> None:
        self.log_t.append(t)
        self.log_wait.append(len(self.waiting))
        self.log_run.append(self.running)
        if self.bins is not None and len(self.log_t) >= self.fold_rows:
            fold_log(self)

    def fold(self, end: float) -> None:
        """A streamed replica's logs, all folded into its bins once the run is over at ``end``."""
        if self.bins is not None:
            fold_busy(self, final=True)
            fold_log(self, end)

    def admissible(self, r: int) -> str | None:
        """Why request ``r`` can never run here (a rejection reason), or None."""
        return None

    def enqueue(self, r: int, t: float) -> None:
        """Request ``r`` arrives at time ``t`` (the router has chosen this replica)."""
        self.ledger.replica[r] = self.index
        self.outstanding += 1
        self.push(r)
        self.log(t)
        if self.idle_ev is not None:
            self.t = t
            ev, self.idle_ev = self.idle_ev, None
            ev.succeed()
        else:
            self.on_arrival_while_busy(r, t)

    def finished(self, rs: list[int], t: float) -> None:
        """Requests ``rs`` completed at ``t``."""
        self.running -= len(rs)
        self.outstanding -= len(rs)
        self.log(t)
        for r in rs:
            self.ledger.finish(r, t)
        if self.draining and self.outstanding == 0 and self.on_drained is not None:
            self.on_drained(self, t)

    @abstractmethod
    def on_arrival_while_busy(self, r: int, t: float) -> None:
        """A request queued while the replica works: the continuous engine may cut its window short,
        the dynamic batcher may stop waiting for more."""

    def held(self) -> list[int]:
        """Requests queued or running here (what a failure would lose)."""
        return [r for _, _, r in self.waiting]

    def kill(self) -> list[int]:
        """Stop this replica now; returns the requests it held (queued or running)."""
        held = [] if self.dead else self.held()
        self.dead = True
        now = self.env.now
        if self.busy_end and self.busy_end[-1] > now:
            self.busy_end[-1] = max(now, self.busy_start[-1])   # the work in progress is lost, not done
        self.waiting = []
        self.outstanding = self.running = 0
        if self.log_t:
            self.log(self.log_t[-1] if self.env.now < self.log_t[-1] else self.env.now)
        if self.proc is not None and self.proc.is_alive and self.env.active_process is not self.proc:
            self.proc.interrupt(KILL)
        return held

    def busy_between(self, a: float, b: float) -> float:
        """Seconds of [a, b] spent running iterations."""
        total, i = 0.0, len(self.busy_start) - 1
        while i >= 0 and self.busy_end[i] > a:
            total += max(0.0, min(self.busy_end[i], b) - max(self.busy_start[i], a))
            i -= 1
        return total

    def sleep(self):
        self.idle_ev = self.env.event()
        return self.idle_ev

    @abstractmethod
    def start(self) -> simpy.Process | None:
        """Begin serving: the batcher runs a simpy process, the continuous engine timeout callbacks."""

    def record_busy(self, start: float, end: float, kv_used: float, tokens: float, steps: Any = None,
                    decodes: bool = True, seqs: int | None = None) -> None:
        """A window of work from ``start`` to ``end``. ``steps``: its iterations, when it is more than
        one — a fast-forward window (:class:`.engines.fastforward.Window`: ``t0``, ``A``, ``C``, ``c0``,
        ``n``, ``k`` in fs; read when the result is built, so a window cut short counts the steps it
        ran), or an array of the iterations' end times in seconds; None: the window is one iteration.
        ``decodes``: whether the sequences decoding then gain a token in each iteration (False: a
        prefill-only iteration, which pauses them; prompts it completes still sample theirs). ``seqs``: the
        sequences decoding (or paused, when ``decodes`` is False) in each of its iterations, for a streamed
        run's token gaps (None: not known, and a streamed run reports no ITL)."""
        if self.bins is not None:
            if len(self.busy_start) >= self._fold_at:
                fold_busy(self)
                self._fold_at = len(self.busy_start) + self.fold_rows
            self.busy_seqs.append(-1 if seqs is None else seqs)
        self.busy_start.append(start)
        self.busy_end.append(end)
        self.busy_kv.append(kv_used)
        self.busy_tokens.append(tokens)
        self._close_window()
        self.busy_pause.append(0 if decodes else 1)
        if steps is None:
            self.busy_kind.append(0)
        elif isinstance(steps, np.ndarray):
            self.busy_kind.append(2)
            self._step_ends.append(steps)
        else:
            self.busy_kind.append(1)
            t0, A, C, c0, n, k = self._win
            t0.append(steps.t0 / FS_PER_S)
            A.append(steps.A)
            C.append(steps.C)
            c0.append(steps.c0)
            n.append(steps.n)
            k.append(steps.k)
            self._open_win = steps

    def _close_window(self) -> None:
        """The newest window's steps are final (it may have been cut short since it was recorded)."""
        if self._open_win is not None:
            self._win[5][-1] = self._open_win.k
            self._open_win = None

    def segments(self) -> Segments:
        """Every iteration run, in order, as runs of steps (read once the run is over): a fast-forward
        window is one run (exact integers, the same with or without fast-forward), any other row one
        run per iteration (durations rounded to the fs)."""
        self._close_window()
        t0 = np.array(self._win[0], dtype=np.float64)
        A, C, c0, n, k = (np.array(a, dtype=np.int64) for a in self._win[1:])
        kinds = np.array(self.busy_kind, dtype=np.int8)
        decodes = np.array(self.busy_pause, dtype=np.int8) == 0
        if (kinds == 1).all():
            return Segments(t0, A, C, c0, n, k, decodes)
        parts: list[tuple[np.ndarray, ...]] = []
        w = s = 0
        for i, kind in enumerate(kinds.tolist()):
            if kind == 1:
                parts.append((t0[w:w + 1], A[w:w + 1], C[w:w + 1], c0[w:w + 1], n[w:w + 1], k[w:w + 1],
                              decodes[i:i + 1]))
                w += 1
                continue
            if kind == 2:
                ends = self._step_ends[s]
                s += 1
            else:
                ends = np.array([self.busy_end[i]])
            starts = np.concatenate(([self.busy_start[i]], ends[:-1]))
            zero = np.zeros(len(ends), dtype=np.int64)
            parts.append((starts, to_fs(ends - starts), zero, zero, zero, np.ones(len(ends), dtype=np.int64),
                          np.full(len(ends), bool(decodes[i]))))
        cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
        A, C, c0, n, k = (c.astype(np.int64) for c in cols[1:6])
        return Segments(cols[0].astype(np.float64), A, C, c0, n, k, cols[6].astype(bool))

    @property
    def kv_capacity_tokens(self) -> int:
        return 0
