"""Engine presets: each serving framework's documented defaults, per version, resolved in one place.

``replica.engine`` (vllm | trtllm | trtllm-bench | sglang) and ``replica.engine_version`` pick a
:class:`Preset`: the newest preset version at or below the asked-for one (the oldest, with a
warning, below every preset; the newest when no version is given — :func:`~simulator.silicon.versions.choose`).
A preset fills every engine key the scenario leaves unset (``None``): the token budget
(``max_batched_tokens``), the sequence bound (``max_num_seqs``), chunked prefill, the capacity
policy, the scheduling order, the KV-cache block size and memory share, what ``kv_cache_precision:
auto`` means, and prefix caching. An explicit key always wins. :func:`resolve` returns the
:class:`EngineSettings` the simulation runs with; the serving result reports them
(``ServingResult.engine_settings``) with the source of every value.

Every default cites the framework's own code or documentation (the ``SOURCES_*`` tables below).
The sources were read from the frameworks' repositories; where a file's version could not be
pinned to a release tag, the note says which stored version was read.

Where a stored source could not be tied to a release, the preset says so here:

- TensorRT-LLM 1.0 and 1.3 read the same LLM-API defaults (``llm_args.py`` at several stored
  commits agree) and the same trtllm-bench sizing (its test pins the formula across versions).
- SGLang 0.5's chunk and memory rule are ``server_args.py`` ``_handle_gpu_memory_settings`` of a
  0.5.x snapshot; earlier 0.5 releases may have used 0.4's rule (8192, 2048 below 25 GB).
- vLLM's newest sources (after 0.24) set ``gpu_memory_utilization`` 0.92 and a 16384-token server
  budget (PR #51726); neither is in a preset, as the release that brought them is not known here.

What the presets do not model (documented, not approximated):

- vLLM 0.6 multi-step scheduling (``--num-scheduler-steps``): the preset is vLLM's default, one
  step; with n steps vLLM admits new requests only every n decode steps, streams tokens n at a
  time and keeps finished sequences in the batch until the n steps end.
- vLLM V0's 1% block watermark on admission, and SGLang's radix-tree eviction in its prefill-first
  scheduler (which takes the workload's ``prefix_cache_hit_rate``; the hashed, LRU-evicted prefix
  cache of :mod:`.prefix_cache` runs in the decode-first scheduler).
- SGLang 0.3's bursts of 10 decode steps (``num_continue_decode_steps``): they break after every
  step for streamed requests, which is how benchmarks run.
- The usage context: vLLM's Python ``LLM`` class (offline ``vllm bench throughput``) defaults to a
  larger token budget than its OpenAI server (16384 vs 8192 on large GPUs); the presets are the
  server's, which is what capsim simulates. Set ``replica.max_batched_tokens`` for the other.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ...precision import get_format
from ...silicon.versions import choose, version_key
from .defaults import vllm_tier

if TYPE_CHECKING:
    from ...models import ModelSpec

Policy = Literal["max_utilization", "guaranteed_no_evict", "new_token_ratio"]
Order = Literal["decode_first", "prefill_first"]
KVBasis = Literal["free", "total", "static"]
Scales = Literal["static", "dynamic"]
POLICIES: tuple[str, ...] = ("max_utilization", "guaranteed_no_evict", "new_token_ratio")
ORDERS: tuple[str, ...] = ("decode_first", "prefill_first")


_PRE_RELEASE = re.compile(r"\.?(rc|dev|alpha|beta|a|b)\d*$")


class PresetWarning(UserWarning):
    """An asked-for engine version is older than every preset; the oldest preset was used."""


@dataclass(frozen=True, slots=True)
class LengthStats:
    """The workload's request lengths that engine heuristics read (trtllm-bench sizes its engine
    from the dataset's mean input and output lengths and its longest input)."""

    mean_prompt: float
    mean_output: float
    max_prompt: int | None   # None: unbounded (a length distribution without a maximum)


@dataclass(frozen=True, slots=True)
class Context:
    """What a preset's rules may read: the model, the GPU, the layout, the precision and the workload."""

    model: ModelSpec
    memory_gib: float
    gpu: str                   # the hardware profile's name (vLLM's rules read the device name)
    tp: int
    pp: int
    precision: str
    lengths: LengthStats | None


@dataclass(frozen=True, slots=True)
class NewTokenRatio:
    """SGLang's admission estimate: a request is admitted when its prompt plus its (clipped) output
    fits beside ``ratio`` × the remaining (clipped) outputs of the running requests. ``ratio``
    starts at ``init``, falls by ``decay`` per decode step to ``min``, and is re-estimated after
    a retraction, which frees room for ``retract_steps`` decode steps of the rest."""

    init: float
    min: float
    decay: float
    retract_steps: int
    clip_tokens: int


# ---- trtllm-bench's engine sizing (tensorrt_llm/bench/build/tuning.py) ------------------------------
# NVIDIA/TensorRT-LLM tensorrt_llm/bench/build/tuning.py (calc_engine_setting, finetune_setting; the
# stored version read is commit 04cba882; its test tests/unittest/bench/test_tuning.py keeps the older
# formula as legacy_calc_engine_setting and asserts both agree for a model without sliding windows or
# Mamba layers, so the rule below holds for every release from 1.0 on); build.py (TUNED_QUANTS, the
# BuildConfig defaults otherwise); benchmark/utils/general.py get_settings (with chunked prefill off,
# max_num_tokens is raised to the longest prompt plus max_batch_size).
TRTLLM_BENCH_BYTES_PER_ELEM = {"bf16": 2.0, "fp16": 2.0, "fp32": 2.0, "fp8": 1.0, "fp8-block": 1.0, "nvfp4": 0.5}
TRTLLM_BUILD_DEFAULTS = (2048, 8192)   # BuildConfig.max_batch_size, max_num_tokens: quantizations outside TUNED_QUANTS


@dataclass(frozen=True, slots=True)
class BenchSizing:
    """One worked step of :func:`trtllm_bench_sizing`, for the record (every figure in GiB as trtllm-bench logs it)."""

    max_batch_size: int
    max_num_tokens: int
    kv_cache_max_requests: float
    engine_size_gib: float
    cache_memory_gib: float


def trtllm_bench_sizing(*, param_count: int, layers: int, kv_heads: int, head_dim: float, precision: str,
                        kv_precision: str, device_memory_gib: float, tp: int, pp: int, isl: float, osl: float,
                        kv_fraction: float, gpus: int | None = None) -> BenchSizing:
    """trtllm-bench's ``calc_engine_setting`` + ``finetune_setting``: the largest batch the KV cache
    holds at the dataset's mean ISL+OSL, rounded up "optimistically", and a token budget of that
    batch × (1 + ISL/OSL), both capped and rounded to the tool's steps."""
    if precision not in TRTLLM_BENCH_BYTES_PER_ELEM:   # not a TUNED_QUANTS algorithm: the build defaults
        return BenchSizing(*TRTLLM_BUILD_DEFAULTS, math.nan, math.nan, math.nan)
    byte_per_elem = TRTLLM_BENCH_BYTES_PER_ELEM[precision]
    byte_per_kv_elem = 1.0 if kv_precision == "fp8" else 2.0
    kv_heads_adj = max(tp, kv_heads)                 # each GPU of the TP group holds at least one KV head
    gib_per_token = 2 * layers * kv_heads_adj * head_dim * byte_per_kv_elem / 1024**3
    n_gpus = gpus or tp * pp
    engine_size = param_count * byte_per_elem / 1024**3
    total = device_memory_gib * n_gpus
    cache_memory = (total - engine_size) * kv_fraction
    max_requests = cache_memory / (gib_per_token * (isl + osl))
    # finetune_setting
    raw_bs = min(max_requests, 4096) / pp            # cap the decoder buffers
    raw_token = min(raw_bs * (1 + isl / osl), 32768)  # cap the activation buffer
    if raw_bs < 256:
        max_bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        max_bs = 128 * math.ceil(raw_bs / 128)
    else:
        max_bs = 256 * math.ceil(raw_bs / 256)
    if raw_token < 4096:
        max_token = max(2048, 256 * math.ceil(raw_token / 256))
    elif raw_token < 8192:
        max_token = 512 * math.ceil(raw_token / 512)
    else:
        max_token = 1024 * math.ceil(raw_token / 1024)
    return BenchSizing(max_bs, max_token, max_requests, engine_size, cache_memory)


# ---- the presets -------------------------------------------------------------------------------------
Sizing = Callable[[Context, "Partial"], tuple[int | None, int]]


@dataclass(frozen=True, slots=True)
class Partial:
    """What a sizing rule may read of the values resolved before it."""

    chunked_prefill: bool
    kv_cache_precision: str
    kv_free_fraction: float     # trtllm-bench sizes its engine with the KV fraction it runs with


@dataclass(frozen=True)
class Preset:
    """One framework version's defaults; rules are functions of the :class:`Context`."""

    engine: str
    version: str
    label: str
    sizing: Sizing                                        # (max_num_seqs or None: from the KV cache, max_batched_tokens)
    chunked_prefill: Callable[[Context], bool]
    schedule_order: Callable[[bool], Order]               # from the resolved chunked_prefill
    scheduler_policy: Policy
    kv_block_tokens: int
    prefix_caching: bool
    kv_memory: Callable[[Context, int, bool], tuple[KVBasis, float]]   # (ctx, max_batched_tokens, chunked)
    kv_auto: Callable[[str], str]                         # precision -> KV format for kv_cache_precision: auto
    max_prefill_tokens: Callable[[int], int | None] = lambda tokens: None
    fp8_scales: Scales = "dynamic"                         # FP8 GEMM activation scales of the checkpoints it serves
    host_us_per_request: float = 0.0                      # host time per sampled request per iteration (µs)
    new_token_ratio: NewTokenRatio | None = None
    seqs_from_kv: Callable[[int, int], int] | None = None  # (kv tokens, context length) -> max_num_seqs
    sources: Mapping[str, str] = field(default_factory=dict)


def _model_dtype_kv(precision: str) -> str:
    """vLLM and SGLang: ``kv_cache_dtype: auto`` is the model's activation dtype (bf16 for every
    quantized checkpoint), FP8 KV is opt-in."""
    return get_format(precision).kv_default


def _checkpoint_kv(precision: str) -> str:
    """TensorRT-LLM: ``kv_cache_config.dtype: auto`` takes the checkpoint's ``kv_cache_quant_algo``;
    NVIDIA's ModelOpt FP8 and NVFP4 checkpoints quantize the KV cache to FP8 (ModelOpt's PTQ
    default ``--kv_cache_qformat fp8``); other formats keep it at the model dtype."""
    return "fp8" if precision in ("fp8", "nvfp4") else get_format(precision).kv_default


def _total(fraction: float) -> Callable[[Context, int, bool], tuple[KVBasis, float]]:
    return lambda ctx, tokens, chunked: ("total", fraction)


def _free(fraction: float) -> Callable[[Context, int, bool], tuple[KVBasis, float]]:
    return lambda ctx, tokens, chunked: ("free", fraction)


# vLLM ----------------------------------------------------------------------------------------------------
def _vllm_v0_sizing(ctx: Context, p: Partial) -> tuple[int | None, int]:
    # vllm/config.py SchedulerConfig (0.6.0): 512 with chunked prefill (best ITL/TTFT on A100), else
    # max(max_model_len, 2048); max_model_len is the model's context (capsim has no key for it)
    return 256, 512 if p.chunked_prefill else max(ctx.model.max_positions, 2048)


def _vllm_v0_chunked(ctx: Context) -> bool:
    # vllm/engine/arg_utils.py (0.6.0) create_engine_config: chunked prefill is switched on for the
    # OpenAI server when max_model_len > 32K, else off
    return ctx.model.max_positions > 32 * 1024


def _named_h100_h200(ctx: Context) -> bool:
    return "h100" in ctx.gpu.lower() or "h200" in ctx.gpu.lower()


def _vllm_080_sizing(ctx: Context, p: Partial) -> tuple[int | None, int]:
    # vLLM 0.8.0-0.8.3 (V1): max_num_seqs 1024 on every GPU; the server's token budget 8192 on H100/H200
    # by device name, else 2048 (PR #12369)
    return 1024, 8192 if _named_h100_h200(ctx) else 2048


def _vllm_084_sizing(ctx: Context, p: Partial) -> tuple[int | None, int]:
    # PR #16158 (vLLM 0.8.4): max_num_seqs back to V0's 256 except on H100/H200
    big = _named_h100_h200(ctx)
    return (1024 if big else 256), (8192 if big else 2048)


def _vllm_090_sizing(ctx: Context, p: Partial) -> tuple[int | None, int]:
    t = vllm_tier(ctx.memory_gib, ctx.gpu)
    return t.max_num_seqs, t.max_batched_tokens


_VLLM_COMMON = {
    "kv_block_tokens": "vLLM CacheConfig.block_size default 16 (vllm/config/cache.py DEFAULT_BLOCK_SIZE)",
    "kv_memory": "vLLM gpu_memory_utilization 0.9: weights, activations and KV cache within 90% of the GPU's "
                 "memory (vllm/config/cache.py; engine args docs 'If unspecified, will use the default value of 0.9')",
    "kv_cache_precision": "vLLM kv_cache_dtype 'auto': 'will use model data type' (vllm/config/cache.py CacheDType)",
    "fp8_scales": "dynamic: vLLM --quantization fp8 on a bf16 checkpoint computes per-tensor activation scales "
                  "each forward (model_executor/layers/quantization/fp8.py Fp8Config activation_scheme "
                  "'dynamic'); a checkpoint with calibrated input scales runs static",
    "scheduler_policy": "vLLM allocates KV blocks on demand and preempts by recompute when they run out",
}
SOURCES_VLLM_V0 = {
    "host_us_per_request": "0: not modelled (no published per-request host figure for vLLM V0's scheduler)",
    **_VLLM_COMMON,
    "max_num_seqs": "vllm/engine/arg_utils.py (0.6) EngineArgs.max_num_seqs = 256",
    "max_batched_tokens": "vllm/config.py (0.6.0) SchedulerConfig: 512 with chunked prefill, else "
                          "max(max_model_len, 2048)",
    "chunked_prefill": "vllm/engine/arg_utils.py (0.6.0): enabled by default for the OpenAI server when "
                       "max_model_len > 32K, else off",
    "schedule_order": "vllm/core/scheduler.py (V0) _schedule_default runs waiting prefills in a batch of their "
                      "own before running decodes; _schedule_chunked_prefill (chunked prefill on) runs decodes first",
    "prefix_caching": "vLLM V0 enable_prefix_caching default False",
    "max_prefill_tokens": "V0: the prompts of one prefill batch share max_num_batched_tokens",
}
SOURCES_VLLM_V1 = {
    "host_us_per_request": "0: not modelled; vLLM V1 detokenizes and streams in a process beside the engine "
                           "core (no published per-request host figure)",
    **_VLLM_COMMON,
    "max_num_seqs": "vllm/engine/arg_utils.py (V1) default_max_num_seqs for the OpenAI server: 1024 on GPUs "
                    ">= 70 GiB except A100 (PRs #17073, #17885), else 256 "
                    "(tests/engine/test_arg_utils.py test_defaults_with_usage_context)",
    "max_batched_tokens": "vllm/engine/arg_utils.py (V1) default_max_num_batched_tokens for the OpenAI server: "
                          "8192 on GPUs >= 70 GiB except A100, else 2048",
    "chunked_prefill": "vLLM V1 always chunks prefills within max_num_batched_tokens",
    "schedule_order": "vllm/v1/core/sched/scheduler.py schedule(): running requests (decodes and chunked "
                      "prefills) first, then waiting requests within the remaining token budget",
    "prefix_caching": "vLLM V1 CacheConfig.enable_prefix_caching default True",
}
SOURCES_VLLM_080 = {**SOURCES_VLLM_V1,
                    "max_num_seqs": "vLLM 0.8.0 (V1): max_num_seqs 1024 on every GPU (reverted in PR #16158)",
                    "max_batched_tokens": "vLLM PR #12369: 8192 on H100/H200 (by device name) for the OpenAI "
                                          "server, else 2048"}
SOURCES_VLLM_084 = {**SOURCES_VLLM_080,
                    "max_num_seqs": "vLLM PR #16158 (0.8.4): max_num_seqs 1024 on H100/H200, else V0's 256"}


def _vllm(version: str, label: str, sizing: Sizing, sources: Mapping[str, str], *, v0: bool = False) -> Preset:
    return Preset(
        engine="vllm", version=version, label=label, sizing=sizing,
        chunked_prefill=_vllm_v0_chunked if v0 else (lambda ctx: True),
        schedule_order=(lambda chunked: "decode_first" if chunked else "prefill_first") if v0
        else (lambda chunked: "decode_first"),
        scheduler_policy="max_utilization", kv_block_tokens=16, prefix_caching=not v0, kv_memory=_total(0.9),
        kv_auto=_model_dtype_kv, max_prefill_tokens=(lambda tokens: tokens) if v0 else (lambda tokens: None),
        sources=sources)


# TensorRT-LLM --------------------------------------------------------------------------------------------
# The PyTorch executor's sampler finishes each iteration on the host: after the sampler event it walks the sampled
# requests in Python (TorchSampler.update_requests: add the new token, check the stop criteria), and the GPU waits
# for it (the "per-iter bubble" of NVIDIA/TensorRT-LLM PR #16564). Its cost per request: PR #15920 measured the
# TorchSampler at 216 µs median for 64 requests on a B300 node after that PR (454 µs before); PR #10459, 2.45 ms for
# 512 requests (3.59 ms before). The newest, 216/64 = 3.4 µs per request, is the default (an x86 host; not fitted).
TRTLLM_HOST_US_PER_REQUEST = 3.4
TRTLLM_HOST_SOURCE = ("3.4 µs: TorchSampler.update_requests, the PyTorch executor's per-request host loop after each "
                      "step, serialised with the GPU (NVIDIA/TensorRT-LLM PR #16564); PR #15920 measured 216 µs for "
                      "64 requests on B300 (454 µs before it), PR #10459 2.45 ms for 512 (3.59 ms before it)")
SOURCES_TRTLLM = {
    "max_num_seqs": "tensorrt_llm/llmapi/llm_args.py BaseLlmArgs.max_batch_size default 2048",
    "max_batched_tokens": "tensorrt_llm/llmapi/llm_args.py BaseLlmArgs.max_num_tokens default 8192",
    "chunked_prefill": "tensorrt_llm/llmapi/llm_args.py BaseLlmArgs.enable_chunked_prefill default False",
    "scheduler_policy": "tensorrt_llm/llmapi/llm_args.py SchedulerConfig.capacity_scheduler_policy default "
                        "GUARANTEED_NO_EVICT",
    "schedule_order": "cpp/tensorrt_llm/batch_manager/microBatchScheduler.cpp: 'Select the generation phase "
                      "requests ... If there is any remaining space, include the context requests'",
    "kv_block_tokens": "tensorrt_llm/llmapi/llm_args.py KvCacheConfig.tokens_per_block default 32",
    "kv_memory": "tensorrt_llm/llmapi/llm_args.py KvCacheConfig.free_gpu_memory_fraction 0.9 of the memory "
                 "free after the model loads",
    "kv_cache_precision": "KvCacheConfig.dtype 'auto' uses the checkpoint's KV quantization "
                          "(tensorrt_llm/_torch/pyexecutor model_engine.py validate_and_set_kv_cache_quant: "
                          "'Using checkpoint KV quantization'); ModelOpt's PTQ exports an FP8 KV cache by default "
                          "(NVIDIA/TensorRT-Model-Optimizer examples/llm_ptq/hf_ptq.py --kv_cache_qformat "
                          "default 'fp8'), so NVIDIA's FP8 and NVFP4 checkpoints run FP8 KV",
    "prefix_caching": "tensorrt_llm/llmapi/llm_args.py KvCacheConfig.enable_block_reuse default True",
    "host_us_per_request": TRTLLM_HOST_SOURCE,
    "fp8_scales": "static: TensorRT-LLM serves ModelOpt-quantized checkpoints, whose FP8 linear layers carry "
                  "calibrated input scales (the dynamic path runs only for weights without input_scale; "
                  "aiconfigurator collector/trtllm/collect_gemm.py)",
}
SOURCES_TRTLLM_BENCH = {
    **SOURCES_TRTLLM,
    "max_num_seqs": "trtllm-bench throughput: tensorrt_llm/bench/build/tuning.py calc_engine_setting from the "
                    "dataset's mean ISL/OSL and the GPU memory (capsim.serving.engines.presets.trtllm_bench_sizing)",
    "max_batched_tokens": "tensorrt_llm/bench/build/tuning.py finetune_setting; with chunking off raised to the "
                          "longest prompt + max_batch_size (tensorrt_llm/bench/benchmark/utils/general.py "
                          "get_settings)",
    "chunked_prefill": "trtllm-bench throughput --enable_chunked_context default False "
                       "(tensorrt_llm/bench/benchmark/throughput.py)",
    "scheduler_policy": "trtllm-bench throughput --scheduler_policy default guaranteed_no_evict",
    "kv_memory": "trtllm-bench throughput --kv_cache_free_gpu_mem_fraction default 0.90 of the memory free "
                 "after the model loads",
}


def _trtllm_bench_sizing(ctx: Context, p: Partial) -> tuple[int | None, int]:
    m = ctx.model
    isl = ctx.lengths.mean_prompt if ctx.lengths else float(m.default_seq_len)
    osl = ctx.lengths.mean_output if ctx.lengths else float(m.default_seq_len)
    if m.experts_only_quant == "mxfp4":
        # GPT-OSS's MXFP4 checkpoint loads as W4A8_MXFP4_MXFP8 / W4A16_MXFP4 (_torch/model_config.py
        # get_mxfp4_quant_algo), neither in bench/build/build.py TUNED_QUANTS: get_benchmark_engine_settings
        # keeps BuildConfig's max_batch_size 2048 and max_num_tokens 8192
        bs, tokens = TRTLLM_BUILD_DEFAULTS
        if not p.chunked_prefill and ctx.lengths is not None and ctx.lengths.max_prompt is not None:
            tokens = max(tokens, ctx.lengths.max_prompt + bs)
        return bs, tokens
    s = trtllm_bench_sizing(param_count=m.total_params(), layers=m.layers, kv_heads=m.kv_heads, head_dim=m.head_dim,
                            precision=ctx.precision, kv_precision=p.kv_cache_precision,
                            device_memory_gib=ctx.memory_gib, tp=ctx.tp, pp=ctx.pp, isl=isl, osl=max(osl, 1.0),
                            kv_fraction=p.kv_free_fraction)
    if any(spec.attention.is_mla for spec, _ in m.layer_groups()):
        # the heuristic's 2·kv_heads·head_dim per token and layer would count MLA's cache 85 times over
        # (DeepSeek-R1: 2·128·192 against 512 + 64); its latent's real size stands in (costmodel.attention_variants)
        s = trtllm_bench_sizing(param_count=m.total_params(), layers=m.layers, kv_heads=1,
                                head_dim=m.kv_cache_bytes_per_token(1.0) / m.layers / 2, precision=ctx.precision,
                                kv_precision=p.kv_cache_precision, device_memory_gib=ctx.memory_gib, tp=1,
                                pp=ctx.pp, isl=isl, osl=max(osl, 1.0), kv_fraction=p.kv_free_fraction,
                                gpus=ctx.tp * ctx.pp)
    tokens = s.max_num_tokens
    if not p.chunked_prefill and ctx.lengths is not None and ctx.lengths.max_prompt is not None:
        tokens = max(tokens, ctx.lengths.max_prompt + s.max_batch_size)
    return s.max_batch_size, tokens


def _trtllm(version: str, *, bench: bool) -> Preset:
    return Preset(
        engine="trtllm-bench" if bench else "trtllm", version=version,
        label="trtllm-bench throughput" if bench else "TensorRT-LLM LLM API / trtllm-serve",
        sizing=_trtllm_bench_sizing if bench else (lambda ctx, p: (2048, 8192)),
        chunked_prefill=lambda ctx: False, schedule_order=lambda chunked: "decode_first",
        scheduler_policy="guaranteed_no_evict", kv_block_tokens=32, prefix_caching=True, kv_memory=_free(0.9),
        kv_auto=_checkpoint_kv, fp8_scales="static", host_us_per_request=TRTLLM_HOST_US_PER_REQUEST,
        sources=SOURCES_TRTLLM_BENCH if bench else SOURCES_TRTLLM)


# SGLang --------------------------------------------------------------------------------------------------
def _sglang_max_running(kv_tokens: int, context_len: int) -> int:
    # python/sglang/srt/model_executor/model_runner.py: the request pool holds
    # min(max(int(tokens / context_len * 512), 2048), 4096) requests, and
    # managers/scheduler.py: max_running_requests = min(max_total_num_tokens // 2, that pool)
    pool = min(max(int(kv_tokens / context_len * 512), 2048), 4096)
    return max(min(kv_tokens // 2, pool), 1)


def _sglang_03_memory(ctx: Context, tokens: int, chunked: bool) -> tuple[KVBasis, float]:
    # python/sglang/srt/server_args.py (0.3) __post_init__: mem_fraction_static by tensor parallelism
    tp = ctx.tp
    frac = 0.79 if tp >= 16 else 0.83 if tp >= 8 else 0.85 if tp >= 4 else 0.87 if tp >= 2 else 0.88
    return "static", frac


def _sglang_05_tier(gpu_mem_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs) of server_args.py _handle_gpu_memory_settings (0.5)."""
    small_tp = tp < 4
    if gpu_mem_mib < 20 * 1024:           # T4, 4080
        return 2048, 8
    if gpu_mem_mib < 35 * 1024:           # A10, 4090, 5090
        return 2048, 24 if small_tp else 80
    if gpu_mem_mib < 60 * 1024:           # A100 40GB, L40
        return 4096, 32 if small_tp else 160
    if gpu_mem_mib < 160 * 1024:          # H100, A100 80GB (< 90 GiB); H20, H200 (< 160 GiB)
        return 8192, 256 if small_tp else 512
    return 16384, 512                     # B200, MI300


def _sglang_05_sizing(ctx: Context, p: Partial) -> tuple[int | None, int]:
    return None, _sglang_05_tier(ctx.memory_gib * 1024, ctx.tp)[0]


def _sglang_05_memory(ctx: Context, tokens: int, chunked: bool) -> tuple[KVBasis, float]:
    # server_args.py _handle_gpu_memory_settings (0.5): mem_fraction_static = (gpu_mem - reserved) / gpu_mem,
    # reserved (MiB) = 512 + max(chunked_prefill_size, 2048) * 1.5 + cuda_graph_max_bs * 2 + tp * pp / 8 * 1024,
    # at least 10 GiB on GPUs over 60 GiB (with chunking off max_prefill_tokens stands for the chunk)
    gpu_mib = ctx.memory_gib * 1024
    graph_bs = _sglang_05_tier(gpu_mib, ctx.tp)[1]
    reserved = 512 + max(tokens, 2048) * 1.5 + graph_bs * 2 + ctx.tp * ctx.pp / 8 * 1024
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return "static", round((gpu_mib - reserved) / gpu_mib, 3)


_SGLANG_COMMON = {
    "host_us_per_request": "0: not modelled (no published per-request host figure for SGLang's scheduler)",
    "max_num_seqs": "SGLang max_running_requests: min(max_total_num_tokens // 2, request pool "
                    "min(max(int(tokens / context_len * 512), 2048), 4096)) "
                    "(python/sglang/srt/model_executor/model_runner.py, managers/scheduler.py)",
    "chunked_prefill": "SGLang chunks prefills at chunked_prefill_size (server_args.py)",
    "scheduler_policy": "SGLang admits a request when prompt + min(max_new_tokens, 4096) fits beside "
                        "new_token_ratio x the running requests' remaining outputs (managers/schedule_policy.py "
                        "PrefillAdder, CLIP_MAX_NEW_TOKENS 4096) and retracts decodes when the pool runs out "
                        "(managers/schedule_batch.py retract_decode)",
    "schedule_order": "python/sglang/srt/managers/scheduler.py get_next_batch_to_run: 'Run prefill first if "
                      "possible' (get_new_batch_prefill), else decode the running batch",
    "kv_block_tokens": "SGLang server_args page_size default 1 (token-granular KV pool)",
    "kv_cache_precision": "SGLang kv_cache_dtype 'auto': 'will use model data type' (server_args.py)",
    "fp8_scales": "dynamic: SGLang --quantization fp8 quantizes activations per forward (layers/quantization/"
                  "fp8.py, vLLM's Fp8Config scheme); a checkpoint with calibrated input scales runs static",
    "prefix_caching": "SGLang RadixAttention prefix cache on by default (--disable-radix-cache turns it off)",
    "max_prefill_tokens": "SGLang server_args max_prefill_tokens default 16384",
}
SOURCES_SGLANG_03 = {
    **_SGLANG_COMMON,
    "max_batched_tokens": "SGLang server_args.py (0.3) chunked_prefill_size default 8192",
    "kv_memory": "SGLang server_args.py (0.3) mem_fraction_static by TP (0.88 at TP1, 0.87 TP2, 0.85 TP4, "
                 "0.83 TP8, 0.79 TP16): weights and KV pool within that share of the GPU's memory",
    "new_token_ratio": "python/sglang/global_config.py (0.3): init_new_token_ratio 0.7, base_min_new_token_ratio "
                       "0.1, new_token_ratio_decay 0.001 per decode step, retract_decode_steps 20",
}
SOURCES_SGLANG_05 = {
    **_SGLANG_COMMON,
    "max_batched_tokens": "SGLang server_args.py (0.5) _handle_gpu_memory_settings chunked_prefill_size by GPU "
                          "memory: 2048 below 35 GB, 4096 below 60 GB, 8192 on H100/H200-class, 16384 on B200",
    "kv_memory": "SGLang server_args.py (0.5) _handle_gpu_memory_settings: mem_fraction_static = "
                 "(GPU memory - reserved) / GPU memory, reserved for activations and CUDA graphs",
    "new_token_ratio": "python/sglang/global_config.py (0.5): default_init_new_token_ratio 0.7, "
                       "min_new_token_ratio_factor 0.14, new_token_ratio_decay_steps 600, retract_decode_steps 20",
}


def _sglang(version: str, sizing: Sizing, memory: Callable[[Context, int, bool], tuple[KVBasis, float]],
            ratio: NewTokenRatio, sources: Mapping[str, str]) -> Preset:
    return Preset(
        engine="sglang", version=version, label="SGLang", sizing=sizing, chunked_prefill=lambda ctx: True,
        schedule_order=lambda chunked: "prefill_first", scheduler_policy="new_token_ratio", kv_block_tokens=1,
        prefix_caching=True, kv_memory=memory, kv_auto=_model_dtype_kv, max_prefill_tokens=lambda tokens: 16384,
        new_token_ratio=ratio, seqs_from_kv=_sglang_max_running, sources=sources)


PRESETS: dict[str, dict[str, Preset]] = {
    "vllm": {
        "0.6": _vllm("0.6", "vLLM V0", _vllm_v0_sizing, SOURCES_VLLM_V0, v0=True),
        "0.8": _vllm("0.8", "vLLM V1", _vllm_080_sizing, SOURCES_VLLM_080),
        "0.8.4": _vllm("0.8.4", "vLLM V1", _vllm_084_sizing, SOURCES_VLLM_084),
        "0.9": _vllm("0.9", "vLLM V1", _vllm_090_sizing, SOURCES_VLLM_V1),
    },
    "trtllm": {"1.0": _trtllm("1.0", bench=False), "1.3": _trtllm("1.3", bench=False)},
    "trtllm-bench": {"1.0": _trtllm("1.0", bench=True), "1.3": _trtllm("1.3", bench=True)},
    "sglang": {
        "0.3": _sglang("0.3", lambda ctx, p: (None, 8192), _sglang_03_memory,
                       NewTokenRatio(0.7, 0.1, 0.001, 20, 4096), SOURCES_SGLANG_03),
        "0.5": _sglang("0.5", _sglang_05_sizing, _sglang_05_memory,
                       NewTokenRatio(0.7, 0.7 * 0.14, (0.7 - 0.7 * 0.14) / 600, 20, 4096), SOURCES_SGLANG_05),
    },
}


def preset_for(engine: str, version: str | None) -> tuple[Preset, str | None]:
    """The preset of ``engine`` at ``version`` and a warning or None: that version's preset, else the
    newest one below it, else the oldest (warned, also as a :class:`PresetWarning`); ``None``: the newest."""
    versions = PRESETS[engine]
    # a pre-release carries the defaults of the release it leads to: 1.3.0rc20 takes the 1.3 preset
    pick, _ = choose(versions, None if version is None else _PRE_RELEASE.sub("", version))
    warning = None
    if version is not None and version_key(version) < version_key(min(versions, key=version_key)):
        warning = (f"replica.engine_version={version}: no {engine} preset that old; using {engine} {pick}'s "
                   f"defaults (presets: {', '.join(versions)})")
        warnings.warn(PresetWarning(warning), stacklevel=3)
    return versions[pick], warning


# ---- resolution --------------------------------------------------------------------------------------------
SOURCE_SCENARIO = "set in the scenario"


@dataclass(frozen=True)
class EngineSettings:
    """The engine settings a replica runs with, each from the scenario or the preset (``sources``)."""

    engine: str
    engine_version: str | None             # as asked (None: the newest)
    preset: str                            # the preset version whose defaults fill the unset keys
    label: str
    max_num_seqs: int | None               # None until the KV cache is sized (SGLang sizes it from the pool)
    max_batched_tokens: int
    chunked_prefill: bool
    scheduler_policy: Policy
    schedule_order: Order
    kv_block_tokens: int
    kv_cache_precision: str
    kv_memory: KVBasis                     # what kv_memory_fraction is a share of: free, total or static memory
    kv_memory_fraction: float
    prefix_caching: bool
    max_prefill_tokens: int | None
    new_token_ratio: NewTokenRatio | None
    mixed_chunk: bool = False              # prefill-first: running requests decode in a prefill batch too
    fp8_scales: Scales = "dynamic"         # FP8 GEMMs' activation scales: calibrated (static) or per forward
    host_us_per_request: float = 0.0       # host time per sampled request per iteration, serialised with the GPU
    seqs_from_kv: Callable[[int, int], int] | None = field(default=None, repr=False, compare=False)
    sources: Mapping[str, str] = field(default_factory=dict)
    warning: str | None = None             # the asked-for version was older than every preset

    def with_seqs(self, max_num_seqs: int) -> EngineSettings:
        return replace(self, max_num_seqs=max_num_seqs)

    def kv_memory_text(self) -> str:
        what = {"free": "of the memory left after weights, workspace and runtime",
                "total": "of GPU memory for weights, workspace and KV cache",
                "static": "of GPU memory for weights and KV cache"}[self.kv_memory]
        return f"{self.kv_memory_fraction:g} {what}"

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings as the serving result reports them."""
        d: dict[str, Any] = {
            "engine": self.engine, "engine_version": self.engine_version, "preset": f"{self.engine} {self.preset}",
            "max_num_seqs": self.max_num_seqs, "max_batched_tokens": self.max_batched_tokens,
            "chunked_prefill": self.chunked_prefill, "scheduler_policy": self.scheduler_policy,
            "schedule_order": self.schedule_order, "kv_block_tokens": self.kv_block_tokens,
            "kv_cache_precision": self.kv_cache_precision, "kv_memory": self.kv_memory_text(),
            "prefix_caching": self.prefix_caching, "max_prefill_tokens": self.max_prefill_tokens,
            "mixed_chunk": self.mixed_chunk, "fp8_scales": self.fp8_scales,
            "host_us_per_request": self.host_us_per_request,
        }
        if self.new_token_ratio is not None:
            r = self.new_token_ratio
            d["new_token_ratio"] = {"init": r.init, "min": round(r.min, 6), "decay_per_step": round(r.decay, 8),
                                    "retract_steps": r.retract_steps, "clip_tokens": r.clip_tokens}
        d["sources"] = dict(self.sources)
        return d

    def line(self) -> str:
        """``vllm 0.24 preset (max_num_seqs 1024, max_batched_tokens 8192, chunked prefill on, max_utilization)``."""
        return engine_line(self.to_dict())


def preset_name(d: Mapping[str, Any]) -> str:
    """``vllm 0.24.0`` (the version asked for) or ``vllm 0.9+`` (the newest preset) of resolved settings."""
    engine = d["engine"]
    return f"{engine} {d['engine_version'] or str(d['preset']).removeprefix(f'{engine} ') + '+'}"


def engine_line(d: Mapping[str, Any]) -> str:
    """One line of resolved engine settings (:meth:`EngineSettings.to_dict`) for people."""
    parts = [f"max_num_seqs {d['max_num_seqs']}", f"max_batched_tokens {d['max_batched_tokens']}",
             f"chunked prefill {'on' if d['chunked_prefill'] else 'off'}", str(d["scheduler_policy"])]
    if d["schedule_order"] == "prefill_first":
        parts.append("prefill first")
    if d.get("host_us_per_request"):
        parts.append(f"host {d['host_us_per_request']:g} µs per request per step")
    return f"{preset_name(d)} preset ({', '.join(parts)})"


MIXED_CHUNK_SOURCE = ("off: SGLang server_args enable_mixed_chunk default False (a prefill batch runs alone); "
                      "vLLM V0's prefill batches never carry decodes")
ENGINE_KEYS = ("max_num_seqs", "max_batched_tokens", "chunked_prefill", "scheduler_policy", "schedule_order",
               "kv_block_tokens", "prefix_caching", "max_prefill_tokens", "mixed_chunk")
SOURCE_ORDER = ("max_num_seqs", "max_batched_tokens", "chunked_prefill", "scheduler_policy", "schedule_order",
                "kv_block_tokens", "kv_cache_precision", "kv_memory", "prefix_caching", "max_prefill_tokens",
                "mixed_chunk", "fp8_scales", "host_us_per_request", "new_token_ratio")


def resolve(rc: Any, ctx: Context) -> EngineSettings:
    """The engine settings of replica keys ``rc`` (a :class:`~.base.ReplicaConfig`) in ``ctx``: every
    key the scenario set, the preset of ``rc.engine`` / ``rc.engine_version`` for the rest."""
    preset, warning = preset_for(rc.engine, rc.engine_version)
    src = dict(preset.sources)

    def pick(name: str, default: Callable[[], Any]) -> Any:
        v = getattr(rc, name, None)
        if v is not None:
            src[name] = SOURCE_SCENARIO
            return v
        return default()

    chunked = bool(pick("chunked_prefill", lambda: preset.chunked_prefill(ctx)))
    order: Order = pick("schedule_order", lambda: preset.schedule_order(chunked))
    policy: Policy = pick("scheduler_policy", lambda: preset.scheduler_policy)
    block = int(pick("kv_block_tokens", lambda: preset.kv_block_tokens))
    prefix = bool(pick("prefix_caching", lambda: preset.prefix_caching))
    kv_prec = rc.kv_cache_precision
    if kv_prec == "auto":
        kv_prec = preset.kv_auto(ctx.precision)
    else:
        src["kv_cache_precision"] = SOURCE_SCENARIO
    explicit_fraction = getattr(rc, "kv_cache_fraction", None)
    free_fraction = explicit_fraction if explicit_fraction is not None else 0.9
    seqs, tokens = preset.sizing(ctx, Partial(chunked, kv_prec, free_fraction))
    if getattr(rc, "max_num_seqs", None) is not None:
        seqs, src["max_num_seqs"] = rc.max_num_seqs, SOURCE_SCENARIO
    if getattr(rc, "max_batched_tokens", None) is not None:
        tokens, src["max_batched_tokens"] = rc.max_batched_tokens, SOURCE_SCENARIO
    basis: KVBasis
    if explicit_fraction is not None:
        basis, fraction = "free", explicit_fraction
        src["kv_memory"] = SOURCE_SCENARIO + " (replica.kv_cache_fraction: a share of the memory left after weights, "\
                                             "workspace and runtime)"
    else:
        basis, fraction = preset.kv_memory(ctx, tokens, chunked)
    max_prefill = pick("max_prefill_tokens", lambda: preset.max_prefill_tokens(tokens))
    ratio = preset.new_token_ratio if policy == "new_token_ratio" else None
    if policy == "new_token_ratio" and ratio is None:
        ratio = PRESETS["sglang"]["0.5"].new_token_ratio      # SGLang's admission on another engine's preset
        src["new_token_ratio"] = SOURCES_SGLANG_05["new_token_ratio"]
    if policy == "new_token_ratio" and order != "prefill_first":
        from ...errors import CapsimError
        raise CapsimError("replica.scheduler_policy: new_token_ratio (SGLang's admission) runs with the prefill-first "
                          "scheduler; set replica.schedule_order: prefill_first or another scheduler_policy")
    mixed = bool(pick("mixed_chunk", lambda: False))
    scales: Scales = pick("fp8_scales", lambda: preset.fp8_scales)
    host_us = float(pick("host_us_per_request", lambda: preset.host_us_per_request))
    if mixed and order != "prefill_first":
        from ...errors import CapsimError
        raise CapsimError("replica.mixed_chunk mixes decodes into prefill batches of the prefill-first scheduler; the "
                          "decode-first order always runs them together: drop mixed_chunk or set schedule_order: "
                          "prefill_first")
    if order == "prefill_first" and "mixed_chunk" not in src:
        src["mixed_chunk"] = MIXED_CHUNK_SOURCE
    shown = [k for k in SOURCE_ORDER if k in src and not (k == "new_token_ratio" and ratio is None)
             and not (k == "max_prefill_tokens" and max_prefill is None)]
    src = {k: src[k] for k in shown}
    return EngineSettings(
        engine=rc.engine, engine_version=rc.engine_version, preset=preset.version, label=preset.label,
        max_num_seqs=seqs, max_batched_tokens=int(tokens), chunked_prefill=chunked, scheduler_policy=policy,
        schedule_order=order, kv_block_tokens=block, kv_cache_precision=kv_prec, kv_memory=basis,
        kv_memory_fraction=float(fraction), prefix_caching=prefix, max_prefill_tokens=max_prefill,
        new_token_ratio=ratio, mixed_chunk=mixed, fp8_scales=scales, host_us_per_request=host_us,
        seqs_from_kv=preset.seqs_from_kv if seqs is None else None, sources=src,
        warning=warning)


def free_fraction(settings: EngineSettings, *, capacity: float, weights: float, free: float) -> float:
    """The share of the memory left after weights, workspace and runtime (``free``) that holds the KV
    cache under ``settings.kv_memory``, all in bytes per GPU:

    - free:   kv = f × free                              (TensorRT-LLM's kv_cache_free_gpu_mem_fraction)
    - total:  kv = f × capacity − (capacity − free)      (vLLM's gpu_memory_utilization)
    - static: kv = f × capacity − weights                (SGLang's mem_fraction_static)
    """
    f = settings.kv_memory_fraction
    if settings.kv_memory == "free":
        return f
    if free <= 0:
        return 0.0
    kv = f * capacity - (capacity - free) if settings.kv_memory == "total" else f * capacity - weights
    return min(kv / free, 1.0)
