"""Speculative decoding on the continuous engine: a draft proposes ``k`` tokens, the target verifies them.

``replica.batching: speculative`` is the continuous engine (decode-first, vLLM V1's order) in which
every decoding sequence, each step,

1. drafts ``k`` = ``num_speculative_tokens`` tokens: ``k`` decode steps of a small draft model
   (``method: draft_model``) or of the target's own draft heads (``eagle``, ``mtp``: one decoder
   layer and the target's LM head per drafted token, as EAGLE and DeepSeek-V3's MTP module are);
2. verifies them in one forward of the target over ``k + 1`` tokens per sequence (the drafted ones
   and the last accepted one): the target's iteration time for ``n·(k+1)`` tokens and ``n·(k+1)``
   sampled positions, each sequence's cached KV read once;
3. keeps the accepted prefix plus one token of its own: ``1 + a`` tokens, ``a`` in ``0..k``.

**Acceptance.** Each drafted token is accepted with probability ``α`` given the ones before it were
(Leviathan et al., "Fast Inference from Transformers via Speculative Decoding", ICML 2023, §3.1:
``P(a ≥ i) = α^i``, so ``E[1 + a] = (1 − α^{k+1}) / (1 − α)``). ``α`` is the workload's:
``acceptance_rate``, the same for every request, or with ``acceptance_concentration`` κ a Beta
distribution of mean ``acceptance_rate`` and ``a + b = κ``, one ``α`` per request (acceptance varies
with the text: EAGLE reports 0.6–0.8 per token on MT-bench and lower on other sets). Every request
draws from its own random stream, ``SeedSequence([seed, 0x5bec, r])``, so a request's acceptance is
the same whatever runs beside it and the run is deterministic per seed.

**Keys of the engines** (the same quantity): vLLM ``speculative_config={"method": "eagle", "model": ...,
"num_speculative_tokens": 3}`` (docs.vllm.ai, features/spec_decode; methods ``draft_model``, ``eagle``,
``eagle3``, ``mtp``, ``ngram``; "reduce inter-token latency under medium-to-low QPS"); TensorRT-LLM
``speculative_config=DraftTargetDecodingConfig | Eagle3DecodingConfig | MTPDecodingConfig(max_draft_len=3)``
(nvidia.github.io/TensorRT-LLM, features/speculative-decoding: "speed ups are only observable at low
batch sizes"); SGLang ``--speculative-algorithm EAGLE | EAGLE3 | STANDALONE --speculative-num-steps 3
--speculative-eagle-topk 1 --speculative-num-draft-tokens 4`` (docs.sglang.io,
advanced_features/speculative_decoding; a chain, top-k 1, verifies steps + 1 tokens).

**KV.** Before each step every decoding sequence is given blocks for ``k + 1`` more tokens (vLLM's
scheduler allocates the lookahead slots, ``num_lookahead_tokens``, before the verification); after
it, the sequence keeps the blocks of the tokens it accepted and the rest go back. Preemption is by
recompute, as in the continuous engine.

**Fast-forward is off** in this engine: the tokens each sequence gains per step are random, so a
window's steps are neither identical nor is the next completion known in advance; every step is
one event. Conservation and determinism hold as in every engine (tests/test_speculative.py).
The ITL line is not reported for this engine: tokens stream in bursts of ``1 + a`` per step, so a
step is not one gap per token (:func:`~simulator.serving.tokens.token_gaps` declines such a log); TPOT,
``(E2E − TTFT)/(output − 1)``, is.

Not modelled: the draft model's weights and KV cache in the GPU memory (a draft of ~1B beside an
8B target takes ~2 GiB; EAGLE's heads a few hundred MB), tree drafting (top-k > 1), and the
prefill of the draft model (its prompt pass is priced as one draft step per admitted chunk).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ...catalog import get_model
from ...costmodel.inference import InferenceModel
from ...errors import CapsimError
from .base import ENGINES
from .continuous import ContinuousBatching, ContinuousEngine
from .fastforward import DecodeBatch, Window, to_fs
from .kv import DecodeSeq
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ...models import ModelSpec
    from .base import ReplicaPlan
    from .presets import EngineSettings

STREAM_TAG = 0x5BEC   # the acceptance streams' key beside the seed and the request index


class SpeculativeBatching(ContinuousBatching):
    """Continuous batching with speculative decoding (module docstring)."""

    batching: Literal["speculative"] = Field(description=(  # type: ignore[assignment]
        "speculative: continuous batching where a draft proposes num_speculative_tokens tokens per step and "
        "the target verifies them in one forward"))
    method: Literal["draft_model", "eagle", "mtp"] = Field(description=(
        "who drafts: draft_model (a small model of its own, draft_model), eagle or mtp (one decoder layer and "
        "the target's LM head per drafted token); vLLM speculative_config.method, TensorRT-LLM decoding_type, "
        "SGLang speculative_algorithm"))
    num_speculative_tokens: int = Field(ge=0, description=(
        "k, tokens drafted per step (vLLM num_speculative_tokens, TensorRT-LLM max_draft_len, SGLang "
        "speculative_num_steps); 0: no speculation (plain decoding, step by step), so one sweep compares both"))
    acceptance_rate: float = Field(ge=0, le=1, description=(
        "α, the probability that a drafted token is accepted given the ones before it were (per token; "
        "Leviathan et al. 2023); the workload's and the draft's property, so no default"))
    acceptance_concentration: float | None = Field(default=None, gt=0, description=(
        "κ: each request draws its own α from a Beta distribution of mean acceptance_rate with a + b = κ "
        "(smaller: more spread); None (default): every request has acceptance_rate"))
    draft_model: str | dict[str, Any] | None = Field(default=None, description=(
        "method draft_model: the draft (a catalog name, shape mapping or config.json), run at the replica's TP"))

    iteration_level: ClassVar[bool] = True

    def limits(self, model: ModelSpec, memory_gib: float, settings: EngineSettings | None = None) -> tuple[int, int]:
        if (self.method == "draft_model") != (self.draft_model is not None):
            raise CapsimError("replica.draft_model is the draft of method draft_model: set both, or neither "
                              f"(method is {self.method})")
        if settings is not None and settings.schedule_order == "prefill_first":
            raise CapsimError("replica.batching speculative runs the decode-first scheduler; "
                              f"{settings.engine}'s preset is prefill_first: set replica.schedule_order to "
                              "decode_first")
        return super().limits(model, memory_gib, settings)


def mean_tokens_per_step(alpha: float, k: int) -> float:
    """E[1 + a] = Σ_{i=0..k} α^i = (1 − α^{k+1}) / (1 − α) (Leviathan et al. 2023, eq. 1)."""
    return float(sum(alpha ** i for i in range(k + 1)))


class Acceptance:
    """Each request's acceptance: its own α and its own stream of accepted counts."""

    def __init__(self, cfg: SpeculativeBatching, seed: int) -> None:
        self.k, self.alpha, self.kappa, self.seed = cfg.num_speculative_tokens, cfg.acceptance_rate, \
            cfg.acceptance_concentration, seed
        self._rng: dict[int, tuple[np.random.Generator, float]] = {}

    def _stream(self, r: int) -> tuple[np.random.Generator, float]:
        s = self._rng.get(r)
        if s is None:
            g = np.random.default_rng(np.random.SeedSequence([self.seed, STREAM_TAG, r]))
            a = self.alpha
            if self.kappa is not None and 0 < a < 1:
                a = float(g.beta(a * self.kappa, (1 - a) * self.kappa))
            s = self._rng[r] = (g, a)
        return s

    def alpha_of(self, r: int) -> float:
        return self._stream(r)[1]

    def tokens(self, r: int) -> int:
        """Tokens request ``r`` keeps from one step: 1 + the accepted prefix of its k drafts."""
        g, a = self._stream(r)
        if a <= 0.0:
            return 1
        if a >= 1.0:
            return self.k + 1
        u = g.random()     # a ≥ i with probability α^i: a = min(k, floor(log u / log α))
        return 1 + min(self.k, int(math.log(u) / math.log(a))) if u > 0 else self.k + 1


class SpecBatch(DecodeBatch):
    """Decoding sequences that gain a random number of tokens per step (one step per advance)."""

    __slots__ = ("acc", "ctxs", "look", "rems")

    def __init__(self, block_tokens: int, acc: Acceptance, lookahead: int) -> None:
        super().__init__(block_tokens)
        self.acc, self.look = acc, lookahead
        self.ctxs: dict[int, int] = {}
        self.rems: dict[int, int] = {}

    def ctx(self, r: int) -> int:
        return self.ctxs[r]

    def join(self, r: int, *, ctx: int, rem: int, prio: int, order: int) -> None:
        self.seqs[r] = DecodeSeq(self.step, ctx, self.step + rem, prio, order)
        self.ctxs[r], self.rems[r] = ctx, rem
        self.ctx_sum += ctx

    def leave(self, r: int) -> tuple[DecodeSeq, int]:
        """``r`` stops; its record's ``finish_step − step`` is the tokens it had left (what preemption reads)."""
        s = self.seqs.pop(r)
        ctx, rem = self.ctxs.pop(r), self.rems.pop(r)
        self.ctx_sum -= ctx
        return DecodeSeq(s.join_step, s.ctx_at_join, self.step + rem, s.priority, s.order), ctx

    def lookahead_blocks(self) -> int:
        """Blocks that the next step's k + 1 slots per sequence need beyond those held."""
        B, look = self.B, self.look
        return sum(-(-(c + look) // B) - -(-c // B) for c in self.ctxs.values())

    def blocks_over(self, k: int) -> int:
        return self.lookahead_blocks() if k else 0

    def steps_to_next_finish(self) -> int:
        return 1

    def advance(self, k: int, finished: list[int]) -> int:
        """One verification step: every sequence keeps 1 + its accepted drafts (at most what it has left)."""
        assert k == 1, "speculative decoding advances one step at a time"
        B = self.B
        grown = freed = 0
        self.step += 1
        for r in list(self.seqs):
            c, rem = self.ctxs[r], self.rems[r]
            g = min(self.acc.tokens(r), rem)
            grown += -(-(c + g) // B) - -(-c // B)
            c += g
            rem -= g
            self.ctx_sum += g
            if rem == 0:
                freed += -(-c // B)
                self.ctx_sum -= c
                del self.seqs[r], self.ctxs[r], self.rems[r]
                finished.append(r)
            else:
                self.ctxs[r], self.rems[r] = c, rem
        self.grown = grown
        return freed - grown


class SpecScheduler(Scheduler):
    """The continuous scheduler, with k + 1 KV slots per decoding sequence set aside before each step."""

    def reserve_decode_slots(self, t0: float) -> None:
        kv, dec = self.kv, self.decode
        assert isinstance(dec, SpecBatch)
        need = 0
        while dec.seqs:
            need = dec.lookahead_blocks()
            if need <= kv.free:
                break
            self.preempt(self.victim(), t0)
        kv.reserved = need
        kv.free -= need
        kv.taken += need


class SpeculativeEngine(ContinuousEngine):
    """The continuous engine with a draft-and-verify step (module docstring); one event per step."""

    def __init__(self, *, cfg: SpeculativeBatching, plan: ReplicaPlan, **kw: Any) -> None:
        self.spec = cfg
        self.k = cfg.num_speculative_tokens
        super().__init__(cfg=cfg, plan=plan, **kw)
        if type(self.sched) is not Scheduler:
            raise CapsimError("replica.batching: speculative does not model the hashed prefix cache or KV offload "
                              "(workload.shared_prefix, workload.sessions, replica.kv_offload); use "
                              "workload.prefix_cache_hit_rate, or the continuous engine")
        self.fast_forward = False          # random tokens per step: no window of identical steps
        self.acc = Acceptance(cfg, self.ledger.seed)
        self.decode = SpecBatch(plan.kv_block_tokens, self.acc, self.k + 1)
        self.sched = SpecScheduler(self, self.kv, self.decode, max_num_seqs=plan.max_num_seqs,
                                   max_batched_tokens=plan.max_batched_tokens, chunked_prefill=plan.chunked_prefill,
                                   prefix_hit_rate=plan.prefix_cache_hit_rate)
        p = self.perf
        self.draft: InferenceModel | None = None
        if cfg.method == "draft_model":
            assert cfg.draft_model is not None
            self.draft = InferenceModel(model=get_model(cfg.draft_model), hw=p.hw, tp=p.tp, pp=1,
                                        precision=p.precision, kv_precision=p.kv_precision, fusion=p.fusion)
        self._draft_cache: dict[int, float] = {}

    def draft_time(self, n: int, ctx: int) -> float:
        """k draft steps for ``n`` sequences reading ``ctx`` cached tokens in all."""
        if n == 0:
            return 0.0
        d = self.draft
        if d is not None:
            base = self._draft_cache.get(n)
            if base is None:
                base = self._draft_cache[n] = d.decode_base(n)
            return self.k * (base + d.decode_coef_per_step * ctx)
        p = self.perf        # EAGLE / MTP: one decoder layer and the LM head per drafted token
        base = self._draft_cache.get(n)
        if base is None:
            base = self._draft_cache[n] = p.decode_gpu_base(n) / p.layers + p.head_time(n)
        return self.k * (base + p.decode_coef_per_step * ctx / p.layers)

    def verify_time(self, n: int, ctx: int, *, tokens: int = 0, sampled: int = 0, prefill_work: float = 0.0) -> float:
        """The target's forward over each sequence's k + 1 tokens (plus any prompt chunks) and the drafts."""
        k1 = self.k + 1
        return (self.perf.iteration_time(tokens=tokens + n * k1, sampled=sampled + n * k1, prefill_work=prefill_work,
                                         decode_seqs=n, decode_ctx=ctx + n * k1 if n else 0, requests=sampled + n)
                + self.draft_time(n, ctx))

    def _mixed_iteration(self) -> Window:
        chunks, kv = self.sched.chunks, self.kv
        n = len(self.decode.seqs)
        t0_fs = self.t_fs
        work = sum(q * (e.done + (q + 1) / 2) for e, q in chunks)
        q_tokens = sum(q for _, q in chunks)
        sampled = sum(1 for e, q in chunks if e.done + q == e.target)
        d = to_fs(self.verify_time(n, self.decode.ctx_sum, tokens=q_tokens, sampled=sampled, prefill_work=work))
        self.win = win = Window(t0_fs, d, 0, 0, 0, 1)
        self.record_busy(self.t, (t0_fs + d) / 1e15, (kv.total - kv.free) * kv.B, q_tokens + n * (self.k + 1),
                         steps=None, decodes=n > 0)
        self._k = 1 if n else 0
        return win

    def _decode_window(self) -> Window:
        kv, dec = self.kv, self.decode
        n = len(dec.seqs)
        if n == 0:
            raise RuntimeError(f"replica {self.index}: scheduler stalled with {len(self.waiting)} waiting")
        self._k = 1
        d = to_fs(self.verify_time(n, dec.ctx_sum))
        self.win = win = Window(self.t_fs, d, 0, 0, 0, 1)
        self.record_busy(self.t, win.end(1) / 1e15, (kv.total - kv.free + kv.reserved) * kv.B, n * (self.k + 1),
                         steps=None)
        return win


ENGINES.register(SpeculativeBatching, SpeculativeEngine)
