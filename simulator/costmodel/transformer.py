"""Decompose a transformer layer into kernels for a parallel layout.

Each layer's forward is the Megatron sequence: norm → QKV GEMM → attention core → output GEMM →
TP all-reduce (reduce-scatter with sequence parallelism) → bias-dropout-add → norm → MLP GEMMs →
TP all-reduce → bias-dropout-add. Backward runs a data-gradient and a weight-gradient GEMM per
forward GEMM and twice the memory traffic of each elementwise kernel. Recompute repeats the
forward (full) or the attention core (selective). Activations are 16-bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hardware import HardwareProfile
from ..layers import LayerSpec
from ..models import ModelSpec, as_layer
from .collectives import collective_measured, collective_time
from .fusion import UNFUSED, Fusion
from .layout import Layout
from .ops import Op, decode_attention, flash_attention, gemm, memory_op

ACT_BYTES = 2.0  # 16-bit activations


@dataclass(frozen=True, slots=True)
class PassOps:
    """Kernels of one layer (or of the embedding/head) for one micro-batch."""

    fwd: tuple[Op, ...]
    bwd: tuple[Op, ...]
    recompute: tuple[Op, ...] = ()

    @staticmethod
    def total(ops: tuple[Op, ...]) -> float:
        return float(sum(o.time for o in ops))


def _tp_comm(hw: HardwareProfile, lay: Layout, name: str, nbytes: float, kind: str) -> Op:
    return Op(name, "tp_comm", collective_time(hw, kind, nbytes, lay.tp_group),
              measured=collective_measured(hw, kind, nbytes, lay.tp_group))


def layer_ops(layer: LayerSpec | ModelSpec, hw: HardwareProfile, lay: Layout, micro_batch: float, seq: int) -> PassOps:
    """Forward, backward and recompute kernels of one transformer layer on one GPU.

    Everything about the layer comes from its :class:`LayerSpec`: a sliding-window layer's fused
    attention covers the :func:`~.ops.attention_pairs` of its window (``min(seq, window)`` keys
    per query); unfused attention materialises and masks the full score matrix, as eager
    PyTorch does, so there a window saves nothing. MoE layers route ``top_k`` experts per token
    (all-to-all with expert parallelism) and run their shared experts as one TP-sharded MLP.
    """
    spec = as_layer(layer)
    att, mlp = spec.attention, spec.mlp
    t, p = lay.tp, lay.precision
    b = micro_batch
    s_local = seq / lay.cp                     # tokens of the sequence held by this CP rank
    T = b * s_local                            # tokens per micro-batch on this rank
    h = spec.hidden
    sp = lay.sequence_parallel and t > 1
    T_norm = T / t if sp else T                # norms/dropout see 1/t of the tokens with SP
    heads, kvh = att.heads / t, max(att.kv_heads / t, 1)
    hd = att.head_dim
    act = T * h * ACT_BYTES

    def norm(name: str) -> Op:
        return memory_op(hw, name, 2 * T_norm * h * ACT_BYTES)

    def tp_in(name: str) -> list[Op]:
        return [_tp_comm(hw, lay, name, act, "all_gather")] if sp else []

    def tp_out(name: str) -> list[Op]:
        if t == 1:
            return []
        return [_tp_comm(hw, lay, name, act, "reduce_scatter" if sp else "all_reduce")]

    # attention core -----------------------------------------------------------------------
    if lay.flash_attention:
        core_f = [flash_attention(hw, "attention", batch=b, heads=heads, seq_q=s_local, seq_kv=seq,
                                  head_dim=hd, kv_heads=kvh, causal=att.causal, precision=p, window=att.window,
                                  kernel=lay.attention_kernel)]
        core_b = [flash_attention(hw, "attention_bwd", batch=b, heads=heads, seq_q=s_local, seq_kv=seq,
                                  head_dim=hd, kv_heads=kvh, causal=att.causal, precision=p,
                                  backward=True, window=att.window, kernel=lay.attention_kernel)]
    else:
        scores = b * heads * s_local * seq
        drop_f = [memory_op(hw, "attn_dropout", scores * (2 * ACT_BYTES + 1))] if lay.dropout else []
        drop_b = [memory_op(hw, "attn_dropout_bwd", scores * (2 * ACT_BYTES + 1))] if lay.dropout else []
        core_f = [
            gemm(hw, "attn_scores", s_local, seq, hd, p, batch=b * heads),
            memory_op(hw, "softmax", 2 * scores * ACT_BYTES),
            *drop_f,
            gemm(hw, "attn_context", s_local, hd, seq, p, batch=b * heads),
        ]
        core_b = [
            gemm(hw, "attn_context_dgrad", s_local, seq, hd, p, batch=b * heads),
            gemm(hw, "attn_context_wgrad", seq, hd, s_local, p, batch=b * heads),
            *drop_b,
            memory_op(hw, "softmax_bwd", 3 * scores * ACT_BYTES),
            gemm(hw, "attn_scores_dgrad", s_local, hd, seq, p, batch=b * heads),
            gemm(hw, "attn_scores_wgrad", seq, hd, s_local, p, batch=b * heads),
        ]
    cp_ops: list[Op] = []
    if lay.cp > 1:
        kv_bytes = b * seq * 2 * att.kv_dim / t * ACT_BYTES
        cp_ops = [Op("cp_kv_exchange", "cp_comm", collective_time(hw, "all_gather", kv_bytes, lay.cp_group))]

    # MLP (dense or MoE) -------------------------------------------------------------------
    def dense(prefix: str, width: float, tokens: float) -> list[Op]:
        up = width * (2 if mlp.activation == "swiglu" else 1)
        return [gemm(hw, prefix + "fc1", tokens, up / t, h, p),
                memory_op(hw, prefix + "activation", tokens * (up + width) / t * ACT_BYTES),
                gemm(hw, prefix + "fc2", tokens, h, width / t, p)]

    def mlp_fwd() -> list[Op]:
        if not mlp.is_moe:
            return dense("", mlp.ffn_hidden, T)
        f, up = mlp.ffn_hidden, mlp.up
        k, ne = mlp.top_k, mlp.experts
        routed = T * k                                   # token-expert pairs from this rank
        a2a = routed * h * ACT_BYTES
        ops = [gemm(hw, "router", T, ne, h, p)]
        if lay.ep > 1:
            ops.append(Op("moe_dispatch", "ep_comm", collective_time(hw, "all_to_all", a2a, lay.ep_group)))
        local_experts = max(ne / lay.ep, 1)
        per_expert = routed / local_experts              # balanced routing
        ops += [gemm(hw, "expert_fc1", per_expert, up / t, h, p, batch=local_experts),
                memory_op(hw, "expert_activation", routed * (up + f) / t * ACT_BYTES),
                gemm(hw, "expert_fc2", per_expert, h, f / t, p, batch=local_experts)]
        if lay.ep > 1:
            ops.append(Op("moe_combine", "ep_comm", collective_time(hw, "all_to_all", a2a, lay.ep_group)))
        if mlp.shared_experts:
            ops += dense("shared_", mlp.shared_experts * mlp.shared_hidden, T)
        return ops

    qkv_n = (att.q_dim + 2 * att.kv_dim) / t
    rope = [memory_op(hw, "rope", 2 * T * (att.q_dim + att.kv_dim) / t * ACT_BYTES)] if att.rope else []
    bda = T_norm * h * (3 * ACT_BYTES + (1 if lay.dropout else 0))   # bias (+ dropout mask) + residual
    fwd: list[Op] = [norm("norm1"), *tp_in("tp_allgather_attn"), gemm(hw, "qkv", T, qkv_n, h, p), *rope,
                     *cp_ops, *core_f, gemm(hw, "attn_out", T, h, att.q_dim / t, p),
                     *tp_out("tp_allreduce_attn"), memory_op(hw, "bias_dropout_add", bda),
                     norm("norm2"), *tp_in("tp_allgather_mlp"), *mlp_fwd(), *tp_out("tp_allreduce_mlp"),
                     memory_op(hw, "bias_dropout_add", bda)]

    core_names = {o.name for o in core_f}
    bwd: list[Op] = []
    for op in reversed(fwd):
        if op.name in core_names:
            if op is core_f[-1]:
                bwd += core_b  # the attention core's own backward, once
        elif op.kind == "gemm":
            # dgrad and wgrad: each costs the forward's FLOPs
            bwd += [Op(op.name + "_dgrad", "gemm", op.time, op.flops), Op(op.name + "_wgrad", "gemm", op.time, op.flops)]
        elif op.kind == "memory":
            bwd.append(Op(op.name + "_bwd", "memory", 2 * op.time))
        else:
            bwd.append(Op(op.name + "_bwd", op.kind, op.time))
            if sp and op.name.startswith("tp_allgather"):
                # sequence parallelism keeps only the 1/t shard of a column-parallel layer's input,
                # so its backward all-gathers the input again for the weight gradient
                bwd.append(Op(op.name + "_regather", op.kind, op.time))

    if lay.recompute == "full":
        rec = tuple(fwd)
    elif lay.recompute == "selective" and not lay.flash_attention:
        rec = tuple(core_f)
    else:
        rec = ()
    return PassOps(tuple(fwd), tuple(bwd), rec)


def embedding_ops(model: ModelSpec, hw: HardwareProfile, lay: Layout, micro_batch: int, seq: int) -> PassOps:
    """Token/position embedding lookup on the first pipeline stage."""
    T = micro_batch * seq / lay.cp
    act = T * model.hidden * ACT_BYTES
    fwd = (memory_op(hw, "embedding", 2 * act),)
    bwd = (memory_op(hw, "embedding_bwd", 3 * act),)
    return PassOps(fwd, bwd)


def head_ops(model: ModelSpec, hw: HardwareProfile, lay: Layout, micro_batch: int, seq: int) -> PassOps:
    """Final norm, output projection over the (vocab-parallel) vocabulary and the loss."""
    t, p = lay.tp, lay.precision
    T = micro_batch * seq / lay.cp
    h = model.hidden
    if model.architecture == "vit":
        T = micro_batch  # the classifier sees the CLS token only
    out = model.vocab if model.vocab else max(model.num_classes, 1)
    logits = T * out / t
    # unfused: the logits cast to fp32, softmax and loss over them (Megatron's vocab-parallel cross
    # entropy, PyTorch under autocast); fused: one kernel reads the 16-bit logits and writes their
    # gradient (flash-attn's xentropy, Megatron's --cross-entropy-loss-fusion)
    ce_f, ce_b = (logits * ACT_BYTES, 2 * logits * ACT_BYTES) if lay.fused_cross_entropy else (logits * 8, logits * 8)
    fwd = (memory_op(hw, "final_norm", 2 * T * h * ACT_BYTES),
           gemm(hw, "logits", T, out / t, h, p),
           memory_op(hw, "cross_entropy", ce_f))
    bwd = (memory_op(hw, "cross_entropy_bwd", ce_b),
           Op("logits_dgrad", "gemm", fwd[1].time, fwd[1].flops),
           Op("logits_wgrad", "gemm", fwd[1].time, fwd[1].flops),
           memory_op(hw, "final_norm_bwd", 4 * T * h * ACT_BYTES))
    return PassOps(fwd, bwd, fwd if lay.recompute == "full" else ())


def grouped_layer_ops(model: ModelSpec, hw: HardwareProfile, lay: Layout, micro_batch: float, seq: int,
                      start: int = 0, stop: int | None = None,
                      memo: dict[LayerSpec, PassOps] | None = None) -> list[tuple[LayerSpec, PassOps, int]]:
    """Kernels of layers ``start:stop`` (a virtual pipeline stage): ``(spec, ops, count)`` per kind
    of layer, so a stage costs O(kinds), not O(layers). ``memo`` shares each kind's kernels
    between the stages of one step."""
    memo = {} if memo is None else memo
    out = []
    for spec, n in model.layer_groups(start, stop):
        ops = memo.get(spec)
        if ops is None:
            ops = memo[spec] = layer_ops(spec, hw, lay, micro_batch, seq)
        out.append((spec, ops, n))
    return out


# ---- inference (for ``capsim cost``; the serving simulator uses costmodel.inference) ----------
# Attention is charged as the serving simulator charges it (full causal, also for sliding-window
# layers; see costmodel.inference), so the table shows what the simulation spends.
def prefill_ops(layer: LayerSpec | ModelSpec, hw: HardwareProfile, *, tp: int, batch: float, seq: int,
                precision: str, fusion: Fusion = UNFUSED, fp8_static: bool = False) -> tuple[Op, ...]:
    """One layer's inference forward over ``batch`` prompts of ``seq`` tokens (no dropout)."""
    from .inference import linear_layer_ops, measured_attention

    spec = as_layer(layer)
    att = spec.attention
    ops = linear_layer_ops(spec, hw, tp=tp, tokens=batch * seq, precision=precision, fusion=fusion,
                           fp8_static=fp8_static)
    fit = measured_attention(hw, att.heads / tp, max(att.kv_heads / tp, 1), att.head_dim, "bf16").prefill
    flops = 4.0 * batch * att.heads / tp * seq * (seq + 1) / 2 * att.head_dim
    if fit is not None and att.causal:     # the serving simulator's line through the measured table
        attn = Op("attention", "attention", fit[0] + fit[1] * batch * seq * (seq + 1) / 2, flops, measured=True)
    else:
        attn = flash_attention(hw, "attention", batch=batch, heads=att.heads / tp, seq_q=seq, seq_kv=seq,
                               head_dim=att.head_dim, kv_heads=max(att.kv_heads / tp, 1), causal=att.causal,
                               precision=precision)
    at = next(i for i, o in enumerate(ops) if o.name == "attn_out")
    return (*ops[:at], attn, *ops[at:])


def decode_step_ops(layer: LayerSpec | ModelSpec, hw: HardwareProfile, *, tp: int, batch: int, kv_tokens: float,
                    precision: str, kv_bytes_per_element: float = 2.0, fusion: Fusion = UNFUSED,
                    fp8_static: bool = False) -> tuple[Op, ...]:
    """One layer of one decode step: ``batch`` sequences each adding one token, reading
    ``kv_tokens`` cached tokens in total. Weight GEMMs are skinny (m = batch): memory-bound."""
    from .inference import linear_layer_ops, measured_attention

    spec = as_layer(layer)
    att = spec.attention
    ops = linear_layer_ops(spec, hw, tp=tp, tokens=batch, precision=precision, fusion=fusion, fp8_static=fp8_static)
    kv_read = kv_tokens * 2 * max(att.kv_heads / tp, 1) * att.head_dim * kv_bytes_per_element
    flops = 4.0 * kv_tokens * att.q_dim / tp
    fit = measured_attention(hw, att.heads / tp, max(att.kv_heads / tp, 1), att.head_dim,
                             "fp8" if kv_bytes_per_element == 1 else "bf16").decode
    if fit is not None:                    # the serving simulator's line through the measured table
        attn = Op("attention", "attention", fit[0] + fit[1] * kv_tokens, flops, measured=True)
    else:
        attn = decode_attention(hw, "attention", kv_bytes=kv_read, flops=flops, precision=precision)
    at = next(i for i, o in enumerate(ops) if o.name == "attn_out")
    return (*ops[:at], attn, *ops[at:])
