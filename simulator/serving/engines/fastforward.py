"""Fast-forward arithmetic: a window of identical decode steps as one event, exactly.

While the batch is decode-only and nothing can join it, its composition is fixed until the next
completion or possible block shortage, so those ``k`` steps are one simpy event. Step ``i`` of
the window lasts ``A + C·(c₀ + n·(i−1))`` (``c₀`` cached tokens read by ``n`` sequences), so
step ``j`` ends at ``t₀ + j·A + C·(j·c₀ + n·j(j−1)/2)``. Time is kept in integer femtoseconds,
so that closed form is exact and equals the step-by-step sum bit for bit: fast-forward changes
how many events are used, never a result.

:class:`DecodeBatch` keeps the decoding sequences so that a window costs O(1), not O(batch): a
step counter, the sum of cached tokens, a heap of the steps at which sequences finish, and a
count of sequences per block *phase*. All decoding sequences gain one token per step, so a
sequence that joined at step ``J`` with ``c`` cached tokens needs a new block exactly at the
steps ``S`` with ``S − 1 ≡ J − c (mod B)``: the blocks taken over any window follow from the
``B`` phase counts.
"""

from __future__ import annotations

import heapq

from .kv import DecodeSeq

FS = 10**15  # the engine's clock ticks in femtoseconds


def to_fs(seconds: float) -> int:
    return round(seconds * FS)


class Window:
    """``k`` steps from ``t0`` (fs): step ``i`` lasts ``A + C·(c0 + n·(i−1))`` fs."""

    __slots__ = ("A", "C", "c0", "k", "n", "t0")

    def __init__(self, t0: int, A: int, C: int, c0: int, n: int, k: int) -> None:
        self.t0, self.A, self.C, self.c0, self.n, self.k = t0, A, C, c0, n, k

    def end(self, j: int) -> int:
        """End of step ``j`` (1-based), in fs: exact integer arithmetic."""
        return self.t0 + j * self.A + self.C * (j * self.c0 + self.n * j * (j - 1) // 2)

    def steps_done(self, t: int) -> int:
        """Steps finished by time ``t`` (fs)."""
        lo, hi = 0, self.k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.end(mid) <= t:
                lo = mid
            else:
                hi = mid - 1
        return lo


class DecodeBatch:
    """The decoding sequences, kept so that advancing ``k`` steps costs O(1) plus the finishers."""

    __slots__ = ("B", "ctx_sum", "finish_heap", "grown", "phase", "seqs", "step")

    def __init__(self, block_tokens: int) -> None:
        self.B = block_tokens
        self.seqs: dict[int, DecodeSeq] = {}
        self.step = 0                                     # decode steps run so far
        self.ctx_sum = 0                                  # cached tokens of the decoding sequences, now
        self.finish_heap: list[tuple[int, int, int]] = []  # (finish step, order, r); stale once r leaves
        self.phase = [0] * block_tokens                   # sequences per block phase (J − c) mod B
        self.grown = 0                                    # blocks the last advance took

    def __len__(self) -> int:
        return len(self.seqs)

    def ctx(self, r: int) -> int:
        """Cached tokens of sequence ``r`` now."""
        s = self.seqs[r]
        return s.ctx_at_join + self.step - s.join_step

    def join(self, r: int, *, ctx: int, rem: int, prio: int, order: int) -> None:
        """``r`` starts decoding with ``ctx`` cached tokens; it finishes after ``rem`` steps and
        needs a block whenever its cached tokens fill the last one (ctx ≡ 0 mod B before a step)."""
        S = self.step
        self.seqs[r] = DecodeSeq(S, ctx, S + rem, prio, order)
        self.ctx_sum += ctx
        self.phase[(S - ctx) % self.B] += 1
        heapq.heappush(self.finish_heap, (S + rem, order, r))

    def leave(self, r: int) -> tuple[DecodeSeq, int]:
        """``r`` stops decoding (finished or preempted): its record and its cached tokens."""
        ctx = self.ctx(r)
        self.ctx_sum -= ctx
        s = self.seqs.pop(r)
        self.phase[(s.join_step - s.ctx_at_join) % self.B] -= 1
        return s, ctx

    def blocks_over(self, k: int) -> int:
        """New blocks the decoding sequences take over the next ``k`` steps."""
        B, ph = self.B, self.phase
        full, rest = divmod(k, B)
        if not rest:
            return full * len(self.seqs)
        i = self.step % B
        part = sum(ph[i:i + rest])
        if i + rest > B:
            part += sum(ph[:i + rest - B])
        return full * len(self.seqs) + part

    def steps_to_next_finish(self) -> int:
        """Steps until the first decoding sequence finishes (stale heap entries are dropped)."""
        heap, seqs = self.finish_heap, self.seqs
        while True:
            f, order, r = heap[0]
            s = seqs.get(r)
            if s is not None and s.order == order:
                return f - self.step
            heapq.heappop(heap)

    def advance(self, k: int, finished: list[int]) -> int:
        """Run ``k`` steps: every sequence gains ``k`` tokens; those done leave and are appended to
        ``finished``. Returns the blocks freed less the blocks taken."""
        B = self.B
        self.grown = grown = self.blocks_over(k)
        freed = -grown
        last = self.step + k
        self.step = last
        self.ctx_sum += len(self.seqs) * k
        heap, seqs = self.finish_heap, self.seqs
        while heap and heap[0][0] <= last:
            _, order, r = heapq.heappop(heap)
            s = seqs.get(r)
            if s is not None and s.order == order:
                ctx = s.ctx_at_join + last - s.join_step
                freed += -(-ctx // B)
                self.ctx_sum -= ctx
                del seqs[r]
                self.phase[(s.join_step - s.ctx_at_join) % B] -= 1
                finished.append(r)
        return freed
