"""Decompose a transformer layer into kernels for a parallel layout.

Each layer's forward is the Megatron sequence: norm → QKV GEMM → attention core → output GEMM →
TP all-reduce (reduce-scatter with sequence parallelism) → bias-dropout-add → norm → MLP GEMMs →
TP all-reduce → bias-dropout-add. Backward runs a data-gradient and a weight-gradient GEMM per
forward GEMM and each memory-bound kernel's own backward traffic (:func:`_backward_traffic`: what
it reads and writes, not a multiple of its forward). Recompute repeats the
forward (full) or the modules ``recompute_modules`` names (selective; Megatron-Core's default, the attention
core). Activations are 16-bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..hardware import HardwareProfile
from ..layers import LayerSpec
from ..models import ModelSpec, as_layer
from ..precision import get_format
from .collectives import collective_measured, collective_time
from .fusion import UNFUSED, Fusion
from .layout import Layout
from .moe_training import cast_launches, grouped_gemm, routed_mlp_ops
from .ops import HOST_SYNC, Op, decode_attention, flash_attention, gemm, memory_kind, memory_op, overlap_slowdown

ACT_BYTES = 2.0  # 16-bit activations


def low_precision_linears(precision: str) -> bool:
    """Whether ``precision`` is a Transformer Engine recipe (fp8, fp8-block, mxfp8, nvfp4): only the
    transformer layers' linear GEMMs run in it. Attention stays 16-bit (TE's fused attention runs
    FP8 only with NVTE_FP8_DPA, off by default), and so do the output layer and the MoE router
    (Megatron-Core builds the output layer as a plain ColumnParallelLinear outside fp8_autocast)."""
    return get_format(precision).peak in ("fp8", "fp4")


def quantize_ops(hw: HardwareProfile, name: str, elements: float, *, measured: bool, recipe: str,
                 backward: bool) -> list[Op]:
    """Transformer Engine's quantization around one low-precision linear GEMM, per micro-batch.

    Forward, the GEMM input is cast to FP8 with its transpose written beside it (for the weight
    gradient): read 2 bytes, write 1 + 1. Backward, the output gradient likewise. Current scaling
    (``recipe: current``, Megatron-Bridge's FP8-CS) first reads the tensor once more for its amax;
    delayed scaling takes the scale from the amax history and block formats (fp8-block, MXFP8,
    NVFP4) compute their block scales inside the cast, so neither reads it twice. A measured FP8
    GEMM table already holds the dynamic input cast and amax (the engines' path, see
    :func:`~.ops.gemm`), so a measured forward adds the transpose only. FP8 weight casts happen once
    per step (TE caches them over micro-batches) and are left out."""
    amax = 2.0 if recipe == "current" else 0.0
    if backward:
        nbytes = elements * (2 + 1 + 1 + amax)
    elif measured:
        nbytes = elements * 1.0
    else:
        nbytes = elements * (2 + 1 + 1 + amax)
    return [memory_op(hw, name, nbytes)]


def _backward_traffic(name: str, swiglu: bool, dropout: bool) -> float:
    """HBM bytes of a memory-bound kernel's backward per byte of its forward (16-bit elements).

    A norm reads x and writes y (4 B per element); its backward reads dy and x and writes dx (6 B):
    1.5. The bias-dropout-add reads x and the residual and writes y and, with dropout, its 1-byte mask
    (6 or 7 B); its backward reads dy and the mask and writes dx (5 B; the residual's gradient is dy
    itself, no kernel), and without dropout only the bias gradient's reduction reads dy (2 of 6 B).
    The activation reads its input (up wide) and writes ``width``; its backward reads dy (width) and
    the input and writes the input's gradient (up): (width + 2·up) / (up + width), 1.5 for GeLU
    (up = width) and 5/3 for SwiGLU (up = 2·width). RoPE rotates q's and k's gradients as it
    rotated them: 1. The MoE permute's backward is the unpermute of the gradients (the same rows moved
    back): 1; the unpermute's also reads the expert outputs again for the routing weights' gradient
    (Transformer Engine ``moe_unpermute`` backward): about twice, as any other kernel."""
    if name == "bias_dropout_add":
        return 5 / 7 if dropout else 2 / 6
    kind = memory_kind(name)                 # a shared or routed expert's activation is an activation
    if kind == "norm":
        return 1.5
    if kind == "activation":
        return 5 / 3 if swiglu else 1.5
    if kind == "rope" or name == "moe_permute":
        return 1.0
    return 2.0


@dataclass(frozen=True, slots=True)
class PassOps:
    """Kernels of one layer (or of the embedding/head) for one micro-batch. The backward's weight
    gradients are the ops named ``*_wgrad`` (:meth:`weight_grads`); a zero-bubble schedule runs them
    as a pass of their own."""

    fwd: tuple[Op, ...]
    bwd: tuple[Op, ...]
    recompute: tuple[Op, ...] = ()

    def input_grads(self) -> tuple[Op, ...]:
        """The backward without its weight gradients (what the previous stage waits for)."""
        return tuple(o for o in self.bwd if not o.name.endswith("_wgrad"))

    def weight_grads(self) -> tuple[Op, ...]:
        """The weight-gradient GEMMs of the backward."""
        return tuple(o for o in self.bwd if o.name.endswith("_wgrad"))

    @staticmethod
    def total(ops: tuple[Op, ...]) -> float:
        return float(sum(o.time for o in ops))


def _tp_comm(hw: HardwareProfile, lay: Layout, name: str, nbytes: float, kind: str) -> Op:
    return Op(name, "tp_comm", collective_time(hw, kind, nbytes, lay.tp_group),
              measured=collective_measured(hw, kind, nbytes, lay.tp_group))


# Megatron's --tp-comm-overlap (Transformer Engine userbuffers): each sequence-parallel collective is
# split into chunks pipelined with the GEMM it feeds or follows, so it hides under that GEMM.
TP_OVERLAP_GEMM = {"tp_allgather_attn": "qkv", "tp_allreduce_attn": "attn_out",
                   "tp_allgather_mlp": "fc1", "tp_allreduce_mlp": "fc2"}


def _overlap_tp(hw: HardwareProfile, ops: list[Op]) -> list[Op]:
    """The layer's forward with each TP collective overlapped with its GEMM: exposed only where it
    outlasts the GEMM, plus the compute the GEMM loses to the communication kernels while they share
    the SMs (:func:`~.ops.overlap_slowdown`). The backward's copies of the collectives (reduce-scatter
    of the data gradient, the input re-gather) overlap the same way, with GEMMs of the same size."""
    gemms = {o.name: o.time for o in ops if o.kind == "gemm"}
    slowdown = overlap_slowdown(hw)
    out = []
    for o in ops:
        g = gemms.get(TP_OVERLAP_GEMM.get(o.name, ""), 0.0) if o.kind == "tp_comm" else 0.0
        if g:
            o = Op(o.name, o.kind, max(0.0, o.time - g) + min(o.time, g) * slowdown, o.flops, measured=o.measured)
        out.append(o)
    return out


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
    low = low_precision_linears(p)
    pa = "bf16" if low else p                  # attention (and the router) stay 16-bit under TE recipes
    recipe = lay.fp8_recipe if p == "fp8" else "delayed"
    grad_casts: dict[str, float] = {}          # quantize op -> elements of the output gradient it casts
    mem_bytes: dict[str, float] = {}           # forward memory-bound kernel -> the bytes it moves

    def mem(name: str, nbytes: float) -> Op:
        mem_bytes[name] = nbytes
        return memory_op(hw, name, nbytes)

    def linear(name: str, m: float, n: float, k: float, groups: float = 1) -> list[Op]:
        """A linear layer's GEMM (``groups`` of them for an MoE layer's grouped experts), with Transformer
        Engine's quantization when it runs low precision."""
        g = grouped_gemm(hw, name, m, n, k, p, groups, static_scales=low and recipe == "delayed")
        if not low:
            return [g]
        q = [replace(o, launches=cast_launches(g.launches, groups, recipe)) for o in
             quantize_ops(hw, name + "_quantize", m * k * groups, measured=g.measured, recipe=recipe, backward=False)]
        grad_casts[q[0].name] = m * n * groups
        return [*q, g]

    def norm(name: str) -> Op:
        return mem(name, 2 * T_norm * h * ACT_BYTES)

    def tp_in(name: str) -> list[Op]:
        return [_tp_comm(hw, lay, name, act, "all_gather")] if sp else []

    def tp_out(name: str) -> list[Op]:
        if t == 1:
            return []
        return [_tp_comm(hw, lay, name, act, "reduce_scatter" if sp else "all_reduce")]

    # attention core -----------------------------------------------------------------------
    if lay.flash_attention:
        core_f = [flash_attention(hw, "attention", batch=b, heads=heads, seq_q=s_local, seq_kv=seq,
                                  head_dim=hd, kv_heads=kvh, causal=att.causal, precision=pa, window=att.window,
                                  kernel=lay.attention_kernel, cp=lay.cp)]
        core_b = [flash_attention(hw, "attention_bwd", batch=b, heads=heads, seq_q=s_local, seq_kv=seq,
                                  head_dim=hd, kv_heads=kvh, causal=att.causal, precision=pa,
                                  backward=True, window=att.window, kernel=lay.attention_kernel, cp=lay.cp)]
    else:
        scores = b * heads * s_local * seq
        drop_f = [memory_op(hw, "attn_dropout", scores * (2 * ACT_BYTES + 1))] if lay.dropout else []
        drop_b = [memory_op(hw, "attn_dropout_bwd", scores * (2 * ACT_BYTES + 1))] if lay.dropout else []
        core_f = [
            gemm(hw, "attn_scores", s_local, seq, hd, pa, batch=b * heads),
            memory_op(hw, "softmax", 2 * scores * ACT_BYTES),
            *drop_f,
            gemm(hw, "attn_context", s_local, hd, seq, pa, batch=b * heads),
        ]
        core_b = [
            # the score-matrix products' two input gradients (activations, not weights: no _wgrad)
            gemm(hw, "attn_context_dgrad", s_local, seq, hd, pa, batch=b * heads),
            gemm(hw, "attn_context_dgrad_v", seq, hd, s_local, pa, batch=b * heads),
            *drop_b,
            memory_op(hw, "softmax_bwd", 3 * scores * ACT_BYTES),
            gemm(hw, "attn_scores_dgrad", s_local, hd, seq, pa, batch=b * heads),
            gemm(hw, "attn_scores_dgrad_k", seq, hd, s_local, pa, batch=b * heads),
        ]
    cp_ops: list[Op] = []
    if lay.cp > 1:
        kv_bytes = b * seq * 2 * att.kv_dim / t * ACT_BYTES
        cp_ops = [Op("cp_kv_exchange", "cp_comm", collective_time(hw, "all_gather", kv_bytes, lay.cp_group))]

    # MLP (dense or MoE) -------------------------------------------------------------------
    def dense(prefix: str, width: float, tokens: float) -> list[Op]:
        up = width * (2 if mlp.activation == "swiglu" else 1)
        return [*linear(prefix + "fc1", tokens, up / t, h),
                mem(prefix + "activation", tokens * (up + width) / t * ACT_BYTES),
                *linear(prefix + "fc2", tokens, h, width / t)]

    def mlp_fwd() -> list[Op]:
        if not mlp.is_moe:
            return dense("", mlp.ffn_hidden, T)
        tokens = T * lay.expert_tp / t                   # etp < tp: the sequence-parallel shard goes to the experts
        ops = routed_mlp_ops(spec, hw, lay, tokens, pa, linear, mem)
        if mlp.shared_experts:
            ops += dense("shared_", mlp.shared_experts * mlp.shared_hidden, T)
        return ops

    def mlp_tp(ops: list[Op]) -> list[Op]:
        """The MLP's tensor-parallel collectives, which an MoE layer whose experts run below tp (MoE
        parallel folding) and that has no shared expert skips: its tokens stay in their shards."""
        folded = mlp.is_moe and lay.expert_tp < t and not mlp.shared_experts
        return [] if folded else ops

    qkv_n = (att.q_dim + 2 * att.kv_dim) / t
    rope = [mem("rope", 2 * T * (att.q_dim + att.kv_dim) / t * ACT_BYTES)] if att.rope else []
    bda = T_norm * h * (3 * ACT_BYTES + (1 if lay.dropout else 0))   # bias (+ dropout mask) + residual
    attn_part = [norm("norm1"), *tp_in("tp_allgather_attn"), *linear("qkv", T, qkv_n, h), *rope,
                 *cp_ops, *core_f, *linear("attn_out", T, h, att.q_dim / t),
                 *tp_out("tp_allreduce_attn"), mem("bias_dropout_add", bda)]
    mlp_part = [norm("norm2"), *mlp_tp(tp_in("tp_allgather_mlp")), *mlp_fwd(), *mlp_tp(tp_out("tp_allreduce_mlp")),
                mem("bias_dropout_add", bda)]
    fwd = attn_part + mlp_part
    scopes = ["attn"] * len(attn_part) + [_mlp_scope(o.name, mlp.is_moe) for o in mlp_part]
    if lay.tp_comm_overlap and sp:
        fwd = _overlap_tp(hw, fwd)

    core_names = {o.name for o in core_f}
    bwd: list[Op] = []
    bwd_scopes: list[str] = []
    for op, scope in zip(reversed(fwd), reversed(scopes), strict=True):
        grads: list[Op] = []
        if op.name in core_names:
            if op is core_f[-1]:
                grads = core_b  # the attention core's own backward, once
        elif op.name in grad_casts:      # the output gradient's cast before the GEMM's dgrad and wgrad
            grads = [replace(o, launches=op.launches) for o in     # the forward cast's launches
                     quantize_ops(hw, op.name + "_bwd", grad_casts[op.name], measured=False, recipe=recipe, backward=True)]
        elif op.kind == HOST_SYNC:       # the backward's all-to-all splits are known: no sync
            pass
        elif op.kind == "gemm":
            # dgrad and wgrad: each costs the forward's FLOPs
            grads = [Op(op.name + "_dgrad", "gemm", op.time, op.flops, launches=op.launches),
                     Op(op.name + "_wgrad", "gemm", op.time, op.flops, launches=op.launches)]
        elif op.kind == "memory" and op.name in mem_bytes:
            ratio = _backward_traffic(op.name, mlp.activation == "swiglu", lay.dropout)
            grads = [memory_op(hw, op.name + "_bwd", mem_bytes[op.name] * ratio)]
        elif op.kind == "memory":
            grads = [Op(op.name + "_bwd", "memory", 2 * op.time)]
        elif op.kind == "cp_comm":
            # the ring's backward passes the KV blocks round again and, the other way, their gradients'
            # partial sums (Transformer Engine AttnFuncWithCPAndKVP2P.backward sends kv and dkv each step)
            grads = [Op(op.name + "_bwd", op.kind, 2 * op.time)]
        else:
            grads = [Op(op.name + "_bwd", op.kind, op.time)]
            if sp and op.name.startswith("tp_allgather"):
                # sequence parallelism keeps only the 1/t shard of a column-parallel layer's input,
                # so its backward all-gathers the input again for the weight gradient
                grads.append(Op(op.name + "_regather", op.kind, op.time))
        bwd += grads
        bwd_scopes += [scope] * len(grads)

    if lay.cuda_graph_scope:
        fwd = graphed(fwd, scopes, lay.cuda_graph_scope)
        bwd = graphed(bwd, bwd_scopes, lay.cuda_graph_scope)
    if lay.recompute == "full":
        rec = tuple(fwd)
    elif lay.recompute == "selective":
        rec = tuple(o for o, scope in zip(fwd, scopes, strict=True)
                    if _modules(o, scope, core_names) & lay.recompute_modules)
    else:
        rec = ()
    return PassOps(tuple(fwd), tuple(bwd), rec)


def _modules(op: Op, scope: str, core: set[str]) -> set[str]:
    """The Megatron-Core recompute modules (--recompute-modules) a forward kernel of CUDA-graph ``scope``
    (:func:`_mlp_scope`) belongs to: core_attn the attention core (a checkpointed TE DotProductAttention
    reruns the flash kernel too), layernorm the two norms, mlp a dense layer's MLP, moe an MoE layer's MLP
    half after its norm (router, dispatcher with its host sync, all-to-alls, experts, shared experts),
    moe_act the experts' activation, shared_experts the shared experts. The residual adds are in none."""
    name = op.name
    if name in core:
        return {"core_attn"}
    if name in ("norm1", "norm2"):
        return {"layernorm"}
    if scope == "attn" or name == "bias_dropout_add":
        return set()
    if scope == "mlp":
        return {"mlp"}
    if name.startswith("shared_"):
        return {"moe", "shared_experts"}
    return {"moe", "moe_act"} if name == "expert_activation" else {"moe"}


def _mlp_scope(name: str, moe: bool) -> str:
    """The CUDA-graph scope (Megatron-Core CudaGraphScope) of one kernel of a layer's MLP half: a dense
    layer's is ``mlp``; an MoE layer's pre-MLP norm and router are ``moe_router``, the dispatcher's
    permute ``moe_preprocess`` (MoELayer.route and .preprocess, the parts a partial graph captures), the
    rest ``moe``."""
    if not moe:
        return "mlp"
    if name in ("norm2", "router"):
        return "moe_router"
    return "moe_preprocess" if name == "moe_permute" else "moe"


def graphed(ops: list[Op], scopes: list[str], captured: frozenset[str]) -> list[Op]:
    """``ops`` with the kernels of the ``captured`` scopes replayed from CUDA graphs: each run of
    captured kernels costs the host one launch (the graph's), the rest none. ``full`` captures every
    scope, ``moe`` the MoE layer's router and preprocess too. A host sync is never captured."""
    if "full" in captured:
        captured = frozenset({"attn", "mlp", "moe", "moe_router", "moe_preprocess"})
    elif "moe" in captured:
        captured = captured | {"moe_router", "moe_preprocess"}
    out, inside = [], False
    for op, scope in zip(ops, scopes, strict=True):
        take = scope in captured and op.kind != HOST_SYNC
        out.append(replace(op, launches=0.0 if inside else 1.0) if take else op)
        inside = take
    return out


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
    if low_precision_linears(p):
        p = "bf16"                 # the output layer stays 16-bit under Transformer Engine recipes
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
           memory_op(hw, "final_norm_bwd", 2 * T * h * ACT_BYTES * _backward_traffic("final_norm", False, False)))
    # no recompute: Megatron's (and Megatron-DeepSpeed's, FSDP's) activation checkpointing wraps the
    # transformer layers only (megatron/core/transformer/transformer_block.py _checkpointed_forward);
    # the output layer and loss keep their activations
    return PassOps(fwd, bwd)


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
