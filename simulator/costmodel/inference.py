"""Time and memory of inference on one replica: prefill chunks and decode tokens in one forward.

An engine with continuous batching (vLLM, TensorRT-LLM) runs one forward per *iteration* over
``T`` tokens: one new token for every decoding sequence plus chunks of prompts. The weight GEMMs
see all ``T`` tokens at once (``m = T``); attention is per sequence. So one layer costs

    linear(T) + a_prefill · Σ q·(c + (q+1)/2) + a_decode · Σ c

``linear(T)`` is the roofline time of the token-wise kernels (norms, QKV, output projection,
MLP, tensor-parallel all-reduces, residual adds); a prompt chunk of ``q`` tokens after ``c``
cached ones does ``4·heads·head_dim`` FLOPs per query-key pair (causal, FlashAttention,
compute-bound); a decode token reads its sequence's ``c`` cached K/V vectors (memory-bound).
Inference has no dropout, so its kernels differ from the training layer's forward. Attention is
linear in the cached tokens, which is what lets the serving simulator advance many decode steps
in one event: the step times of an unchanged batch form an arithmetic sequence.

A model's layers may differ (dense and MoE layers, sliding or full attention, MLA): every term sums
over the model's layer kinds (``ModelSpec.layer_groups``), each costed from its ``LayerSpec``.
Windowed layers in a model that also has full ones are charged their window (``window`` cached
tokens per decoding sequence, at most ``window`` keys per prompt query, a window per sequence in the
cache) and MLA layers their latent cache and absorbed decode (:mod:`.attention_variants`); the routed
experts of an MoE layer run under expert parallelism and attention data parallelism as
:mod:`.moe` says (``ep``, ``attention_dp``, ``expert_skew``). Each term stays linear in the cached
tokens or the decoding sequences, which the fast-forward relies on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InfeasibleError
from ..hardware import HardwareProfile
from ..layers import LayerSpec
from ..models import ModelSpec, as_layer
from ..precision import get_format, kv_bytes, model_weight_bytes
from ..silicon.tables import KernelBasis
from .attention_variants import (
    chunk_mean_keys,
    chunked_prefill_keys,
    decode_flops_per_token,
    kv_bytes_per_token_layer,
    prefill_flops_per_pair,
    windowed_prefill_work,
)
from .collectives import collective_measured, collective_time, p2p_time
from .fusion import UNFUSED, Fusion
from .layout import Layout
from .moe import routed_expert_ops, table_dtype
from .ops import Op, flash_attention, gemm, memory_bound_time, memory_op

ACT_BYTES = 2.0  # 16-bit activations
GIB = 2**30
# CUDA context, cuBLAS workspaces, CUDA graphs and communicator buffers outside the tensors
# (same allowance as training's RUNTIME_RESERVE_GIB; vLLM reports ~0.5-1.5 GiB of non-torch memory).
RUNTIME_RESERVE_GIB = 1.0


def linear_layer_ops(layer: LayerSpec | ModelSpec, hw: HardwareProfile, *, tp: int, tokens: float,
                     precision: str, fusion: Fusion = UNFUSED, fp8_static: bool = False, ep: int = 1,
                     attention_dp: int = 1, expert_skew: float = 1.0, busy_groups: int | None = None,
                     dense_precision: str | None = None, expert_precision: str | None = None,
                     expert_kernel_dtype: str | None = None) -> list[Op]:
    """The token-wise kernels of one layer's inference forward over ``tokens`` tokens (no attention
    core), from its :class:`LayerSpec`: a dense MLP, or the router, the experts the batch hits and
    the shared experts (one TP-sharded MLP) of an MoE layer. ``fusion``: the engine's fused kernels
    (costmodel.fusion): with ``add_norm`` the layer's two residual adds are inside its two norms
    (the second one's is the next layer's input norm, counted here), with ``allreduce_norm`` those
    add-norms are inside the TP all-reduces. ``fp8_static``: FP8 GEMMs with calibrated input scales
    (:func:`~.ops.gemm` ``static_scales``). ``ep``, ``attention_dp``, ``expert_skew``: expert and
    attention data parallelism (:mod:`.moe`): attention, dense MLPs and shared experts run on each DP
    rank's ``tokens/attention_dp`` tokens (``tokens/busy_groups`` on the busiest rank when fewer groups
    have work), the routed experts on all ``tokens`` over ``ep`` ranks.
    MLA layers (:mod:`.attention_variants`) replace the QKV projection with their latent ones.
    ``dense_precision`` / ``expert_precision``: the formats of the non-expert GEMMs and of the routed experts'
    math where they differ from ``precision`` (a checkpoint that quantizes only its experts,
    :func:`layer_precisions`); the experts' weights keep ``precision``'s bytes. ``expert_kernel_dtype``: the
    measured MoE tables' dtype of the experts' kernel (:func:`.moe.table_dtype`; default their math format)."""
    spec = as_layer(layer)
    att, mlp = spec.attention, spec.mlp
    t, h, p, T_all = tp, spec.hidden, dense_precision or precision, tokens
    g = attention_dp if busy_groups is None else busy_groups
    T = T_all / g                         # tokens on the busiest attention DP rank (all of them without DP)
    wb = get_format(p).weight_bytes
    expert_wb = get_format(precision).weight_bytes
    act = T * h * ACT_BYTES
    tp_group = Layout(tp=tp).tp_group

    def weights(name: str, m: float, n: float, k: float, batch: float = 1) -> Op:   # a weight GEMM of the layer
        return gemm(hw, name, m, n, k, p, batch=batch, bytes_per_element=wb, static_scales=fp8_static)

    def allreduce(name: str) -> list[Op]:
        if t == 1:
            return []
        return [Op(name, "tp_comm", collective_time(hw, "all_reduce", act, tp_group, tokens=T),
                   measured=collective_measured(hw, "all_reduce", act, tp_group, tokens=T))]

    def dense(prefix: str, f: int) -> list[Op]:
        up = f * (2 if mlp.activation == "swiglu" else 1)
        return [weights(prefix + "fc1", T, up / t, h),
                memory_op(hw, prefix + "activation", T * (up + f) / t * ACT_BYTES),
                weights(prefix + "fc2", T, h, f / t)]

    in_allreduce = fusion.allreduce_norm and t > 1

    def add_norm(name: str) -> list[Op]:
        if in_allreduce:
            return []
        if fusion.add_norm:           # read x and the residual, write the residual and the normed x
            return [memory_op(hw, name.replace("norm", "add_norm"), 4 * act)]
        return [memory_op(hw, "residual_add", 3 * act), memory_op(hw, name, 2 * act)]

    def residual_add() -> list[Op]:   # the layer's last add, unless the next layer's norm holds it
        return [] if fusion.add_norm or in_allreduce else [memory_op(hw, "residual_add", 3 * act)]

    first = add_norm("norm1") if fusion.add_norm or in_allreduce else [memory_op(hw, "norm1", 2 * act)]
    if att.is_mla:      # latent projections; kv_b stands for the absorbed W_UK/W_UV in decode (same FLOPs)
        # q_a and kv_a read the same input and run as one GEMM in TensorRT-LLM's and SGLang's DeepSeek
        # (SGLang fused_qkv_a_proj_with_mqa), replicated on every TP rank
        lat = att.kv_lora_rank + att.qk_rope_head_dim
        q_in = att.q_lora_rank or h
        ops = [*first, weights("qkv_a", T, att.q_lora_rank + lat, h),
               weights("q_b", T, att.q_dim / t, q_in),
               weights("kv_b", T, att.heads * (att.head_dim - att.qk_rope_head_dim + att.v_head_dim) / t,
                       att.kv_lora_rank)]
    else:
        ops = [*first, weights("qkv", T, (att.q_dim + 2 * att.kv_dim) / t, h)]
    if att.rope and not fusion.rope_in_attention and not att.is_mla:
        ops.append(memory_op(hw, "rope", 2 * T * (att.q_dim + att.kv_dim) / t * ACT_BYTES))
    ops += [weights("attn_out", T, h, att.v_dim / t), *allreduce("tp_allreduce_attn"),
            *add_norm("norm2")]
    if not mlp.is_moe:
        ops += dense("", mlp.ffn_hidden)
    else:
        # the routed experts over ep ranks, each moe_tp wide (costmodel.moe); at ep=1 without DP, the
        # replica's tp GPUs split every expert, as before
        moe_tp = max(t * attention_dp // ep, 1)
        ops += routed_expert_ops(spec, hw, tokens=T_all, moe_tp=moe_tp, ep=ep, attention_dp=attention_dp,
                                 skew=expert_skew, precision=expert_precision or precision, weight_bytes=expert_wb,
                                 fp8_static=fp8_static and expert_precision in (None, precision),
                                 busy_groups=g, kernel_dtype=expert_kernel_dtype)
        if mlp.shared_experts:
            ops += dense("shared_", mlp.shared_experts * mlp.shared_hidden)
    ops += [*allreduce("tp_allreduce_mlp"), *residual_add()]
    return ops


@dataclass(frozen=True)
class AttentionFit:
    """Attention of one layer from the measured tables, as ``fixed + per-unit × work``: decode per
    cached token read, prefill per query-key pair. None where no table covers the layer's shape."""

    decode: tuple[float, float] | None
    prefill: tuple[float, float] | None


# Where the lines read the tables: decode batches of 1-512 sequences with 256-32k cached tokens,
# prompts of 128-8k tokens; the slope comes from the points with at least ``min_work`` (64k cached
# tokens read by one decode kernel; 512k query-key pairs, a 1k-token prompt, in one prefill kernel)
# and the floor from the smallest. work = batch·kv_len for decode, batch·s(s+1)/2 for prefill.
DECODE_FIT = {"batch": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512), "kv_len": (256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
              "min_work": (65536,)}
PREFILL_FIT = {"batch": (1, 2, 4), "seq": (128, 256, 512, 1024, 2048, 4096, 8192), "min_work": (1024 * 1025 // 2,)}


def measured_attention(hw: HardwareProfile, heads: float, kv_heads: float, head_dim: int,
                       kv_precision: str, *, fp8_context: bool = False,
                       prompt_tokens: float | None = None, window: int = 0) -> AttentionFit:
    """Fit the serving cost model's linear attention terms to the engine's measured attention tables.

    The serving simulator needs attention linear in the cached tokens (its fast-forward advances an
    unchanged batch many steps at once), so the tables enter as the least-squares line through their
    points in the range an engine runs in, not point by point. ``fp8_context``: the prompt's attention
    runs as FP8 context FMHA (FP8 Q, K and V: the tables' fp8/fp8 rows; :mod:`.fusion`).

    ``prompt_tokens``: the workload's prompt length. A fused attention kernel's cost per query-key pair
    falls as the prompt grows (more tiles in flight per launch: in TensorRT-LLM's bf16 tables a 16k-token
    prompt's per-pair time is 0.52-0.63 of a 2k one's on H100 and H200 and 0.36-0.49 on B200, for Llama's
    and Qwen's head shapes), so one line through 128-8k-token prompts charges a 32k-token prompt the rate
    of a 2k one. From 1k tokens up, the slope is the table's own per-pair time at that
    length (at its longest measured prompt beyond it), above the same launch floor: still one line, as
    the fast-forward needs, but through the point the workload runs at.

    ``window``: a sliding-window layer's window (0: full attention). Where the tables measured that window
    (aiconfigurator's collectors time ``window_size`` 128 and 8192 beside 0), both lines come from those rows,
    per windowed unit of work: a prompt query reads ``min(position, window)`` keys, a decode query
    ``min(context, window)``. A windowed kernel is not the full one on fewer pairs: TensorRT-LLM's B200 fp8 FMHA
    at GPT-OSS's shape (64/8 heads, d 64) takes 203 µs for an 8k prompt at window 128, 0.26 of the full kernel's
    776 µs where the pairs are 0.03 of them (the band's partial tiles and per-tile overheads). Without such rows
    the full-attention lines stand, applied to the windowed work."""
    kb = hw.kernels
    if kb is None:
        return AttentionFit(None, None)
    if heads != int(heads) or kv_heads != int(kv_heads):
        kb.coverage.miss("attention", f"fractional heads per GPU: {heads:g}/{kv_heads:g}")
        return AttentionFit(None, None)
    kv_dtype = kv_precision if kv_precision in ("bf16", "fp8") else "bf16"
    ctx_dtype, ctx_kv = ("fp8", "fp8") if fp8_context else ("bf16", kv_dtype)
    h, kv, d = int(heads), int(kv_heads), int(head_dim)
    table_key = ("bf16", kv_dtype, h, kv, d, 0)
    ctx_key = (ctx_dtype, ctx_kv, h, kv, d, 0)
    shape = f"bf16/{kv_dtype} heads={h} kv_heads={kv} d={d}"
    decode = prefill = None
    if not kb.has("generation_attention", table_key) or not kb.has("context_attention", ctx_key):
        return _proxy_attention(kb, h, kv, d, kv_dtype, hw.table_bandwidth_ratio, fp8_context=fp8_context)
    if window and kb.has("generation_attention", (*table_key[:5], window)) \
            and kb.has("context_attention", (*ctx_key[:5], window)):
        return _windowed_attention(kb, table_key[:5], ctx_key[:5], window, hw.table_bandwidth_ratio)
    if kb.has("generation_attention", table_key):
        pts = [(float(b * c), kb.generation_attention(dtype="bf16", kv_dtype=kv_dtype, heads=h, kv_heads=kv, head_dim=d,
                                               batch=b, kv_len=c, count=False))
               for b in DECODE_FIT["batch"] for c in DECODE_FIT["kv_len"]]
        decode = floor_slope_line([(w, t) for w, t in pts if t is not None], DECODE_FIT["min_work"][0])
        if decode is not None and hw.table_bandwidth_ratio > 1:   # a sibling GPU's table, faster memory
            decode = (decode[0], decode[1] * hw.table_bandwidth_ratio)
    else:
        kb.coverage.miss("generation_attention", shape)
    if kb.has("context_attention", ctx_key):
        pts = [(b * s * (s + 1) / 2.0, kb.context_attention(dtype=ctx_dtype, kv_dtype=ctx_kv, heads=h, kv_heads=kv,
                                                          head_dim=d, batch=b, seq=s, count=False))
               for b in PREFILL_FIT["batch"] for s in PREFILL_FIT["seq"]]
        prefill = floor_slope_line([(w, t) for w, t in pts if t is not None], PREFILL_FIT["min_work"][0])
        if prefill is not None and prompt_tokens is not None and prompt_tokens >= PREFILL_AT_PROMPT_FROM:
            prefill = _at_prompt(kb, ctx_key, prefill, prompt_tokens)
    else:
        kb.coverage.miss("context_attention", f"{ctx_dtype}/{ctx_kv} heads={h} kv_heads={kv} d={d}")
    return AttentionFit(decode, prefill)


PREFILL_AT_PROMPT_FROM = 1024   # prompts from which the slope is read at the workload's length (measured_attention)


def measured_mla(hw: HardwareProfile, heads: float, kv_precision: str, *,
                 prompt_tokens: float | None = None) -> AttentionFit:
    """An MLA layer's attention lines from the engine's MLA tables (``context_mla``, ``generation_mla``:
    aiconfigurator's collectors time DeepSeek-V3's MLA kernels, the absorbed decode over the cached latent and
    the prompt's attention after the up-projection), as :func:`measured_attention` fits the others: decode per
    cached token read, prefill per query-key pair, the prompt-length slope from 1k tokens up. The projections
    are GEMMs of their own (``linear_layer_ops``). None where the engine has no MLA tables (vLLM's are whole
    modules, projections included, which the layer's GEMMs would count twice): the roofline stays."""
    kb = hw.kernels
    if kb is None:
        return AttentionFit(None, None)
    if heads != int(heads):
        kb.coverage.miss("context_mla", f"fractional MLA heads per GPU: {heads:g}")
        return AttentionFit(None, None)
    h = int(heads)
    kv_dtype = kv_precision if kv_precision in ("bf16", "fp8") else "bf16"
    key = ("bf16", kv_dtype, h)
    decode = prefill = None
    if kb.has("generation_mla", key):
        pts = [(float(b * c), kb.generation_mla(dtype="bf16", kv_dtype=kv_dtype, heads=h, batch=b, kv_len=c,
                                                count=False))
               for b in DECODE_FIT["batch"] for c in DECODE_FIT["kv_len"]]
        decode = floor_slope_line([(w, t) for w, t in pts if t is not None], DECODE_FIT["min_work"][0])
    else:
        kb.coverage.miss("generation_mla", f"bf16/{kv_dtype} MLA heads={h}")
    if kb.has("context_mla", key):
        def ctx(b: float, s: float) -> float | None:
            return kb.context_mla(dtype="bf16", kv_dtype=kv_dtype, heads=h, batch=b, seq=s, count=False)
        pts = [(b * s * (s + 1) / 2.0, ctx(b, s)) for b in PREFILL_FIT["batch"] for s in PREFILL_FIT["seq"]]
        prefill = floor_slope_line([(w, t) for w, t in pts if t is not None], PREFILL_FIT["min_work"][0])
        if prefill is not None and prompt_tokens is not None and prompt_tokens >= PREFILL_AT_PROMPT_FROM:
            prefill = _at_prompt(kb, key, prefill, prompt_tokens, kind="context_mla",
                                 one_prompt=lambda s: ctx(1, s))
    else:
        kb.coverage.miss("context_mla", f"bf16/{kv_dtype} MLA heads={h}")
    return AttentionFit(decode, prefill)


def _windowed_attention(kb: KernelBasis, gen_key: tuple[Any, ...], ctx_key: tuple[Any, ...], window: int,
                        bandwidth_ratio: float) -> AttentionFit:
    """A sliding-window layer's lines from the tables' rows of that window (:func:`measured_attention`): decode
    per windowed key read (a batch of b at context c reads b·min(c, window)), prefill per windowed query-key pair
    (a prompt of s tokens does min(s(s+1)/2, s·window)); slopes from the points with at least the full lines'
    ``min_work`` (a decode of 64k windowed keys; 1k-token prompts)."""
    (gd, gkv, h, kv, d), (cd, ckv) = gen_key, ctx_key[:2]
    pts = [(float(b * min(c, window)), kb.generation_attention(dtype=gd, kv_dtype=gkv, heads=h, kv_heads=kv, head_dim=d,
                                                               batch=b, kv_len=c, window=window, count=False))
           for b in DECODE_FIT["batch"] for c in DECODE_FIT["kv_len"]]
    decode = floor_slope_line([(w, t) for w, t in pts if t is not None], DECODE_FIT["min_work"][0] * window / 1024)
    if decode is not None and bandwidth_ratio > 1:
        decode = (decode[0], decode[1] * bandwidth_ratio)
    pts = [(b * min(s * (s + 1) / 2.0, s * window), kb.context_attention(dtype=cd, kv_dtype=ckv, heads=h, kv_heads=kv,
                                                                       head_dim=d, batch=b, seq=s, window=window,
                                                                       count=False))
           for b in PREFILL_FIT["batch"] for s in PREFILL_FIT["seq"]]
    prefill = floor_slope_line([(w, t) for w, t in pts if t is not None], 1024 * min(window, 1024))
    return AttentionFit(decode, prefill)


def _at_prompt(kb: KernelBasis, key: tuple[Any, ...], line: tuple[float, float], prompt_tokens: float, *,
               kind: str = "context_attention",
               one_prompt: Callable[[float], float | None] | None = None) -> tuple[float, float]:
    """``line``'s floor with the slope of one prompt of ``prompt_tokens`` (capped at the table's longest) in the
    ``kind`` table at ``key``; ``one_prompt(s)``: that table's time of one prompt of ``s`` tokens (default: the
    context-attention table's, ``key`` its shape)."""
    axes = kb.sizes(kind, key)
    if axes is None or len(axes) < 2 or not len(axes[1]):
        return line
    s = min(float(prompt_tokens), float(axes[1][-1]))
    t = (one_prompt(s) if one_prompt is not None else
         kb.context_attention(dtype=key[0], kv_dtype=key[1], heads=key[2], kv_heads=key[3], head_dim=key[4],
                              batch=1, seq=s, count=False))
    if t is None or t <= line[0]:
        return line
    return line[0], (t - line[0]) / (s * (s + 1) / 2.0)


def _proxy_attention(kb: KernelBasis, heads: int, kv_heads: int, head_dim: int, kv_dtype: str,
                     bandwidth_ratio: float, *, fp8_context: bool = False) -> AttentionFit:
    """A shape the tables lack, from a measured one of the same head size: prefill from the shape with the
    same query heads per KV head and the nearest head count, its per-pair slope scaled by
    ``heads / heads'`` (FlashAttention's work is per query head); decode from the one with the nearest KV
    head count, its per-token slope scaled by ``kv_heads / kv_heads'`` (a decode query reads each cached
    token's K and V once per KV head, GQA's query heads share them). GPT-OSS's 64/8 and Llama 4's 40/8
    heads are not in the engines' tables; the MHA and GQA shapes around them are."""
    out: list[tuple[float, float] | None] = []
    for kind, fit in (("generation_attention", DECODE_FIT),
                      ("context_attention", PREFILL_FIT)):
        dtype, kv = ("fp8", "fp8") if fp8_context and kind == "context_attention" else ("bf16", kv_dtype)
        cands = [k for k in kb.keys(kind) if k[0] == dtype and k[1] == kv and int(k[4]) == head_dim
                 and int(k[5]) == 0]
        if not cands:
            kb.coverage.miss(kind, f"{dtype}/{kv} heads={heads} kv_heads={kv_heads} d={head_dim}")
            out.append(None)
            continue
        if kind == "generation_attention":
            key = min(cands, key=lambda k: (abs(math.log(int(k[3]) / kv_heads)),
                                            abs(math.log(int(k[2]) / int(k[3]) / (heads / kv_heads)))))
            scale = kv_heads / int(key[3]) * (bandwidth_ratio if bandwidth_ratio > 1 else 1.0)
        else:
            key = min(cands, key=lambda k: (abs(math.log(int(k[2]) / int(k[3]) / (heads / kv_heads))),
                                            abs(math.log(int(k[2]) / heads))))
            scale = heads / int(key[2])
        h_c, kv_c = int(key[2]), int(key[3])
        if kind == "generation_attention":
            pts = [(float(b * c), kb.generation_attention(dtype="bf16", kv_dtype=kv_dtype, heads=h_c, kv_heads=kv_c,
                                                          head_dim=head_dim, batch=b, kv_len=c, count=False))
                   for b in fit["batch"] for c in fit["kv_len"]]
        else:
            pts = [(b * s_ * (s_ + 1) / 2.0, kb.context_attention(dtype=dtype, kv_dtype=kv, heads=h_c,
                                                                 kv_heads=kv_c, head_dim=head_dim, batch=b, seq=s_,
                                                                 count=False))
                   for b in fit["batch"] for s_ in fit["seq"]]
        line = floor_slope_line([(w, t) for w, t in pts if t is not None], fit["min_work"][0])
        out.append(None if line is None else (line[0], line[1] * scale))
    return AttentionFit(out[0], out[1])


def floor_slope_line(points: list[tuple[float, float]], min_work: float) -> tuple[float, float] | None:
    """``t = a + b·w``: ``a`` the smallest measured time (the kernel's launch floor), ``b`` the median
    of ``(t − a)/w`` over the points with at least ``min_work`` (where bandwidth or FLOPs, not the
    launch, set the time). None with fewer than 3 such points. On the H100 vLLM 0.24 decode table
    for Llama-3.1-8B's shape this is within 7% of the table's bandwidth-bound points on average,
    against 9% for a least-squares line (bench/validate_kernels.py prints the fit per GPU)."""
    if not points:
        return None
    a = min(t for _, t in points)
    slopes = sorted((t - a) / w for w, t in points if w >= min_work)
    if len(slopes) < 3:
        return None
    mid = len(slopes) // 2
    b = slopes[mid] if len(slopes) % 2 else (slopes[mid - 1] + slopes[mid]) / 2
    return a, max(b, 0.0)


def layer_precisions(model: ModelSpec, hw: HardwareProfile, precision: str) -> tuple[str, str]:
    """(non-expert GEMMs, routed experts' math) formats of ``model`` served at ``precision``.

    Usually both are ``precision``. A checkpoint that quantizes only its routed experts (GPT-OSS's MXFP4:
    ``quantization_config.modules_to_not_convert`` keeps ``self_attn``, the router, embeddings and
    ``lm_head`` in bf16; ``ModelSpec.experts_only_quant``) runs every other GEMM in bf16. Its MXFP4 experts
    at a 4-bit precision run, on a GPU with FP4 tensor cores (Blackwell), as W4A8_MXFP4_MXFP8: activations
    quantized to MXFP8, so the grouped GEMMs run at FP8's rate with 4-bit weights (TensorRT-LLM
    tensorrt_llm/_torch/model_config.py ``get_mxfp4_quant_algo``: SM >= 100 and a CUTLASS/TRTLLM MoE backend
    -> W4A8_MXFP4_MXFP8, else W4A16_MXFP4 with bf16 math, which capsim's ``w4a16`` already is)."""
    if model.experts_only_quant is None:
        return precision, precision
    expert = precision
    if precision == "nvfp4" and hw.supports("fp8"):
        expert = "fp8"
    return "bf16", expert


def attention_math_precision(hw: HardwareProfile, precision: str) -> str:
    """The format the attention kernels compute in, for the roofline where no table covers a shape.

    Quantized checkpoints quantize the linear layers' weights, not attention: no FMHA kernel runs on FP4
    tensor cores (TensorRT-LLM's context FMHA is FP16/BF16, or FP8 with an FP8 KV cache:
    ``use_fp8_context_fmha``, tensorrt_llm/bench/build/build.py; vLLM's and SGLang's FlashAttention/FlashInfer
    compute in BF16), and the measured attention tables the model reads are the bf16-compute ones. So a
    quantized format's attention runs at bf16's rate; a 16- or 32-bit model's at its own (a GPU without a
    bf16 peak, e.g. a calibrated CPU profile, keeps the model's)."""
    fmt = get_format(precision)
    if fmt.weight_bytes == fmt.unquantized_weight_bytes or "bf16" not in hw.peak_tflops:
        return precision
    return "bf16"


# output projections whose GEMM input TensorRT-LLM's attention quantizes (costmodel.fusion): FP8 per tensor,
# block-scaled FP8 and NVFP4
FP8_OUTPUT = frozenset({"fp8", "fp8-block", "nvfp4"})


@dataclass
class InferenceModel:
    """One replica (``tp × pp`` GPUs) of ``model`` on ``hw``: iteration times and memory."""

    model: ModelSpec
    hw: HardwareProfile
    tp: int = 1
    pp: int = 1
    precision: str = "bf16"
    kv_precision: str = "bf16"
    fusion: Fusion = UNFUSED             # the engine's fused kernels (costmodel.fusion)
    fp8_static: bool = False             # FP8 GEMMs with calibrated input scales (ops.gemm static_scales)
    ep: int = 1                          # expert-parallel ranks of the routed experts (costmodel.moe)
    attention_dp: int = 1                # attention data-parallel groups of tp GPUs each (costmodel.moe)
    expert_skew: float = 1.0             # busiest EP rank's routed tokens over the mean (costmodel.moe)
    # the workload's mean context of a decoding sequence (prompt + half its output; None: unknown). A windowed
    # layer whose window exceeds it reads every cached token (min(c, window) = c), so it is charged per cached
    # token like a full layer, not a whole window per sequence: Llama 4's 8192-token chunks at 1k-token
    # contexts (charging 8192 per sequence there was 5x the reads). Either charge stays linear in the batch.
    decode_context_tokens: float | None = None
    # the first and last decode context of the workload's mean request (prompt, prompt + output; None: unknown):
    # a chunked layer (Llama 4) reads c mod chunk keys at context c, charged per sequence as its mean over that
    # span (attention_variants.chunk_mean_keys)
    decode_span: tuple[float, float] | None = None
    # the workload's mean prompt length (None: unknown): the prefill attention's rate is read there
    # (measured_attention ``prompt_tokens``)
    prompt_tokens: float | None = None
    # the engine's host time per sampled request per iteration (s), serialised with the GPU: each attention DP
    # rank walks its own requests (engines.presets host_us_per_request)
    host_per_request: float = 0.0
    _linear: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)
    _head: dict[int, float] = field(default_factory=dict, repr=False)
    _decode: dict[int, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        m, hw, t = self.model, self.hw, self.tp
        self.layers = m.layers
        self.groups = m.layer_groups()       # (LayerSpec, count) per kind of layer
        self.dense_precision, self.expert_precision = layer_precisions(m, hw, self.precision)
        self.expert_kernel_dtype = table_dtype(m.experts_only_quant, self.expert_precision)
        self.kernel_latency = hw.efficiency.kernel_latency_us * 1e-6
        per_byte = memory_bound_time(hw, GIB) / GIB
        # attention's own math format (:func:`attention_math_precision`), never the GEMMs' 4-bit one
        a_prec = attention_math_precision(hw, self.precision)
        rate = hw.peak_flops(a_prec) * hw.gemm_max(a_prec) * hw.efficiency.attention_fwd
        # an engine whose attention writes the FP8/FP4 output projection's input runs the prompt's attention
        # as FP8 context FMHA (costmodel.fusion), at the measured fp8 tables' rate; where no table covers
        # a layer (MLA, a GPU without tables) the bf16 roofline stays: FP8 FMHA measures 1.15-1.4x BF16's
        # speed, not the 2x of the peaks
        self.fp8_context_attention = (self.fusion.fp8_context_attention and self.dense_precision in FP8_OUTPUT
                                      and hw.supports("fp8"))
        kv_layer: list[float] = []
        d = self.attention_dp
        # windowed layers (costmodel.attention_variants) in a model that also has full-attention layers
        hybrid = any(s.attention.window is None for s, _ in self.groups)
        self.decode_window_per_seq = 0.0                       # s per decoding sequence (windowed layers)
        self.prefill_windows: list[tuple[float, float]] = []   # (s per query-key pair, keys per query) per kind
        self.kv_window_bytes_per_seq = 0.0                     # windowed layers' cache of one long sequence
        self.kv_windows: list[tuple[float, int]] = []          # (bytes per token of the kind's layers, window)
        self.kv_token_layers = 0                               # layers whose cache grows with every token
        kv_full: list[float] = []
        self.decode_coef = self.prefill_coef = 0.0
        # fixed time of the attention kernels of one iteration (all layers): launch and ramp-up
        self.prefill_fixed = self.decode_fixed = 0.0
        self.attention_measured = {"prefill": 0, "decode": 0}     # layers whose attention is from a table
        for spec, n in self.groups:
            att = spec.attention
            # KV heads are split over TP ranks; with fewer KV heads than ranks each rank keeps one copy
            # (MLA's latent is not split: every rank keeps it)
            kv_heads_local = max(att.kv_heads / t, 1.0)
            kv_layer.append(kv_bytes_per_token_layer(att, tp=t, kv_bytes=kv_bytes(self.kv_precision)))
            sliding = att.window if att.window is not None and hybrid and not att.chunked else 0
            fit = (measured_mla(hw, att.heads / t, self.kv_precision, prompt_tokens=self.prompt_tokens)
                   if att.is_mla else
                   measured_attention(hw, att.heads / t, kv_heads_local, att.head_dim, self.kv_precision,
                                      fp8_context=self.fp8_context_attention,
                                      prompt_tokens=self.prompt_tokens if att.window is None else None,
                                      window=sliding))
            # the tables' lines, else the roofline: decode reads each cached token's K and V and does
            # 4·q_dim/t FLOPs on it (the slower bounds); prefill does 4·(heads/t)·head_dim FLOPs per pair.
            # With attention DP each of the d groups reads its own sequences' caches (1/d of them).
            dec = fit.decode or (self.kernel_latency, max(kv_layer[-1] * per_byte,
                                                          decode_flops_per_token(att, tp=t) / rate))
            pre = fit.prefill or (self.kernel_latency, prefill_flops_per_pair(att, tp=t) / rate)
            self.decode_fixed += n * dec[0]
            self.prefill_fixed += n * pre[0]
            if att.window is not None and hybrid:
                if self._reads_every_cached_token(att.window, att.chunked):
                    self.decode_coef += n * dec[1] / d          # min(c, window) = c at this workload's contexts
                else:
                    self.decode_window_per_seq += n * dec[1] * self._decode_keys(att.window, att.chunked) / d
                self.prefill_windows.append((n * pre[1] / d,
                                             chunked_prefill_keys(att.window) if att.chunked else att.window))
                self.kv_window_bytes_per_seq += n * kv_layer[-1] * att.window
                self.kv_windows.append((n * kv_layer[-1], att.window))
            else:
                self.decode_coef += n * dec[1] / d
                self.prefill_coef += n * pre[1] / d
                kv_full.append(kv_layer[-1])
                self.kv_token_layers += n
            self.attention_measured["decode"] += n if fit.decode is not None else 0
            self.attention_measured["prefill"] += n if fit.prefill is not None else 0
        self.kv_bytes_per_token_layer = max(kv_full, default=0.0)   # the largest layer's (none in a CNN)

    def _reads_every_cached_token(self, window: int, chunked: bool) -> bool:
        """Whether a windowed layer's decode reads every cached token at this workload's contexts: a chunked one
        while the longest context stays in its first chunk, a sliding one while the mean context is inside it."""
        if chunked and self.decode_span is not None:
            return self.decode_span[1] <= window
        return self.decode_context_tokens is not None and window > self.decode_context_tokens

    def _decode_keys(self, window: int, chunked: bool) -> float:
        """Keys a windowed layer's decode query reads per step, per sequence past the window: the window, or for
        a chunked layer the mean of ``c mod chunk`` over the workload's decode span (half a chunk without one)."""
        if not chunked:
            return float(window)
        if self.decode_span is None:
            return window / 2
        return chunk_mean_keys(*self.decode_span, window)

    # ---- time ------------------------------------------------------------------------------
    def busy_groups(self, sequences: int) -> int:
        """Attention DP groups an iteration of ``sequences`` sequences keeps busy: a sequence lives on one
        group, so with fewer sequences than groups the busiest group holds a whole sequence's tokens."""
        return max(1, min(self.attention_dp, sequences))

    def linear_time(self, tokens: int, groups: int | None = None) -> float:
        """Token-wise kernels of every layer plus the embedding, for ``tokens`` tokens (memoised), spread
        over ``groups`` attention DP groups (default: all of them)."""
        g = self.attention_dp if groups is None else groups
        v = self._linear.get((tokens, g))
        if v is None:
            layers = sum(n * sum(o.time for o in linear_layer_ops(spec, self.hw, tp=self.tp, tokens=tokens,
                                                                  precision=self.precision, fusion=self.fusion,
                                                                  fp8_static=self.fp8_static, ep=self.ep,
                                                                  attention_dp=self.attention_dp, busy_groups=g,
                                                                  expert_skew=self.expert_skew,
                                                                  dense_precision=self.dense_precision,
                                                                  expert_precision=self.expert_precision,
                                                                  expert_kernel_dtype=self.expert_kernel_dtype))
                         for spec, n in self.groups)
            emb = memory_bound_time(self.hw, 2 * tokens / g * self.model.hidden * ACT_BYTES)
            v = layers + emb + self._pp_hops(tokens)
            self._linear[(tokens, g)] = v
        return v

    def _pp_hops(self, tokens: int) -> float:
        if self.pp == 1:
            return 0.0
        return (self.pp - 1) * p2p_time(self.hw, tokens * self.model.hidden * ACT_BYTES, same_node=True)

    def head_time(self, sampled: int) -> float:
        """Final norm, logits over the (vocab-parallel) vocabulary and sampling for ``sampled`` sequences
        (with attention DP, each group samples its own ``sampled/attention_dp``)."""
        v = self._head.get(sampled)
        if v is None:
            m, hw = self.model, self.hw
            sampled_all, sampled = sampled, -(-sampled // self.attention_dp)
            out = m.vocab or max(m.num_classes, 1)
            # quantized checkpoints keep the output layer in 16 bits (ModelOpt's PTQ excludes lm_head)
            fmt = get_format(self.precision)
            head_prec = self.precision if fmt.weight_bytes == fmt.unquantized_weight_bytes else "bf16"
            v = (memory_bound_time(hw, 2 * sampled * m.hidden * ACT_BYTES)
                 + gemm(hw, "logits", sampled, out / self.tp, m.hidden, head_prec,
                        bytes_per_element=fmt.unquantized_weight_bytes).time
                 + memory_bound_time(hw, 2 * sampled * out / self.tp * 4.0))  # fp32 softmax + sample
            self._head[sampled_all] = v
        return v

    # Pipeline parallelism: the engine keeps ``pp`` micro-batches in flight (vLLM's virtual engines),
    # so in one period every stage runs each micro-batch of ``n/pp`` sequences through its layers
    # once: the period is ``pp · stage(n/pp)`` = the full forward of ``n/pp`` tokens, and every
    # sequence gains one token. Weight reads repeat per micro-batch (no latency gain when memory-
    # bound); compute and KV reads split over the stages (throughput gain when compute-bound).
    def _per_stage(self, tokens: int) -> int:
        return -(-tokens // self.pp)

    def host_time(self, requests: int) -> float:
        """The engine's host time for ``requests`` sampled requests in one iteration: the busiest attention DP
        rank's share (a sequence lives on one rank)."""
        if not self.host_per_request or requests <= 0:
            return 0.0
        return self.host_per_request * -(-requests // self.attention_dp)

    def decode_gpu_base(self, n: int) -> float:
        """The GPU's time of a decode-only step of ``n`` sequences, apart from reading their KV caches."""
        v = self._decode.get(n)
        if v is None:
            v = self._decode[n] = (self.linear_time(self._per_stage(n), self.busy_groups(n)) + self.decode_fixed
                                   + self.head_time(n)
                                   + self.decode_window_per_seq * n / self.pp)
        return v

    def decode_base(self, n: int) -> float:
        """Time of a decode-only step of ``n`` sequences, apart from reading their KV caches: the GPU's and
        the engine's host time for the ``n`` sampled requests."""
        return self.decode_gpu_base(n) + self.host_time(n)

    def iteration_time(self, *, tokens: int, sampled: int, prefill_work: float, decode_seqs: int,
                       decode_ctx: int, requests: int | None = None) -> float:
        """One iteration over ``tokens`` tokens: prompt chunks with ``prefill_work`` = Σ q·(c+(q+1)/2)
        query-key pairs and ``decode_seqs`` decode tokens reading ``decode_ctx`` cached tokens; ``sampled``
        rows through the LM head, of ``requests`` sampling requests for the host (default ``sampled``: one
        token each; speculative verification samples k + 1 rows per request)."""
        fixed = (self.prefill_fixed if prefill_work > 0 else 0.0) + (self.decode_fixed if decode_seqs > 0 else 0.0)
        g = self.busy_groups(max(sampled, decode_seqs, 1))
        prefill = (self.prefill_coef * prefill_work + sum(
            c * windowed_prefill_work(prefill_work, tokens - decode_seqs, w) for c, w in self.prefill_windows)
            if prefill_work > 0 else 0.0) * self.attention_dp / g    # the coefficients assume all d groups busy
        return (self.linear_time(self._per_stage(tokens), g) + fixed
                + (prefill + self.decode_coef * decode_ctx + self.decode_window_per_seq * decode_seqs) / self.pp
                + (self.head_time(sampled) if sampled else 0.0)
                + self.host_time(sampled if requests is None else requests))

    @property
    def decode_coef_per_step(self) -> float:
        """Seconds per cached token read in a decode step (the stages split the KV reads)."""
        return self.decode_coef / self.pp

    def forward_time(self, batch: int, seq: int) -> float:
        """One forward of ``batch`` inputs of ``seq`` tokens (encoders, vision; non-causal attention); a
        CNN's ``batch`` images through its convolutions (``seq`` is 1, one image)."""
        m, t = self.model, self.tp
        if m.convnet is not None:
            from .convolution import conv_forward_time

            return conv_forward_time(self.hw, m.conv_ops(), batch, self.precision)
        attn = sum(n * flash_attention(self.hw, "attention", batch=batch, heads=a.heads / t, seq_q=seq, seq_kv=seq,
                                       head_dim=a.head_dim, kv_heads=max(a.kv_heads / t, 1), causal=a.causal,
                                       precision=self.precision).time
                   for a, n in ((spec.attention, n) for spec, n in self.groups))
        head_rows = batch if m.architecture in ("vit", "encoder") else batch * seq
        return self.linear_time(batch * seq) + attn + self.head_time(head_rows)

    # ---- memory ----------------------------------------------------------------------------
    def weight_bytes_per_gpu(self) -> float:
        """Weights on one GPU: the routed experts split over ``ep × moe_tp = tp × attention_dp`` GPUs, the
        rest (attention, dense MLPs, shared experts, embeddings) over the ``tp`` GPUs of an attention group
        (each DP group holds a copy), and both over the ``pp`` stages."""
        m = self.model
        unquantized = m.embedding_params() + m.head_params()      # embeddings and output head stay 16-bit
        routed = sum(s.routed_params() * n for s, n in self.groups)
        routed_b = model_weight_bytes(routed, 0, self.precision) if routed else 0.0
        if m.experts_only_quant is not None:       # everything but the routed experts in bf16 (layer_precisions)
            total = routed_b + 2.0 * (m.total_params() - routed)
        else:
            total = model_weight_bytes(m.total_params(), unquantized, self.precision)
        return ((total - routed_b) / self.tp + routed_b / (self.tp * self.attention_dp)) / self.pp

    def kv_bytes_per_token_per_gpu(self, context_tokens: float | None = None) -> float:
        """Cache bytes of one token on the GPUs holding it: its full-attention (or MLA) layers of one stage,
        plus the windowed layers' share: a sequence of ``context_tokens`` holds ``min(window, context)`` of
        them, ``min(1, window/context)`` per token (None: the full charge, 1)."""
        full = self.kv_bytes_per_token_layer * math.ceil(self.kv_token_layers / self.pp)
        share = (lambda w: 1.0) if not context_tokens else (lambda w: min(1.0, w / context_tokens))
        return full + sum(b * share(w) for b, w in self.kv_windows) / self.pp

    def workspace_bytes(self, max_tokens: int, max_seqs: int) -> float:
        """Peak activations of the largest iteration: a few live [T, hidden] buffers, the MLP's
        up-projection output, and fp32 logits of every sampled sequence."""
        m = self.model
        mlp = max(spec.mlp.up + spec.mlp.ffn_hidden for spec, _ in self.groups)   # the widest layer's MLP
        out = m.vocab or max(m.num_classes, 1)
        return max_tokens * (4 * m.hidden + mlp / self.tp) * ACT_BYTES + max_seqs * out / self.tp * 4.0

    def kv_capacity_tokens(self, *, kv_fraction: float, max_tokens: int, max_seqs: int,
                           context_tokens: float | None = None) -> tuple[int, dict[str, float]]:
        """Tokens of KV cache per replica: ``kv_fraction`` of the memory left after weights, workspace and
        runtime (``context_tokens``: the mean request's prompt + output, which sets the windowed layers'
        share, :meth:`kv_bytes_per_token_per_gpu`). Raises :class:`InfeasibleError` (with the breakdown)
        when nothing is left."""
        cap = self.hw.memory_bytes
        w = self.weight_bytes_per_gpu()
        d = self.attention_dp     # the replica's limits cover its d groups; a GPU holds one group's activations
        ws = self.workspace_bytes(-(-max_tokens // d), -(-max_seqs // d))
        reserve = RUNTIME_RESERVE_GIB * GIB
        free = cap - w - ws - reserve
        kv = kv_fraction * free
        per_token = self.kv_bytes_per_token_per_gpu(context_tokens)
        # every attention DP group keeps its own sequences' cache: the replica holds d pools
        tokens = int(kv // per_token) * self.attention_dp if per_token > 0 and kv > 0 else 0
        mem = {"capacity_gib": cap / GIB, "weights_gib": w / GIB, "workspace_gib": ws / GIB,
               "runtime_gib": reserve / GIB, "kv_cache_gib": max(kv, 0.0) / GIB}
        if free <= 0 or tokens < 1:
            raise InfeasibleError(
                f"{self.model.name} does not fit on {self.hw.name} with tp={self.tp} pp={self.pp} at {self.precision}: "
                f"weights {w / GIB:.1f} GiB + workspace {ws / GIB:.1f} GiB + runtime {reserve / GIB:.1f} GiB per GPU "
                f"vs {cap / GIB:.0f} GiB, leaving no room for a KV cache. Raise replica.tp or replica.pp, use a "
                f"lower precision, or lower replica.max_batched_tokens.")
        return tokens, mem
