"""The per-request ledger: what happened to every request of a run (first scheduled, first token,
completion, preemptions, status and the reason for a rejection), filled in by the replicas.

Columns are numpy arrays indexed by request (NaN until it happens); in a streamed run
(:mod:`.streamed`) the in-flight columns are dictionaries that hold only the requests in flight.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .binned import TokenGaps

if TYPE_CHECKING:
    from .workload import Requests

PENDING, DONE, REJECTED, FAILED = 0, 1, 2, 3
REJECT_REASONS = ("", "queue_full", "exceeds_kv_capacity", "prompt_exceeds_max_batched_tokens", "exceeds_max_positions",
                  "shed", "retries_exhausted")


def _int_column(x: np.ndarray) -> array:
    """``x`` as a typed array of 64-bit ints (a view of the same buffer when ``x`` already is one)."""
    base = x.base if isinstance(x, np.ndarray) else None
    if isinstance(base, array) and base.typecode == "q" and len(base) == len(x):
        return base                            # already a column (a second ledger over the same requests)
    col = array("q")
    col.frombytes(np.ascontiguousarray(x, dtype=np.int64).tobytes())
    return col


class InFlight(dict[int, Any]):
    """A streamed run's per-request column of the requests in flight: reads as ``default`` for a
    request not in it (the arrays' NaN or 0), and the request's entry goes at its completion."""

    def __init__(self, default: float) -> None:
        super().__init__()
        self.default = default

    def __missing__(self, r: int) -> Any:
        return self.default


@dataclass
class Ledger:
    """Per-request outcomes, filled in by the replicas (NaN until it happens)."""

    reqs: Requests
    on_finish: Callable[[int, float], None] | None = None
    first_sched: np.ndarray = field(init=False)
    first_token: np.ndarray = field(init=False)
    done: np.ndarray = field(init=False)
    replica: np.ndarray = field(init=False)
    preemptions: np.ndarray = field(init=False)
    status: np.ndarray = field(init=False)
    reason: np.ndarray = field(init=False)
    generated: np.ndarray = field(init=False)
    kv_transferred: bool = False
    """a disaggregated decode pool's: each prompt's KV arrives from the prefill pool (serving.disaggregation)"""
    seed: int = 0
    """the scenario's seed (engines with random streams of their own derive them from it)"""
    streamed: bool = False
    """a streamed run (serving.streamed): the replicas fold their logs into bins (serving.binned)"""
    stream: Any = None
    """a streamed single-service run's :class:`.streamed.StreamStats`: each request's latencies go into
    it at completion, and its in-flight state (``first_sched``, ``first_token``, ``generated``,
    ``stalls``) is kept only while it is in flight"""

    def __post_init__(self) -> None:
        n = len(self.reqs)
        # the engine's hot loops index these (numpy scalar indexing is several times slower): typed
        # arrays give Python ints as fast as lists at 8 bytes a row (a list of ints takes 36), and the
        # request arrays become views of them, so each column is held once
        self.prompt = _int_column(self.reqs.prompt)
        self.output = _int_column(self.reqs.output)
        self.priority = _int_column(self.reqs.priority)
        self.reqs.prompt = np.frombuffer(self.prompt, dtype=np.int64)
        self.reqs.output = np.frombuffer(self.output, dtype=np.int64)
        self.reqs.priority = np.frombuffer(self.priority, dtype=np.int64)
        if self.stream is None:
            self.first_sched = np.full(n, np.nan)
            self.first_token = np.full(n, np.nan)
            self.generated = np.zeros(n, dtype=np.int64)
        else:      # read and written one request at a time by the engines, as the arrays are
            self.first_sched = cast(np.ndarray, InFlight(math.nan))
            self.first_token = cast(np.ndarray, InFlight(math.nan))
            self.generated = cast(np.ndarray, InFlight(0))
        self.done = np.full(n, np.nan)
        self.replica = np.full(n, -1, dtype=np.int32)
        self.preemptions = np.zeros(n, dtype=np.int32)
        self.status = np.zeros(n, dtype=np.int8)
        self.reason = np.zeros(n, dtype=np.int8)
        # per preempted request: [last token before the preemption, first token after it] (rare)
        self.stalls: dict[int, list[list[float]]] = {}
        self.gaps = TokenGaps() if self.streamed else None
        """a streamed run's token gaps (serving.binned), fed by its replicas' folds and the stalls"""

    def preempted(self, r: int, t: float) -> None:
        """Decoding request ``r`` was preempted at ``t`` (its last token so far came at ``t``)."""
        self.stalls.setdefault(r, []).append([t, np.nan])

    def resumed(self, r: int, t: float) -> None:
        """Request ``r``'s recomputed prefill sampled its next token at ``t`` (closes its stall)."""
        stalls = self.stalls.get(r)
        if stalls and stalls[-1][1] != stalls[-1][1]:
            stalls[-1][1] = t
            if self.gaps is not None:          # a streamed run: the stall is one gap, counted now
                self.gaps.add_gap(t - stalls[-1][0])

    def finish(self, r: int, t: float) -> None:
        self.done[r] = t
        self.status[r] = DONE
        if self.on_finish is not None:
            self.on_finish(r, t)
        if self.stream is not None:
            self.stream.completed(self, r, t)
            self._free(r)

    def _free(self, r: int) -> None:
        """A streamed run lets go of a finished request's in-flight state."""
        for col in (self.first_sched, self.first_token, self.generated):
            cast(InFlight, col).pop(r, None)
        self.stalls.pop(r, None)

    def fail(self, r: int, t: float) -> None:
        """Lost with its replica more often than the retry budget allows."""
        self.status[r] = FAILED
        self.reason[r] = REJECT_REASONS.index("retries_exhausted")
        self.done[r] = t
        if self.on_finish is not None:
            self.on_finish(r, t)
        if self.stream is not None:
            self._free(r)

    def reset_for_retry(self, r: int) -> None:
        """Its replica was lost: it starts over (queueing and first token are measured again)."""
        self.first_token[r] = np.nan
        self.generated[r] = 0
        self.stalls.pop(r, None)

    def reject(self, r: int, t: float, reason: str) -> None:
        self.status[r] = REJECTED
        self.reason[r] = REJECT_REASONS.index(reason)
        self.done[r] = t
        if self.on_finish is not None:
            self.on_finish(r, t)
        if self.stream is not None:
            self._free(r)
