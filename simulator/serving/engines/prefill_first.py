"""Prefill-first scheduling (SGLang; vLLM 0.6 without chunked prefill) on the continuous engine.

SGLang's scheduler loop (``python/sglang/srt/managers/scheduler.py`` ``get_next_batch_to_run``)
asks ``get_new_batch_prefill`` for a batch of waiting prompts and, when there is one, runs it
alone — "Run prefill first if possible" — so the running requests do not decode in that
iteration; only when no prefill batch can be formed does the running batch decode one step.
The prefill batch is filled by ``managers/schedule_policy.py`` ``PrefillAdder``:

1. the request being chunked continues first, with up to ``chunked_prefill_size`` tokens
   (capsim's ``max_batched_tokens``);
2. waiting requests join in queue order while the batch's prompt tokens stay within the chunk
   budget (a prompt that does not fit whole is cut to what is left and continues next time; that
   ends the batch) and within ``max_prefill_tokens`` (beyond the batch's first request), while
   running + new requests stay below ``max_running_requests`` (capsim's ``max_num_seqs``), and
   while the blocks of the whole prompt are free (SGLang's budget check counts the whole prompt;
   vLLM V0's block manager allocates it at admission);
3. capacity (``scheduler_policy: new_token_ratio``): a request joins only if its prompt plus its
   output, clipped at 4,096 tokens, is less than the free KV tokens minus ``new_token_ratio`` ×
   the running requests' remaining (clipped) outputs; what it adds is charged against that
   budget. A request that does not fit sets ``batch_is_full``, and no prefill batch is tried
   again until a request finishes or is retracted (``update_running_batch``: "if
   batch.batch_size() < initial_bs: batch_is_full = False").

``new_token_ratio`` starts at 0.7, falls by a fixed decay per decode step to its minimum, and is
re-estimated when decoding runs out of KV tokens: ``retract_decode`` takes back running requests —
the one with the fewest output tokens first, the longest prompt among ties — until the rest have
room for 20 decode steps, puts them at the back of the queue (``waiting_queue.extend``) and sets
the ratio to (tokens decoded + 20 × requests left) / their total max_new_tokens. A retracted
request is prefilled again, prompt and generated tokens (capsim does not keep its prompt in a
radix tree, but its freed blocks stay cached until another request takes them, as with a
preemption: it resumes from those still cached).

With ``scheduler_policy: max_utilization`` or ``guaranteed_no_evict`` the same order runs vLLM
V0's default scheduler (``vllm/core/scheduler.py`` ``_schedule_default``: waiting prompts, each
whole, as a batch of their own within ``max_num_batched_tokens``, else the running decodes,
preempting by recompute when blocks run out), with the capacity check of that policy.

Fast-forward stays exact: a decode window runs only when no prefill batch can start before its
end — the queue is empty (an arrival that could start one cuts the window, as in the decode-first
engine), ``batch_is_full`` holds (until a request finishes, which ends the window), or the
head's blocks, sequence slot or promise is short, which decoding cannot relieve. A step that
retracted or preempted puts a request back in the queue that the next prefill batch may take
(and clears ``batch_is_full``): it sets ``preempted``, which makes it a window of one step, as
for the decode-first scheduler. The ratio is
kept as (value at its last re-estimate, decode steps since), so k steps advance it exactly as k
single steps do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ...errors import CapsimError
from .base import ENGINES
from .continuous import ContinuousBatching, ContinuousEngine
from .fastforward import DecodeBatch
from .kv import BlockAllocator
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..replica import Replica
    from .base import ReplicaPlan
    from .presets import NewTokenRatio


class PrefillFirstBatching(ContinuousBatching):
    """Continuous batching with the prefill-first scheduler, whatever the engine preset's order."""

    # the registry's tag narrows the continuous keys' one (a member of the same family)
    batching: Literal["prefill_first"] = Field(default="prefill_first", description=(  # type: ignore[assignment]
        "prefill_first: continuous batching whose iterations run waiting prompts as a prefill-only batch and pause "
        "decoding while any fits (SGLang's scheduler); replica.engine: sglang runs it under batching continuous too"))
    schedule_order: Literal["prefill_first"] = Field(default="prefill_first", description=(
        "prefill_first (this batching's order)"))


class PrefillFirstScheduler(Scheduler):
    """Each iteration is a prefill-only batch when one can be formed, else one decode step of every running sequence."""

    def __init__(self, rep: Replica, kv: BlockAllocator, decode: DecodeBatch, *, max_num_seqs: int,
                 max_batched_tokens: int, chunked_prefill: bool, prefix_hit_rate: float,
                 max_prefill_tokens: int | None, policy: str, ratio: NewTokenRatio | None,
                 mixed_chunk: bool = False) -> None:
        super().__init__(rep, kv, decode, max_num_seqs=max_num_seqs, max_batched_tokens=max_batched_tokens,
                         chunked_prefill=chunked_prefill, prefix_hit_rate=prefix_hit_rate)
        self.max_prefill = max_prefill_tokens or max_batched_tokens
        self.policy = policy
        if policy == "new_token_ratio" and ratio is None:
            raise CapsimError("scheduler_policy new_token_ratio needs SGLang's new_token_ratio constants")
        self.ratio_cfg = ratio if policy == "new_token_ratio" else None
        self.ratio0 = ratio.init if ratio is not None else 0.0   # the ratio at its last (re-)estimate
        self.ratio_steps = 0                                      # decode steps since, each one decay
        self.batch_full = False                                   # SGLang's batch_is_full
        self.decoding = False                                     # whether this iteration decodes
        self.mixed = mixed_chunk                                  # SGLang --enable-mixed-chunk

    # ---- SGLang's admission estimate ----------------------------------------------------------------
    def ratio(self) -> float:
        r = self.ratio_cfg
        assert r is not None
        return max(self.ratio0 - self.ratio_steps * r.decay, r.min)

    def _reserved(self) -> float:
        """new_token_ratio × the running requests' remaining outputs, each clipped (PrefillAdder's offset)."""
        r = self.ratio_cfg
        assert r is not None
        dec, clip = self.decode, r.clip_tokens
        left = sum(min(s.finish_step - dec.step, clip) for s in dec.seqs.values())
        return left * self.ratio()

    # ---- one iteration -----------------------------------------------------------------------------
    def schedule(self, t0: float) -> None:
        self.chunks = []
        self.decoding = self.preempted = False
        if self.prefilling or (self.rep.waiting and not self.batch_full):
            self._prefill_batch(t0)
        if self.chunks:
            need = self.decode.phase[self.decode.step % self.kv.B] if self.decode.seqs else 0
            if self.mixed and self.decode.seqs and need <= self.kv.free:
                self.decoding = True                 # mix_with_running: every running request decodes too
                self.kv.reserved = need
                self.kv.free -= need
                self.kv.taken += need
                if self.ratio_cfg is not None:
                    self.ratio_steps += 1
            return                                   # else a prefill-only batch: decoding waits
        if self.decode.seqs:
            self.decoding = True
            if self.ratio_cfg is not None:
                self._decode_slots_or_retract(t0)
            else:
                self.reserve_decode_slots(t0)         # vLLM V0: preempt by recompute, front of the queue

    def _prefill_batch(self, t0: float) -> None:
        """SGLang's get_new_batch_prefill / PrefillAdder (vLLM V0's _schedule_prefills with another policy)."""
        kv, led, rep = self.kv, self.ledger, self.rep
        B, waiting = kv.B, rep.waiting
        running = len(self.decode.seqs)
        if not self.prefilling and running >= self.max_seqs:
            self.batch_full = True
            return
        sglang = self.ratio_cfg is not None
        clip = self.ratio_cfg.clip_tokens if self.ratio_cfg is not None else 0
        rem_total = kv.free * B - self._reserved() if sglang else math.inf
        mixed = running if self.mixed else 0         # PrefillAdder's mixed_with_decode_tokens
        rem_input = self.max_prefill - mixed
        rem_chunk: int | None = self.max_tokens - mixed if self.chunked else None
        n_new = 0
        # 1. the prompt being chunked continues (its admission found blocks for all of it, and nothing
        #    else decodes or joins until it is done, so they are there; if not, it waits and nothing joins)
        for e in list(self.prefilling):
            if rem_chunk is not None and rem_chunk <= 0:
                break
            left = e.target - e.done
            q = left if rem_chunk is None else min(left, rem_chunk)
            if -(-(e.done + q) // B) - e.blocks > kv.free:
                return
            self.take(e, q)
            done = q == left
            rem_total -= q + (min(led.output[e.r] - int(led.generated[e.r]), clip) if done else 0)
            rem_input -= q
            if rem_chunk is not None:
                rem_chunk -= q
            n_new += 1
        # 2. waiting requests, in queue order, while they fit (PrefillAdder.add_one_req's checks, in its order)
        while waiting:
            if running + n_new >= self.max_seqs:
                self.batch_full = True
                break
            r = waiting[0][2]
            target = led.prompt[r] + int(led.generated[r])
            hit = int(self.hit_rate * led.prompt[r] / B)
            kept = kv.cached_blocks(r) if kv.retained else 0   # taken back before: its blocks still cached
            cached = min(max(hit, kept) * B, target - 1)
            if led.kv_transferred and led.first_sched[r] != led.first_sched[r]:
                cached = target - 1                 # disaggregated decode: its prompt's KV came from prefill
            extend = target - cached
            est = min(led.output[r] - int(led.generated[r]), clip)
            if sglang and extend + est >= rem_total:
                self.batch_full = True                # AddReqResult.NO_TOKEN
                break
            if n_new and extend > rem_input:
                break                                 # beyond max_prefill_tokens (the first always runs)
            q = extend if rem_chunk is None else min(extend, rem_chunk)
            if q <= 0:
                break                                 # no chunk budget left
            if -(-target // B) > kv.free:
                break                                 # its whole prompt's blocks are not free now
            if not kv.promise(led.prompt[r] + led.output[r] - 1):
                break                                 # guaranteed_no_evict: its final KV does not fit
            self.admit(r, cached, target, q, kept, t0)
            truncated = q < extend
            rem_total -= q + (0 if truncated else est)
            rem_input -= q
            if rem_chunk is not None:
                rem_chunk -= q
            n_new += 1
            if sglang and rem_total <= 0:
                self.batch_full = True
                break
            if truncated or rem_input <= 0 or (rem_chunk is not None and rem_chunk <= 0):
                break                                 # the batch's budget is spent (a cut prompt ends it)

    # ---- SGLang's decode step: check_decode_mem, retract_decode -------------------------------------
    def _decode_slots_or_retract(self, t0: float) -> None:
        kv, dec, cfg = self.kv, self.decode, self.ratio_cfg
        assert cfg is not None
        need = dec.phase[dec.step % kv.B]
        if need > kv.free:
            first = True
            while len(dec.seqs) > 1 and (first or kv.free * kv.B < len(dec.seqs) * cfg.retract_steps):
                first = False
                self._retract(self._retract_victim(), t0)
            decoded = sum(self.ledger.output[r] - (s.finish_step - dec.step) for r, s in dec.seqs.items())
            budget = sum(self.ledger.output[r] for r in dec.seqs)
            self.ratio0 = min(1.0, (decoded + cfg.retract_steps * len(dec.seqs)) / max(budget, 1))
            self.ratio_steps = 0
            self.batch_full = False
            need = dec.phase[dec.step % kv.B]
            while dec.seqs and need > kv.free:        # one request left and no room: recompute it
                self.preempt(self.victim(), t0)
                need = dec.phase[dec.step % kv.B] if dec.seqs else 0
        else:
            self.ratio_steps += 1                     # the ratio decays once per decode step
        kv.reserved = need
        kv.free -= need
        kv.taken += need

    def _retract_victim(self) -> int:
        """The running request SGLang retracts first: fewest output tokens, then the longest prompt."""
        dec, led = self.decode, self.ledger
        return min(dec.seqs, key=lambda r: (led.output[r] - (dec.seqs[r].finish_step - dec.step), -led.prompt[r],
                                            -dec.seqs[r].order))

    def _retract(self, r: int, t: float) -> None:
        """Free ``r``'s blocks (still cached until taken, as in SGLang's radix tree) and queue it at the
        back, to be prefilled again with what it generated."""
        kv, led = self.kv, self.ledger
        s, ctx = self.decode.leave(r)
        held = kv.blocks(ctx)
        kv.retain(r, held, ctx)
        kv.free += held
        led.generated[r] = led.output[r] - (s.finish_step - self.decode.step)
        led.preempted(r, t)                           # its tokens stall until it is prefilled again
        self.requeue(r, t, front=False)

    def update(self, steps: int, t: float, finished: list[int]) -> None:
        before = len(finished)
        super().update(steps, t, finished)
        if self.decoding and steps > 1:
            self.ratio_steps += steps - 1             # the window's later steps (its first counted in schedule)
        if len(finished) > before:
            self.batch_full = False                   # the running batch shrank


class PrefillFirstEngine(ContinuousEngine):
    """The continuous engine with :class:`PrefillFirstScheduler`: prefill-only iterations pause decoding."""

    decodes_with_prefill = False
    sched: PrefillFirstScheduler

    def __init__(self, *, cfg: ContinuousBatching, plan: ReplicaPlan, **kw: Any) -> None:
        super().__init__(cfg=cfg, plan=plan, **kw)
        s = plan.engine
        self.sched = PrefillFirstScheduler(
            self, self.kv, self.decode, max_num_seqs=plan.max_num_seqs, max_batched_tokens=plan.max_batched_tokens,
            chunked_prefill=plan.chunked_prefill, prefix_hit_rate=plan.prefix_cache_hit_rate,
            max_prefill_tokens=s.max_prefill_tokens if s is not None else None, policy=plan.scheduler_policy,
            ratio=s.new_token_ratio if s is not None else None, mixed_chunk=s.mixed_chunk if s is not None else False)

    def decodes_now(self) -> bool:
        return self.sched.decoding

    def admissible(self, r: int) -> str | None:
        p, o = self.ledger.prompt[r], self.ledger.output[r]
        if not self.kv.fits_ever(p + o - 1):
            return "exceeds_kv_capacity"
        cfg = self.sched.ratio_cfg
        if cfg is not None and p + min(o, cfg.clip_tokens) >= self.kv.capacity_tokens:
            return "exceeds_kv_capacity"              # SGLang's estimate could never admit it
        if not self.chunked and cfg is None and p > self.max_tokens:
            return "prompt_exceeds_max_batched_tokens"   # vLLM V0: a prompt must fit max_num_batched_tokens
        return None

    def on_arrival_while_busy(self, r: int, t: float) -> None:
        if self.sched.batch_full:
            return                                    # no prefill batch is tried until one finishes
        super().on_arrival_while_busy(r, t)


ENGINES.register(PrefillFirstBatching, PrefillFirstEngine)
