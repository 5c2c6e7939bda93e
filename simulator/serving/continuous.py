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
the next completion or possible block shortage. Those ``k`` steps are one simpy event: their
times are an arithmetic progression in the cached tokens, summed in the same order a one-step
simulation would sum them. An arrival that could join cuts the window at the end of the step
in progress.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import simpy

from .replica import Replica

_I = np.int64


class ContinuousReplica(Replica):
    def __init__(self, *, max_num_seqs: int, max_batched_tokens: int, kv_tokens: int, **kw) -> None:
        cfg = kw["cfg"]
        self.B = cfg.kv_block_tokens
        self.total_blocks = kv_tokens // self.B
        self.free = self.total_blocks
        self.max_seqs = max_num_seqs
        self.max_tokens = max_batched_tokens
        self.chunked = cfg.chunked_prefill
        self.hit_rate = 0.0
        # decoding sequences (struct of arrays) and prompts being prefilled ([r, done, target, blocks, prio, order])
        self.ids = self.ctx = self.rem = self.blk = self.prio = self.ord = np.zeros(0, dtype=_I)
        self.prefilling: list[list[int]] = []
        self.chunks: list[tuple[list[int], int]] = []
        self.ends: np.ndarray | None = None
        self._admit = 0
        self.reserved = 0
        super().__init__(**kw)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.total_blocks * self.B

    # ---- admission -------------------------------------------------------------------------------
    def admissible(self, r: int) -> str | None:
        p, o = int(self.reqs.prompt[r]), int(self.reqs.output[r])
        if math.ceil((p + o - 1) / self.B) > self.total_blocks:
            return "exceeds_kv_capacity"
        if not self.chunked and p + o - 1 > self.max_tokens:
            # a preempted request re-prefills prompt + generated tokens in one chunk
            return "prompt_exceeds_max_batched_tokens"
        return None

    def kv_load(self, t: float) -> float:
        used = self.total_blocks - self.free
        if self.ends is not None and len(self.ids) and len(self.ends) > 1:
            j = int(np.searchsorted(self.ends, t, side="right"))  # steps of the window already done
            if j:
                used += int(np.sum(-(-(self.ctx + j) // self.B) - self.blk))
        queued = sum(int(self.reqs.prompt[r]) for _, _, r in self.waiting)
        return (used + queued / self.B) / max(self.total_blocks, 1)

    def on_arrival_while_busy(self, r: int, t: float) -> None:
        ends = self.ends
        if ends is None or len(ends) < 2 or self.waiting[0][2] != r:
            return  # no window to cut, or the newcomer queues behind a blocked head
        j = int(np.searchsorted(ends, t, side="right"))
        if j < len(ends) - 1:
            self.ends = ends[: j + 1]
            self.proc.interrupt()

    # ---- the process -------------------------------------------------------------------------------
    def run(self):
        env = self.env
        while True:
            if not self.waiting and not self.running:
                yield self.sleep()
                continue
            self.ends = self.plan()
            while True:
                try:
                    yield env.timeout(max(float(self.ends[-1]) - env.now, 0.0))
                    break
                except simpy.Interrupt:
                    continue
            self.commit(len(self.ends))
            self.ends = None

    # ---- scheduling one iteration (or a window of identical decode steps) -------------------------
    def _victim(self) -> tuple[str, int]:
        """The sequence to preempt: lowest priority, then most recently admitted."""
        best: tuple[int, int] | None = None
        where = ("", -1)
        if len(self.ids):
            key = self.prio * (1 << 40) - self.ord      # smallest = lowest priority, latest order
            i = int(np.argmin(key))
            best, where = (int(self.prio[i]), -int(self.ord[i])), ("decode", i)
        for i, e in enumerate(self.prefilling):
            k = (e[4], -e[5])
            if best is None or k < best:
                best, where = k, ("prefill", i)
        return where

    def _preempt(self, where: tuple[str, int], t: float) -> None:
        kind, i = where
        if kind == "decode":
            r = int(self.ids[i])
            self.free += int(self.blk[i])
            self.ledger.generated[r] = int(self.reqs.output[r]) - int(self.rem[i])
            keep = np.ones(len(self.ids), dtype=bool)
            keep[i] = False
            self._keep(keep)
        else:
            e = self.prefilling.pop(i)
            r = e[0]
            self.free += e[3]
            self.chunks = [(c, q) for c, q in self.chunks if c is not e]
        self.ledger.preemptions[r] += 1
        self.running -= 1
        self.push(r, front=True)
        self.log(t)

    def _keep(self, keep: np.ndarray) -> None:
        self.ids, self.ctx, self.rem = self.ids[keep], self.ctx[keep], self.rem[keep]
        self.blk, self.prio, self.ord = self.blk[keep], self.prio[keep], self.ord[keep]

    def plan(self) -> np.ndarray:
        """Choose the next iteration's batch and return the end time(s) of its step(s)."""
        t0, B = self.t, self.B
        # 1. a KV slot for every decoding sequence's next token, preempting while blocks are short
        need = 0
        while len(self.ids):
            need = int(np.count_nonzero(self.ctx == self.blk * B))
            if need <= self.free:
                break
            self._preempt(self._victim(), t0)
        self.reserved = need                                # held until commit allocates them
        self.free -= need
        n = len(self.ids)
        budget = self.max_tokens - n
        # 2. prompts already being prefilled, in admission order
        self.chunks = []
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
        # 3. admit from the queue while sequences, tokens and blocks allow (stop at a blocked head)
        n_run = len(self.ids) + len(self.prefilling)
        while self.waiting and n_run < self.max_seqs and budget > 0:
            r = self.waiting[0][2]
            target = int(self.reqs.prompt[r]) + int(self.ledger.generated[r])
            cached = min(int(self.hit_rate * int(self.reqs.prompt[r]) / B) * B, target - 1)
            q = target - cached
            if q > budget:
                if not self.chunked:
                    break
                q = budget
            if -(-(cached + q) // B) > self.free:
                break
            heapq.heappop(self.waiting)
            self._admit += 1
            e = [r, cached, target, 0, int(self.reqs.priority[r]), self._admit]
            self.free -= -(-cached // B)
            e[3] = -(-cached // B)
            self.prefilling.append(e)
            self._take(e, q)
            budget -= q
            n_run += 1
            self.running += 1
            if np.isnan(self.ledger.first_sched[r]):
                self.ledger.first_sched[r] = t0
            self.log(t0)
        n = len(self.ids)
        if self.chunks:                                     # a mixed iteration: one step
            work = sum(q * (e[1] + (q + 1) / 2) for e, q in self.chunks)
            tokens = n + sum(q for _, q in self.chunks)
            sampled = n + sum(1 for e, q in self.chunks if e[1] + q == e[2])
            d = self.perf.iteration_time(tokens=tokens, sampled=sampled, prefill_work=work, decode_seqs=n,
                                         decode_ctx=int(self.ctx.sum()) + n)
            self.record_busy(t0, t0 + d, (self.total_blocks - self.free) * B, tokens)
            return np.array([t0 + d])
        # decode-only: k identical steps (k = 1 without fast-forward or near a block shortage)
        if n == 0:  # cannot happen: an idle replica admits its (admissible) head; a bug if it does
            raise RuntimeError(f"replica {self.index}: scheduler stalled with {len(self.waiting)} waiting")
        # Over k steps each sequence takes at most ceil(k/B) new blocks, so k <= B·floor(free/n) is safe.
        k = 1
        free = self.free + self.reserved
        if self.fast_forward and free >= n:
            k = max(min(int(self.rem.min()), B * (free // n)), 1)
        c0 = int(self.ctx.sum()) + n
        steps = self.perf.decode_base(n) + self.perf.decode_coef * (c0 + n * np.arange(k, dtype=_I))
        ends = np.cumsum(np.concatenate(([t0], steps)))[1:]
        self.record_busy(t0, float(ends[-1]), (self.total_blocks - self.free + self.reserved) * B, n)
        return ends

    def _take(self, e: list[int], q: int) -> None:
        """Schedule ``q`` prompt tokens of ``e`` this iteration and allocate their blocks."""
        nb = -(-(e[1] + q) // self.B) - e[3]
        self.free -= nb
        e[3] += nb
        self.chunks.append((e, q))

    # ---- applying the steps that ran ----------------------------------------------------------------
    def commit(self, k: int) -> None:
        t = float(self.ends[k - 1])
        # the window may have been cut: its busy record ends at the last step that ran
        self.busy_end[-1] = t
        self.t = t
        led, B = self.ledger, self.B
        self.free += self.reserved
        self.reserved = 0
        finished: list[int] = []
        if len(self.ids):
            self.ctx = self.ctx + k
            self.rem = self.rem - k
            nb = -(-self.ctx // B)
            self.free -= int(np.sum(nb - self.blk))
            self.blk = nb
            done = self.rem == 0
            if done.any():
                for i in np.flatnonzero(done):
                    finished.append(int(self.ids[i]))
                    self.free += int(self.blk[i])
                self._keep(~done)
        new: list[list[int]] = []
        for e, q in self.chunks:
            e[1] += q
            if e[1] == e[2]:                                # prompt done: it samples a token
                r = e[0]
                self.prefilling.remove(e)
                if np.isnan(led.first_token[r]):
                    led.first_token[r] = t
                rem = int(self.reqs.output[r]) - int(led.generated[r]) - 1
                if rem == 0:
                    finished.append(r)
                    self.free += e[3]
                else:
                    new.append([r, e[2], rem, e[3], e[4], e[5]])
        self.chunks = []
        if new:
            arr = np.array(new, dtype=_I).T
            self.ids = np.concatenate((self.ids, arr[0]))
            self.ctx = np.concatenate((self.ctx, arr[1]))
            self.rem = np.concatenate((self.rem, arr[2]))
            self.blk = np.concatenate((self.blk, arr[3]))
            self.prio = np.concatenate((self.prio, arr[4]))
            self.ord = np.concatenate((self.ord, arr[5]))
        if finished:
            self.running -= len(finished)
            self.log(t)
            for r in finished:
                led.generated[r] = int(self.reqs.output[r])
                led.finish(r, t)
