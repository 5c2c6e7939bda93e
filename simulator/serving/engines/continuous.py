"""Continuous batching with a paged KV cache (vLLM semantics), advanced event by event.

The pieces: :mod:`.kv` holds the blocks, :mod:`.scheduler` chooses each iteration's work (vLLM's
order: decode slots, prefill chunks, admissions; preemption by recompute), :mod:`.fastforward`
turns a run of identical decode steps into one event with exact integer time. This module is
the driver: it prices each iteration on the cost model and advances simpy to its end.

Fast-forward: while the batch is decode-only, nothing can join it (the queue is empty or its
head is blocked, which stays true as blocks only get scarcer: a preempted head's blocks still
cached are lost one per block taken, so what it needs never falls faster than what is free), so
its composition is fixed until the next completion or possible block shortage: those ``k`` steps
are one window. An arrival that could join cuts the window at the end of the step in progress.
An iteration that preempted admitted nobody and the next one may, so it is a window of one step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import simpy
from pydantic import Field

from ...errors import CapsimError
from ..replica import Replica
from .base import ENGINES, ReplicaConfig, ReplicaPlan
from .defaults import describe
from .fastforward import FS, DecodeBatch, Window, to_fs
from .kv import BlockAllocator
from .offload import KVOffload
from .prefix_cache import caching_scheduler
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ...models import ModelSpec
    from .presets import EngineSettings


class ContinuousBatching(ReplicaConfig):
    """Iteration-level scheduling: sequences join and leave the running batch every step. Every key
    left ``None`` takes the engine preset's value (``replica.engine``; simulator/serving/engines/presets.py)."""

    batching: Literal["continuous"] = Field(default="continuous", description=(
        "continuous (the default): iteration-level batching on a paged KV cache, as vLLM, TensorRT-LLM and SGLang"))
    max_num_seqs: int | None = Field(default=None, ge=1, description=(
        "sequences running at once (vLLM max_num_seqs, TensorRT-LLM max_batch_size, SGLang max_running_requests); "
        + describe("max_num_seqs") + "; TensorRT-LLM 2048; trtllm-bench its calc_engine_setting heuristic; "
        "SGLang from its KV pool"))
    max_batched_tokens: int | None = Field(default=None, ge=1, description=(
        "tokens per iteration, prompt chunks plus one per decoding sequence (vLLM max_num_batched_tokens, "
        "TensorRT-LLM max_num_tokens, SGLang chunked_prefill_size); " + describe("max_batched_tokens")
        + "; TensorRT-LLM 8192; trtllm-bench its heuristic; SGLang 8192 on H100/H200-class GPUs"))
    chunked_prefill: bool | None = Field(default=None, description=(
        "split long prompts over iterations within max_batched_tokens; false: a prompt is prefilled in one "
        "iteration, so a request whose prompt exceeds max_batched_tokens is rejected, as TensorRT-LLM does (under "
        "max_utilization prompt + output - 1 must fit, as a preempted request re-prefills both). None (default): "
        "the preset's: on for vLLM V1 and SGLang, off for TensorRT-LLM and trtllm-bench, on for vLLM 0.6 only for "
        "a context over 32K"))
    kv_block_tokens: int | None = Field(default=None, ge=1, description=(
        "tokens per KV-cache block; None (default): the preset's (vLLM block_size 16, TensorRT-LLM tokens_per_block "
        "32, SGLang page_size 1)"))
    scheduler_policy: Literal["max_utilization", "guaranteed_no_evict", "new_token_ratio"] | None = Field(
        default=None, description=(
            "max_utilization (vLLM): admit while blocks are free now, preempt by recompute when they run out; "
            "guaranteed_no_evict (TensorRT-LLM's capacity_scheduler_policy): admit only when the request's final KV "
            "fits beside everyone else's; new_token_ratio (SGLang, prefill-first only): admit when prompt + output "
            "fits beside an estimated share of the running requests' remaining outputs, retract decodes when the "
            "cache runs out. None (default): the preset's"))
    schedule_order: Literal["decode_first", "prefill_first"] | None = Field(default=None, description=(
        "decode_first (vLLM V1, TensorRT-LLM): every running sequence decodes each iteration and prompt chunks fill "
        "the rest of the token budget; prefill_first (SGLang, vLLM 0.6 without chunked prefill): an iteration that "
        "can admit a waiting prompt runs a prefill-only batch and pauses decoding. None (default): the preset's"))
    prefix_caching: bool | None = Field(default=None, description=(
        "keep freed KV blocks cached until another sequence takes them, so a preempted request resumes from its "
        "blocks still cached and workload.prefix_cache_hit_rate finds prompts there; false: a preempted request "
        "recomputes from token 0 and the hit rate must be 0. None (default): the preset's (vLLM V1 "
        "enable_prefix_caching, TensorRT-LLM kv_cache_config.enable_block_reuse, SGLang radix cache: on; vLLM 0.6: "
        "off)"))
    kv_offload: KVOffload | None = Field(default=None, description=(
        "KV offload tiers behind the GPU cache (cpu_gib, pcie_gbps, pcie_latency_us, nvme_gib, nvme_gbps, "
        "nvme_latency_us): blocks evicted from the GPU prefix cache go to host memory (then NVMe) and a prefix found "
        "there is loaded over PCIe instead of recomputed, a preempted request's blocks included (vLLM "
        "OffloadingConnector --kv-offloading-size, LMCache); needs prefix caching. Default: none"))
    max_prefill_tokens: int | None = Field(default=None, ge=1, description=(
        "prefill_first only: prompt tokens of one prefill batch beyond its first request (SGLang max_prefill_tokens, "
        "default 16384; vLLM 0.6: max_batched_tokens). None (default): the preset's"))
    mixed_chunk: bool | None = Field(default=None, description=(
        "prefill_first only: the running requests decode one token inside each prefill batch, whose token budgets "
        "shrink by that many (SGLang --enable-mixed-chunk: get_new_batch_prefill mix_with_running); when their "
        "decode blocks are not free the batch runs alone. None (default): off, SGLang's default"))

    iteration_level: ClassVar[bool] = True

    def limits(self, model: ModelSpec, memory_gib: float, settings: EngineSettings | None = None) -> tuple[int, int]:
        if model.architecture != "decoder":
            raise CapsimError(f"{model.name} is an {model.architecture} model (one forward per request): continuous "
                              "batching applies to decoders; set replica.batching to dynamic, static or none")
        if settings is None:
            raise ValueError("an iteration-level engine's limits come from its resolved engine settings")
        # SGLang sizes its sequence bound from the KV pool: its largest request pool until then
        seqs, tokens = settings.max_num_seqs or 4096, settings.max_batched_tokens
        if settings.engine.startswith("trtllm") and self.pp > 1:
            # TensorRT-LLM keeps pp micro-batches in flight, each scheduled on its own up to max_batch_size
            # requests and max_num_tokens tokens, and admits pp x max_batch_size active requests
            # (tensorrt_llm/_torch/pyexecutor/model_engine.py get_max_num_sequences: "num_batches =
            # self.mapping.pp_size; return num_batches * self.batch_size"); trtllm-bench's sizing divides its
            # batch by pp for that (bench/build/tuning.py finetune_setting). A capsim iteration is one period
            # of all pp micro-batches, so both limits are pp times the engine's settings.
            seqs, tokens = seqs * self.pp, tokens * self.pp
        return seqs, tokens


class ContinuousEngine(Replica):
    """One replica: the scheduler's iterations, priced on the cost model, as simpy events."""

    decodes_with_prefill: ClassVar[bool] = True
    """whether the running sequences decode in an iteration that prefills (False: the prefill-first engine)"""

    def __init__(self, *, cfg: ContinuousBatching, plan: ReplicaPlan, **kw: Any) -> None:
        self.kv = BlockAllocator(plan.kv_cache_tokens, plan.kv_block_tokens,
                                 no_evict=plan.scheduler_policy == "guaranteed_no_evict",
                                 prefix_caching=plan.prefix_caching)
        self.decode = DecodeBatch(plan.kv_block_tokens)
        self.chunked = plan.chunked_prefill
        self.no_evict = plan.scheduler_policy == "guaranteed_no_evict"
        self.max_tokens = plan.max_batched_tokens
        self.win: Window | None = None      # the window running now (None between windows)
        self.t_fs = 0                       # the engine's clock, fs
        self._k = 0                         # decode steps the current window advances the batch by
        self._base: dict[int, int] = {}     # decode step base time by batch size, fs
        super().__init__(cfg=cfg, plan=plan, **kw)
        kw_sched: dict[str, Any] = dict(max_num_seqs=plan.max_num_seqs, max_batched_tokens=plan.max_batched_tokens,
                                        chunked_prefill=plan.chunked_prefill,
                                        prefix_hit_rate=plan.prefix_cache_hit_rate)
        block_bytes = self.perf.kv_bytes_per_token_per_gpu() * plan.kv_block_tokens
        self.sched: Scheduler = (   # hashed prefix blocks when the requests carry token identities
            caching_scheduler(self, self.kv, self.decode, plan, cfg.kv_offload, block_bytes, **kw_sched)
            or Scheduler(self, self.kv, self.decode, **kw_sched))
        self._coef = to_fs(self.perf.decode_coef_per_step)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv.capacity_tokens

    def admissible(self, r: int) -> str | None:
        p, o = self.ledger.prompt[r], self.ledger.output[r]
        if not self.kv.fits_ever(p + o - 1):
            return "exceeds_kv_capacity"
        if not self.chunked and (p if self.no_evict else p + o - 1) > self.max_tokens:
            # without chunking a prompt is prefilled in one iteration, as TensorRT-LLM rejects a prompt
            # longer than max_num_tokens when chunked context is off (tensorrt_llm/llmapi/llm.py,
            # BaseLLM._check_arguments). guaranteed_no_evict never preempts, so the prompt alone must fit;
            # under max_utilization a preempted request re-prefills prompt + generated tokens in one chunk
            return "prompt_exceeds_max_batched_tokens"
        return None

    def decodes_now(self) -> bool:
        """Whether the running sequences decode in this iteration's prefill batch."""
        return self.decodes_with_prefill

    def kv_load(self, t: float) -> float:
        kv, win = self.kv, self.win
        used = kv.total - kv.free
        if win is not None and win.k > 1:
            # as a step-by-step run would see it: blocks of the steps done and of the one in progress
            used += self.decode.blocks_over(win.steps_done(to_fs(t)) + 1) - kv.reserved
        queued = sum(self.ledger.prompt[r] for _, _, r in self.waiting)
        return (used + queued / kv.B) / max(kv.total, 1)

    def on_arrival_while_busy(self, r: int, t: float) -> None:
        win = self.win
        if win is None or win.k < 2 or self.waiting[0][2] != r:
            return  # no window to cut, or the newcomer queues behind a blocked head
        j = win.steps_done(to_fs(t)) + 1                    # the step in progress completes
        if j < win.k:
            win.k = j
            self.busy_end[-1] = win.end(j) / FS
            self._arm(win)                                  # the old wake-up becomes stale

    def held(self) -> list[int]:
        return [*super().held(), *(e.r for e in self.sched.prefilling), *self.decode.seqs]

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
        self.sched.schedule(self.t)
        self._arm(self._mixed_iteration() if self.sched.chunks else self._decode_window())

    def _arm(self, win: Window) -> None:
        """Wake at the end of ``win`` (a new call supersedes the previous one)."""
        self._gen += 1
        gen = self._gen
        ev = self.env.timeout(max(win.end(win.k) / FS - self.env.now, 0.0))
        ev.callbacks.append(lambda _ev: self._window_done(gen, win))

    def _window_done(self, gen: int, win: Window) -> None:
        if gen != self._gen or self.dead:
            return                                   # superseded by a cut, or the replica is gone
        end = win.end(win.k)
        self.t_fs = end
        self.t = t = end / FS
        finished: list[int] = []
        self.sched.update(min(win.k, self._k), t, finished)
        if finished:
            self.finished(finished, t)
        self.win = None
        self._next()

    # ---- pricing one iteration (or a window of identical decode steps) -------------------------------
    def _mixed_iteration(self) -> Window:
        """Prompt chunks and decode tokens in one forward: a window of one step."""
        chunks, kv = self.sched.chunks, self.kv
        n = len(self.decode.seqs) if self.decodes_now() else 0   # prefill-first pauses decoding, unless mixed
        t0_fs = self.t_fs
        work = sum(q * (e.done + (q + 1) / 2) for e, q in chunks)
        tokens = n + sum(q for _, q in chunks)
        sampled = n + sum(1 for e, q in chunks if e.done + q == e.target)
        d = to_fs(self.perf.iteration_time(tokens=tokens, sampled=sampled, prefill_work=work, decode_seqs=n,
                                           decode_ctx=self.decode.ctx_sum + n if n else 0) + self.sched.load_s)
        self.win = win = Window(t0_fs, d, 0, 0, 0, 1)
        self.record_busy(self.t, (t0_fs + d) / FS, (kv.total - kv.free) * kv.B, tokens, steps=win, decodes=n > 0,
                         seqs=len(self.decode.seqs))
        self._k = 1 if n else 0
        return win

    def _decode_window(self) -> Window:
        """k identical decode steps (k = 1 without fast-forward or near a block shortage). Over k steps
        each sequence takes at most ceil(k/B) new blocks, so k <= B·floor(free/n) is safe."""
        kv, dec = self.kv, self.decode
        n, B = len(dec.seqs), kv.B
        if n == 0:  # cannot happen: an idle replica admits its (admissible) head; a bug if it does
            raise RuntimeError(f"replica {self.index}: scheduler stalled with {len(self.waiting)} waiting")
        k = 1
        free = kv.free + kv.reserved
        # an iteration that preempted admitted nobody (Scheduler.schedule), the next one may: one step
        if self.fast_forward and (free >= n or kv.no_evict) and not (self.sched.preempted and self.waiting):
            k = dec.steps_to_next_finish()
            if not kv.no_evict:                     # no_evict: every final block is already set aside
                k = max(min(k, B * (free // n)), 1)
        self._k = k
        A = self._base.get(n)
        if A is None:
            A = self._base[n] = to_fs(self.perf.decode_base(n))
        self.win = win = Window(self.t_fs, A, self._coef, dec.ctx_sum + n, n, k)
        self.record_busy(self.t, win.end(k) / FS, (kv.total - kv.free + kv.reserved) * B, n, steps=win, seqs=n)
        return win


ENGINES.register(ContinuousBatching, ContinuousEngine)
