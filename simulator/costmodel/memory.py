"""Per-GPU memory: model states per ZeRO stage, activations per recompute mode, KV cache.

Model states (Rajbhandari et al., ZeRO, 2020) with mixed-precision Adam: 16-bit weights (2 B),
gradients (2 B, or 4 B when kept in fp32 as Megatron does) and 12 B of fp32 master weights and
moments. ZeRO-1 shards the 12 B over the N data-parallel ranks, ZeRO-2 also the gradients, ZeRO-3
everything: Ψ = 7.5B, N = 64 → 120 / 31.4 / 16.6 / 1.9 GB. Megatron's distributed optimizer is
ZeRO-1 with fp32 gradients: 6 + 12/N bytes per parameter. The weight and optimizer bytes of other
formats (fp32 weights without a master copy; the cached quantized weights of the FP8 and FP4
recipes) are ``simulator.precision.training_state_bytes``.

Activations per layer (Korthikanti et al. 2022, 16-bit): ``s·b·h·(10 + 24/t + 5·a·s/(h·t))`` with
tensor parallelism, ``s·b·h/t·(34 + 5·a·s/h)`` with sequence parallelism, ``34·s·b·h/t`` with
selective recompute (sequence parallel), ``2·s·b·h`` (÷t with SP) with full recompute. Flash
attention drops the ``5·a·s/h`` term. How many micro-batches a pipeline stage keeps in flight is its
schedule's answer (``training.schedules``), summed with these by ``training.memory_plan``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..layers import LayerSpec
from ..models import ModelSpec, as_layer
from ..precision import MASTER_AND_MOMENTS_BYTES, get_format
from .layout import Layout

GIB = 2**30
OPTIMIZER_BYTES = MASTER_AND_MOMENTS_BYTES  # fp32 master weights + Adam m and v (16-bit training)


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    """Bytes per GPU on the most loaded pipeline stage."""

    params: float
    grads: float
    optimizer: float
    activations: float
    buffers: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations + self.buffers

    def gib(self) -> dict[str, float]:
        d = {k: v / GIB for k, v in asdict(self).items()}
        d["total"] = self.total / GIB
        return d


def model_state_bytes(params: float, *, zero_stage: int, dp: int, weight_bytes: float = 2.0,
                      grad_bytes: float = 2.0, optimizer_bytes: float = OPTIMIZER_BYTES) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per GPU for ``params`` parameters held by this rank."""
    n = max(dp, 1)
    w, g, o = weight_bytes * params, grad_bytes * params, optimizer_bytes * params
    if zero_stage >= 1:
        o /= n
    if zero_stage >= 2:
        g /= n
    if zero_stage >= 3:
        w /= n
    return w, g, o


def activation_bytes_per_layer(layer: LayerSpec | ModelSpec, lay: Layout, micro_batch: float, seq: int) -> float:
    """Stored activations of one layer for one micro-batch (Korthikanti et al. 2022, eq. 1–6), from
    its :class:`LayerSpec` (or a uniform model's layer). Unfused attention stores the full score
    matrix, sliding window or not (it masks, it does not skip)."""
    spec = as_layer(layer)
    att, mlp = spec.attention, spec.mlp
    s = seq / lay.cp
    b, h, t, a = micro_batch, spec.hidden, lay.tp, att.heads
    sbh = s * b * h
    sp = lay.sequence_parallel and t > 1
    # scores are s_local × seq: softmax output 2 bytes, its dropout mask 1 and output 2 (without dropout: 2)
    attn = 0.0 if lay.flash_attention else (5 if lay.dropout else 2) * a * s * (seq / s) / h
    replicated = 10 if lay.dropout else 8
    if lay.recompute == "full":
        return 2 * sbh / (t if sp else 1)
    # Korthikanti's 34 = 10 replicated (norm inputs 4, QKV input 2, MLP input 2, dropout masks 2)
    # + 24 shardable: Q, K, V and the projection input (8) and the MLP's fc1 and activation outputs
    # (16). From shapes, so GQA and SwiGLU/MoE change the shardable part (top-k routed experts per
    # token, plus the shared experts every token passes through):
    k = mlp.top_k if mlp.is_moe else 1
    low = get_format(lay.precision).peak in ("fp8", "fp4")
    # Transformer Engine saves a low-precision linear layer's input in its 1-byte cast for the weight
    # gradient: the two norm outputs feeding QKV and fc1 (replicated) and the activation output feeding
    # fc2 (shardable). The attention output, which also feeds the projection, stays 16-bit: the fused
    # attention's backward keeps it
    act_out = 1 if low else 2                   # bytes of an activation output kept for fc2's weight gradient
    routed = (2 * mlp.up + act_out * mlp.ffn_hidden) / h * k        # fc1 output and activation output
    shared = 0.0
    if mlp.shared_experts:
        width = mlp.shared_experts * mlp.shared_hidden
        shared = (2 * width * (mlp.up // mlp.ffn_hidden) + act_out * width) / h
    shardable = 4 * (att.q_dim + att.kv_dim) / h + routed + shared
    if low:
        replicated -= 2
    if lay.recompute == "selective":
        # what Megatron-Core's --recompute-modules recompute is not kept: the attention core's scores, the
        # norms' outputs, a dense MLP's or the experts' intermediates, the experts' activation output
        mods = lay.recompute_modules
        if "core_attn" in mods:
            attn = 0.0
        if "layernorm" in mods:
            replicated -= 2 if low else 4
        experts_out = mlp.is_moe and "moe" in mods
        if experts_out or (not mlp.is_moe and "mlp" in mods):
            shardable -= routed + (shared if mlp.is_moe else 0.0)
        elif mlp.is_moe:
            if "moe_act" in mods:
                shardable -= act_out * mlp.ffn_hidden / h * k
            if "shared_experts" in mods:
                shardable -= shared
    if sp:
        return sbh / t * (replicated + shardable + attn)
    return sbh * (replicated + shardable / t + attn / t)
