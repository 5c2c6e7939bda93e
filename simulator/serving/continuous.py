"""Continuous batching with a paged KV cache (vLLM semantics), advanced event by event.

Each iteration the scheduler (as vLLM's) gives every decoding sequence one token, continues the
prompts being prefilled in chunks, then admits waiting requests in priority/FIFO order while
``max_num_seqs``, the ``max_batched_tokens`` budget and free KV blocks allow. The KV cache is
``kv_block_tokens``-token blocks; a sequence takes a new block when its last one is full, and
when none is free the scheduler preempts the lowest-priority, most recently admitted sequence:
its blocks are freed and it goes back to the front of the queue, to be prefilled again
(prompt plus the tokens it had generated — vLLM's preemption by recompute).

Fast-forward: while the batch is decode-only, nothing can join it (the queue is empty or its
head is blocked, which stays true as blocks only get scarcer), so its composition is fixed until
the next completion or possible block shortage. Those ``k`` steps are one simpy event. Step
``i`` of the window lasts ``A + C·(c₀ + n·i)`` (``c₀`` cached tokens read by ``n`` sequences),
so the window ends at ``t₀ + k·A + C·(k·c₀ + n·k(k−1)/2)``. The replica keeps time in integer
femtoseconds, so that closed form is exact and equals the step-by-step sum bit for bit: fast-
forward changes how many events are used, never a result. An arrival that could join cuts the
window at the end of the step in progress.

Decoding sequences are kept so that a window costs O(1), not O(batch): a step counter, the sum
of cached tokens, a heap of the steps at which sequences finish, and a count of sequences per
block *phase*. All decoding sequences gain one token per step, so a sequence that joined at step
``J`` with ``c`` cached tokens needs a new block exactly at the steps ``S`` with
``S − 1 ≡ J − c (mod B)``: the blocks taken over any window follow from the B phase counts.
Only preemption, rare, scans the batch.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import simpy

from .replica import Replica

FS = 10**15  # the replica's clock ticks in femtoseconds


def to_fs(seconds: float) -> int:
    return round(seconds * FS)


class ContinuousReplica(Replica):
    def __init__(self, *, max_num_seqs: int, max_batched_tokens: int, kv_tokens: int, **kw: Any) -> None:
        cfg = kw["cfg"]
        self.B = cfg.kv_block_tokens
        self.total_blocks = kv_tokens // self.B
        self.free = self.total_blocks
        self.max_seqs = max_num_seqs
        self.max_tokens = max_batched_tokens
        self.chunked = cfg.chunked_prefill
        self.no_evict = cfg.scheduler_policy == "guaranteed_no_evict"
        self.committed = 0                 # guaranteed_no_evict: final blocks of every admitted sequence
        self.hit_rate = 0.0
        # decoding sequences: r -> [join_step, ctx_at_join, finish_step, priority, admission order]
        self.seqs: dict[int, list[int]] = {}
        self.step = 0                      # decode steps run so far on this replica
        self.ctx_sum = 0                   # cached tokens of the decoding sequences, now
        self.finish_heap: list[tuple[int, int, int]] = []     # (finish step, order, r)
        self.phase = [0] * self.B          # decoding sequences per block phase (J - c) mod B
        # prompts being prefilled: [r, done, target, blocks, priority, order]
        self.prefilling: list[list[int]] = []
        self.chunks: list[tuple[list[int], int]] = []
        self.win: tuple[int, int, int, int, int] | None = None   # (t0, A, C, c0, n) in fs, see _end
        self.win_k = 0
        self.t_fs = 0
        self._admit = 0
        self.reserved = 0
        self._k = 0
        self._base: dict[int, int] = {}
        super().__init__(**kw)
        self._coef = to_fs(self.perf.decode_coef_per_step)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.total_blocks * self.B

    def _ctx(self, r: int) -> int:
        s = self.seqs[r]
        return s[1] + self.step - s[0]

    def _valid(self, entry: tuple[int, int, int]) -> bool:
        s = self.seqs.get(entry[2])
        return s is not None and s[4] == entry[1]

    # ---- admission -------------------------------------------------------------------------------
    def admissible(self, r: int) -> str | None:
        p, o = self.ledger.prompt[r], self.ledger.output[r]
        if math.ceil((p + o - 1) / self.B) > self.total_blocks:
            return "exceeds_kv_capacity"
        if not self.chunked and p + o - 1 > self.max_tokens:
            # a preempted request re-prefills prompt + generated tokens in one chunk
            return "prompt_exceeds_max_batched_tokens"
        return None

    def kv_load(self, t: float) -> float:
        used = self.total_blocks - self.free
        if self.win is not None and self.win_k > 1:
            # as a step-by-step run would see it: blocks of the steps done and of the one in progress
            used += self._blocks_over(self._steps_done(to_fs(t)) + 1) - self.reserved
        queued = sum(self.ledger.prompt[r] for _, _, r in self.waiting)
        return (used + queued / self.B) / max(self.total_blocks, 1)

    def on_arrival_while_busy(self, r: int, t: float) -> None:
        if self.win is None or self.win_k < 2 or self.waiting[0][2] != r:
            return  # no window to cut, or the newcomer queues behind a blocked head
        j = self._steps_done(to_fs(t)) + 1                  # the step in progress completes
        if j < self.win_k:
            self.win_k = j
            self.busy_end[-1] = self._end(j) / FS
            self._arm()                                     # the old wake-up becomes stale

    def _end(self, j: int) -> int:
        """End of the window's step ``j`` (1-based), in fs: exact integer arithmetic."""
        t0, A, C, c0, n = self.win  # type: ignore[misc]
        return t0 + j * A + C * (j * c0 + n * j * (j - 1) // 2)

    def _steps_done(self, t: int) -> int:
        """Steps of the current window finished by time ``t`` (fs)."""
        lo, hi = 0, self.win_k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._end(mid) <= t:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # ---- the event loop ------------------------------------------------------------------------------
    # The engine is driven by simpy timeouts with callbacks rather than a generator process: cutting
    # a window short (an arrival that can join) then costs one new timeout instead of an interrupt,
    # and the superseded wake-up is recognised as stale by its generation number.
    def start(self) -> None:
        self._gen = 0
        self.env.timeout(0).callbacks.append(self._woken)   # begins when simpy next runs, like a process
        return None

    def _woken(self, _ev: simpy.Event | None = None) -> None:
        if not self.dead:
            self.t_fs = to_fs(self.t)                # a replica can start (scale-up) or wake at any time
            self._next()

    def _next(self) -> None:
        if not self.waiting and not self.running:
            self.sleep().callbacks.append(self._woken)
            return
        self.plan()
        self._arm()

    def _arm(self) -> None:
        """Wake at the end of the current window (a new call supersedes the previous one)."""
        self._gen += 1
        gen = self._gen
        ev = self.env.timeout(max(self._end(self.win_k) / FS - self.env.now, 0.0))
        ev.callbacks.append(lambda _ev: self._window_done(gen))

    def _window_done(self, gen: int) -> None:
        if gen != self._gen or self.dead:
            return                                   # superseded by a cut, or the replica is gone
        self.commit(self.win_k)
        self.win = None
        self._next()

    def held(self) -> list[int]:
        return [*super().held(), *(e[0] for e in self.prefilling), *self.seqs]

    # ---- scheduling one iteration (or a window of identical decode steps) -------------------------
    def _victim(self) -> tuple[str, int]:
        """The sequence to preempt: lowest priority, then most recently admitted."""
        best: tuple[int, int] | None = None
        where = ("", -1)
        for r, s in self.seqs.items():
            k = (s[3], -s[4])
            if best is None or k < best:
                best, where = k, ("decode", r)
        for i, e in enumerate(self.prefilling):
            k = (e[4], -e[5])
            if best is None or k < best:
                best, where = k, ("prefill", i)
        return where

    def _preempt(self, where: tuple[str, int], t: float) -> None:
        kind, i = where
        if kind == "decode":
            r = i
            ctx = self._ctx(r)
            self.free += -(-ctx // self.B)
            self.ctx_sum -= ctx
            s = self.seqs.pop(r)
            self.phase[(s[0] - s[1]) % self.B] -= 1
            self.ledger.generated[r] = self.ledger.output[r] - (s[2] - self.step)
        else:
            e = self.prefilling.pop(i)
            r = e[0]
            self.free += e[3]
            self.chunks = [(c, q) for c, q in self.chunks if c is not e]
        self.ledger.preemptions[r] += 1
        self.running -= 1
        self.push(r, front=True)
        self.log(t)

    def _blocks_over(self, k: int) -> int:
        """New KV blocks the decoding sequences take over the next ``k`` steps."""
        B, ph = self.B, self.phase
        full, rest = divmod(k, B)
        if not rest:
            return full * len(self.seqs)
        i = self.step % B
        part = sum(ph[i:i + rest])
        if i + rest > B:
            part += sum(ph[:i + rest - B])
        return full * len(self.seqs) + part

    def plan(self) -> None:
        """Choose the next iteration's batch: a mixed iteration, or a window of decode steps."""
        t0 = self.t
        self._reserve_decode_slots(t0)
        self.chunks = []
        budget = self.max_tokens - len(self.seqs)
        if self.prefilling:
            budget = self._continue_prefills(budget, t0)
        if self.waiting:
            self._admit_waiting(budget, t0)
        if self.chunks:
            self._mixed_iteration()
        else:
            self._decode_window()

    def _reserve_decode_slots(self, t0: float) -> None:
        """1. A KV slot for every decoding sequence's next token, preempting while blocks are short."""
        need = 0
        while self.seqs:
            need = self.phase[self.step % self.B]   # sequences whose last block is full
            if need <= self.free:
                break
            self._preempt(self._victim(), t0)
        self.reserved = need                        # held until commit allocates them
        self.free -= need

    def _continue_prefills(self, budget: int, t0: float) -> int:
        """2. Prompts already being prefilled get the next chunk, in admission order."""
        B = self.B
        for e in list(self.prefilling):
            if budget <= 0:
                break
            q = min(e[2] - e[1], budget)
            while e in self.prefilling and -(-(e[1] + q) // B) - e[3] > self.free:
                self._preempt(self._victim(), t0)
            if e not in self.prefilling:
                continue
            self._take(e, q)
            budget -= q
        return budget

    def _admit_waiting(self, budget: int, t0: float) -> None:
        """3. Admit from the queue while sequences, tokens and blocks allow; stop at a blocked head."""
        B, led = self.B, self.ledger
        n_run = len(self.seqs) + len(self.prefilling)
        while self.waiting and n_run < self.max_seqs and budget > 0:
            r = self.waiting[0][2]
            target = led.prompt[r] + int(led.generated[r])
            cached = min(int(self.hit_rate * led.prompt[r] / B) * B, target - 1)
            q = target - cached
            if q > budget:
                if not self.chunked:
                    break
                q = budget
            if -(-(cached + q) // B) > self.free:
                break
            if self.no_evict:
                final = -(-(led.prompt[r] + led.output[r] - 1) // B)
                if self.committed + final > self.total_blocks:
                    break
                self.committed += final
            heapq.heappop(self.waiting)
            self._admit += 1
            held = -(-cached // B)
            e = [r, cached, target, held, led.priority[r], self._admit]
            self.free -= held
            self.prefilling.append(e)
            self._take(e, q)
            budget -= q
            n_run += 1
            self.running += 1
            if led.first_sched[r] != led.first_sched[r]:  # NaN: first admission
                led.first_sched[r] = t0
            self.log(t0)

    def _mixed_iteration(self) -> None:
        """Prompt chunks and decode tokens in one forward: a window of one step."""
        n, t0_fs = len(self.seqs), self.t_fs
        work = sum(q * (e[1] + (q + 1) / 2) for e, q in self.chunks)
        tokens = n + sum(q for _, q in self.chunks)
        sampled = n + sum(1 for e, q in self.chunks if e[1] + q == e[2])
        d = to_fs(self.perf.iteration_time(tokens=tokens, sampled=sampled, prefill_work=work, decode_seqs=n,
                                           decode_ctx=self.ctx_sum + n))
        self.win, self.win_k = (t0_fs, d, 0, 0, 0), 1
        self.record_busy(self.t, (t0_fs + d) / FS, (self.total_blocks - self.free) * self.B, tokens)
        self._k = 1 if n else 0

    def _decode_window(self) -> None:
        """k identical decode steps (k = 1 without fast-forward or near a block shortage). Over k steps
        each sequence takes at most ceil(k/B) new blocks, so k <= B·floor(free/n) is safe."""
        n, B = len(self.seqs), self.B
        if n == 0:  # cannot happen: an idle replica admits its (admissible) head; a bug if it does
            raise RuntimeError(f"replica {self.index}: scheduler stalled with {len(self.waiting)} waiting")
        k = 1
        free = self.free + self.reserved
        if self.fast_forward and (free >= n or self.no_evict):
            heap = self.finish_heap
            while not self._valid(heap[0]):
                heapq.heappop(heap)
            k = heap[0][0] - self.step
            if not self.no_evict:                   # no_evict: every final block is already set aside
                k = max(min(k, B * (free // n)), 1)
        self._k = k
        A = self._base.get(n)
        if A is None:
            A = self._base[n] = to_fs(self.perf.decode_base(n))
        self.win, self.win_k = (self.t_fs, A, self._coef, self.ctx_sum + n, n), k
        self.record_busy(self.t, self._end(k) / FS, (self.total_blocks - self.free + self.reserved) * B, n)

    def _take(self, e: list[int], q: int) -> None:
        """Schedule ``q`` prompt tokens of ``e`` this iteration and allocate their blocks."""
        nb = -(-(e[1] + q) // self.B) - e[3]
        self.free -= nb
        e[3] += nb
        self.chunks.append((e, q))

    # ---- applying the steps that ran ----------------------------------------------------------------
    def commit(self, k: int) -> None:
        end = self._end(k)
        self.t_fs = end
        self.t = t = end / FS
        led, B = self.ledger, self.B
        self.free += self.reserved
        self.reserved = 0
        finished: list[int] = []
        if self.seqs and self._k:
            k = min(k, self._k)
            last = self.step + k
            self.free -= self._blocks_over(k)               # blocks taken during these steps
            self.step = last
            self.ctx_sum += len(self.seqs) * k
            heap = self.finish_heap
            while heap and heap[0][0] <= last:
                e = heapq.heappop(heap)
                if self._valid(e):
                    r = e[2]
                    ctx = self._ctx(r)
                    self.free += -(-ctx // B)
                    self.ctx_sum -= ctx
                    s = self.seqs.pop(r)
                    self.phase[(s[0] - s[1]) % B] -= 1
                    finished.append(r)
        for e, q in self.chunks:
            e[1] += q
            if e[1] == e[2]:                                # prompt done: it samples a token
                r = e[0]
                self.prefilling.remove(e)
                if led.first_token[r] != led.first_token[r]:
                    led.first_token[r] = t
                rem = self.ledger.output[r] - int(led.generated[r]) - 1
                if rem == 0:
                    finished.append(r)
                    self.free += e[3]
                else:
                    self._join(r, ctx=e[2], rem=rem, prio=e[4], order=e[5])
        self.chunks = []
        if self.free < 0:  # the scheduler's invariant; a bug if it ever fails
            raise RuntimeError(f"replica {self.index}: KV cache over capacity by {-self.free} blocks")
        if finished:
            for r in finished:
                led.generated[r] = self.ledger.output[r]
                if self.no_evict:
                    self.committed -= -(-(led.prompt[r] + led.output[r] - 1) // B)
            self.finished(finished, t)

    def _join(self, r: int, *, ctx: int, rem: int, prio: int, order: int) -> None:
        """A sequence starts decoding: it finishes after ``rem`` steps and needs a block whenever its
        cached tokens fill the last one (ctx ≡ 0 mod B before a step)."""
        S = self.step
        self.seqs[r] = [S, ctx, S + rem, prio, order]
        self.ctx_sum += ctx
        self.phase[(S - ctx) % self.B] += 1
        heapq.heappush(self.finish_heap, (S + rem, order, r))
