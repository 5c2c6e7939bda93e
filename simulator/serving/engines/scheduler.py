"""The continuous-batching scheduling policy, in vLLM's order, on the paged KV cache.

Each iteration :meth:`Scheduler.schedule`

1. gives every decoding sequence a KV slot for its next token, preempting while blocks are short;
2. continues the prompts already being prefilled, in admission order, in chunks that fit the
   ``max_batched_tokens`` budget;
3. admits waiting requests in priority/FIFO order while ``max_num_seqs``, the token budget and
   free blocks allow (and, under guaranteed_no_evict, while their final KV fits beside every
   promise); it stops at the first request that does not fit, so the queue's order holds. An
   iteration that preempted admits nobody.

When blocks run out the lowest-priority, most recently admitted sequence is preempted: its
blocks are freed and it goes back to the front of the queue, to be prefilled again (prompt plus
the tokens it had generated — vLLM's preemption by recompute), from its blocks still in the
prefix cache if prefix caching is on (:mod:`.kv`). These two rules are vLLM V1's
(vllm/v1/core/sched/scheduler.py at vllm-project/vllm 5da6e0c5b507: ``schedule``, line 338, runs
the running requests first, 373–493, preempting ``self.running.pop()`` while ``allocate_slots``
fails, 451–493; ``_preempt_request``, 932–952, frees the blocks, resets ``num_computed_tokens`` to
0 and puts the request at the front of the waiting queue; the waiting queue is scheduled only
``if not preempted_reqs``, 553–554; a request coming back finds its cached blocks through
``get_computed_blocks``, 603). Without them a long prompt mid-prefill, the newest sequence, is
preempted whenever decodes need blocks, re-admitted at once because its first chunk fits, and
restarts from token 0 before it can finish: a livelock that cut Llama-3.1-8B FP8's offline
throughput on one H200 at 20000/2000 tokens to 606 output tok/s with 10,157 preemptions for 1,000
requests, against 1,514 under guaranteed_no_evict (now 1,469 with 121; tests/test_scheduler.py).

:meth:`Scheduler.update` applies an iteration (or a window of decode steps) once it has run:
tokens gained, prompts done, sequences finished. Timing is the driver's business
(:mod:`.continuous`).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from .fastforward import DecodeBatch
from .kv import BlockAllocator, Prefill

if TYPE_CHECKING:
    from ..replica import Replica


class Scheduler:
    """Chooses each iteration's work for one replica: ``chunks`` of prompts, plus one token for
    every sequence in ``decode``. ``rep`` is the replica whose queue, ledger and state log it serves."""

    load_s = 0.0    # KV loaded from offload tiers for this iteration's admissions, seconds (.prefix_cache)

    def __init__(self, rep: Replica, kv: BlockAllocator, decode: DecodeBatch, *, max_num_seqs: int,
                 max_batched_tokens: int, chunked_prefill: bool, prefix_hit_rate: float) -> None:
        self.rep, self.kv, self.decode = rep, kv, decode
        self.ledger = rep.ledger
        self.max_seqs, self.max_tokens = max_num_seqs, max_batched_tokens
        self.chunked = chunked_prefill
        self.hit_rate = prefix_hit_rate          # share of a prompt found in the prefix cache, in whole blocks
        self.prefilling: list[Prefill] = []      # prompts being prefilled, in admission order
        self.chunks: list[tuple[Prefill, int]] = []   # this iteration's prompt tokens
        self.admitted = 0
        self.preempted = False                   # this iteration preempted, so it admits nobody

    def schedule(self, t0: float) -> None:
        """Choose the next iteration at ``t0``: ``chunks`` (empty: a decode-only step)."""
        self.preempted = False
        self.reserve_decode_slots(t0)
        self.chunks = []
        budget = self.max_tokens - len(self.decode.seqs)
        if self.prefilling:
            budget = self.continue_prefills(budget, t0)
        if self.rep.waiting and not self.preempted:    # vLLM V1: no admission in an iteration that preempted
            self.admit_waiting(budget, t0)

    def reserve_decode_slots(self, t0: float) -> None:
        """1. A KV slot for every decoding sequence's next token, preempting while blocks are short."""
        kv, dec = self.kv, self.decode
        need = 0
        while dec.seqs:
            need = dec.phase[dec.step % kv.B]       # sequences whose last block is full
            if need <= kv.free:
                break
            self.preempt(self.victim(), t0)
        kv.reserved = need                          # held until update allocates them
        kv.free -= need
        kv.taken += need

    def continue_prefills(self, budget: int, t0: float) -> int:
        """2. Prompts already being prefilled get the next chunk, in admission order."""
        kv, B, prefilling = self.kv, self.kv.B, self.prefilling
        for e in list(prefilling):
            if budget <= 0:
                break
            q = min(e.target - e.done, budget)
            while e in prefilling and -(-(e.done + q) // B) - e.blocks > kv.free:
                self.preempt(self.victim(), t0)
            if e not in prefilling:
                continue
            self.take(e, q)
            budget -= q
        return budget

    def admit_waiting(self, budget: int, t0: float) -> None:
        """3. Admit from the queue while sequences, tokens and blocks allow; stop at a blocked head."""
        kv, led, rep = self.kv, self.ledger, self.rep
        B, waiting = kv.B, rep.waiting
        n_run = len(self.decode.seqs) + len(self.prefilling)
        while waiting and n_run < self.max_seqs and budget > 0:
            r = waiting[0][2]
            target = led.prompt[r] + int(led.generated[r])
            hit = int(self.hit_rate * led.prompt[r] / B)
            kept = 0
            if kv.retained:                         # preempted before: its own blocks still cached
                kept = kv.cached_blocks(r)
                if kept > hit:
                    hit = kept
            cached = min(hit * B, target - 1)
            if led.kv_transferred and led.first_sched[r] != led.first_sched[r]:
                cached = target - 1                 # disaggregated decode: its prompt's KV came from prefill
            q = target - cached
            if q > budget:
                if not self.chunked:
                    break
                q = budget
            if -(-(cached + q) // B) > kv.free:
                break
            if not kv.promise(led.prompt[r] + led.output[r] - 1):
                break
            self.admit(r, cached, target, q, kept, t0)
            budget -= q
            n_run += 1

    def admit(self, r: int, cached: int, target: int, q: int, kept: int, t0: float) -> None:
        """Move the queue's head ``r`` into prefilling: its ``cached`` tokens' blocks (``kept`` of them
        its own, still cached since it was preempted) and the first ``q`` tokens of its ``target``."""
        kv, led, rep = self.kv, self.ledger, self.rep
        heapq.heappop(rep.waiting)
        self.admitted += 1
        held = -(-cached // kv.B)
        if kv.retained:                             # its own cached blocks leave the free queue, not taken
            touched = held if held < kept else kept
            kv.reclaim(r, touched)
            kv.taken += held - touched
        else:
            kv.taken += held
        e = Prefill(r, cached, target, held, led.priority[r], self.admitted)
        kv.free -= held
        self.prefilling.append(e)
        self.take(e, q)
        rep.running += 1
        if led.first_sched[r] != led.first_sched[r]:  # NaN: first admission
            led.first_sched[r] = t0
        rep.log(t0)

    def take(self, e: Prefill, q: int) -> None:
        """Schedule ``q`` prompt tokens of ``e`` this iteration and allocate their blocks."""
        kv = self.kv
        nb = -(-(e.done + q) // kv.B) - e.blocks
        kv.free -= nb
        kv.taken += nb
        e.blocks += nb
        self.chunks.append((e, q))

    # ---- preemption (rare: it scans the batch) -------------------------------------------------------
    def victim(self) -> tuple[str, int]:
        """The sequence to preempt: lowest priority, then most recently admitted."""
        best: tuple[int, int] | None = None
        where = ("", -1)
        for r, s in self.decode.seqs.items():
            k = (s.priority, -s.order)
            if best is None or k < best:
                best, where = k, ("decode", r)
        for i, e in enumerate(self.prefilling):
            k = (e.priority, -e.order)
            if best is None or k < best:
                best, where = k, ("prefill", i)
        return where

    def preempt(self, where: tuple[str, int], t: float) -> None:
        """Free the victim's blocks and queue it first again, to be recomputed."""
        kind, i = where
        kv, led = self.kv, self.ledger
        if kind == "decode":
            r = i
            s, ctx = self.decode.leave(r)
            held = kv.blocks(ctx)
            kv.retain(r, held, ctx)
            kv.free += held
            led.generated[r] = led.output[r] - (s.finish_step - self.decode.step)
            led.preempted(r, t)                      # its tokens stall until it is recomputed
        else:
            e = self.prefilling.pop(i)
            r = e.r
            kv.retain(r, e.blocks, e.done)          # this iteration's chunk, if any, is not computed
            kv.free += e.blocks
            self.chunks = [(c, q) for c, q in self.chunks if c is not e]
        self.requeue(r, t, front=True)

    def requeue(self, r: int, t: float, *, front: bool) -> None:
        """``r``, preempted, leaves the running batch for the queue (first, or at the back)."""
        self.ledger.preemptions[r] += 1
        self.preempted = True
        self.rep.running -= 1
        self.rep.push(r, front=front)
        self.rep.log(t)

    # ---- applying what ran ---------------------------------------------------------------------------
    def update(self, steps: int, t: float, finished: list[int]) -> None:
        """The iteration ended at ``t`` after ``steps`` decode steps (0: no sequence decoded): apply the
        tokens, move prompts that are done to decoding, and append the requests done to ``finished``."""
        kv, dec, led = self.kv, self.decode, self.ledger
        reserved = kv.reserved
        kv.free += reserved
        kv.reserved = 0
        if dec.seqs and steps:
            kv.free += dec.advance(steps, finished)
            if dec.grown > reserved:                # the first step's blocks were counted when reserved
                kv.taken += dec.grown - reserved
        for e, q in self.chunks:
            e.done += q
            if e.done == e.target:                  # prompt done: it samples a token
                r = e.r
                self.prefilling.remove(e)
                if led.first_token[r] != led.first_token[r]:
                    led.first_token[r] = t
                else:
                    led.resumed(r, t)                   # recomputed after a preemption: the next token
                rem = led.output[r] - int(led.generated[r]) - 1
                if rem == 0:
                    finished.append(r)
                    kv.free += e.blocks
                else:
                    dec.join(r, ctx=e.target, rem=rem, prio=e.priority, order=e.order)
        self.chunks = []
        if kv.free < 0:  # the scheduler's invariant; a bug if it ever fails
            raise RuntimeError(f"replica {self.rep.index}: KV cache over capacity by {-kv.free} blocks")
        for r in finished:
            led.generated[r] = led.output[r]
            kv.release(led.prompt[r] + led.output[r] - 1)
