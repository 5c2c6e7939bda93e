"""An MoE layer's routed experts in serving under expert parallelism (EP) and attention data
parallelism (DP), TensorRT-LLM's "DEP" / "TEP" layouts and SGLang's ``--enable-dp-attention``.

A replica's ``G = tp × attention_dp`` GPUs (per pipeline stage) run attention as ``attention_dp``
groups of ``tp`` GPUs, each over its own ``1/attention_dp`` of the batch, and the routed experts as
``ep`` groups of experts, each split ``moe_tp = G / ep`` ways along the expert width. So one
iteration of ``T`` tokens:

- ``attention_dp == 1`` (TP or TEP): after attention's all-reduce every GPU holds all ``T`` tokens;
  each runs its ``experts/ep`` experts (each ``1/moe_tp`` wide) on the tokens routed to them, and one
  all-reduce over the ``G`` GPUs sums the partial outputs (the layer's MLP all-reduce, as at ``ep=1``).
- ``attention_dp > 1`` (DEP): each DP rank holds ``T/attention_dp`` tokens; the *dispatch* all-to-all
  sends each token's hidden state to the ranks of its ``top_k`` experts and the *combine* all-to-all
  brings the results back: per rank ``tokens × hidden × bytes × top_k × (ep − 1)/ep`` bytes each way
  (the share for experts on other ranks), over NVLink inside the NVLink domain and over the
  scale-out network (InfiniBand/RoCE) beyond it (``collectives.collective_time``'s hierarchical
  all-to-all). With ``moe_tp > 1`` the ``moe_tp`` partial sums of each token are reduced over its
  moe_tp group after the combine.

Expert load imbalance: ``expert_skew`` ≥ 1 is the busiest EP rank's routed token-expert pairs over
the mean (``T·top_k/ep``). The layer waits for its busiest rank, so its grouped GEMMs are costed as
a balanced run over ``expert_skew × T`` tokens (the measured table at that token count, or the
roofline with ``skew × T·top_k/ep`` pairs on the rank), and the all-to-all into and out of it moves
``expert_skew ×`` the mean bytes. 1.0 (default) is perfect balance, what the measured tables ran
(``distribution: balanced``); a rank cannot receive more than every token's pairs to its own
experts, so ``expert_skew ≤ ep·min(top_k, experts/ep)/top_k`` (:func:`max_skew`).

Dispatch and combine move 16-bit activations (DeepEP's normal mode; its low-latency FP8 dispatch
halves the dispatch bytes, not modelled).
"""

from __future__ import annotations

from ..hardware import HardwareProfile
from ..layers import AttentionSpec, LayerSpec, MLPSpec
from .collectives import Group, collective_time
from .ops import Op, gemm, memory_op

ACT_BYTES = 2.0   # 16-bit activations on the wire and between kernels


def all_to_all_bytes(tokens: float, hidden: int, top_k: int, ep: int, bytes_per_element: float = ACT_BYTES) -> float:
    """Bytes one rank sends in one dispatch (or receives in one combine): its ``tokens``' hidden states,
    one copy per routed expert, except those whose expert is on the rank itself (``1/ep`` of them)."""
    return tokens * hidden * bytes_per_element * top_k * (ep - 1) / ep


def max_skew(ep: int, top_k: int, experts: int) -> float:
    """The largest meaningful ``expert_skew``: every token sends ``min(top_k, experts/ep)`` of its
    pairs to one rank, against the mean ``top_k/ep``."""
    return ep * min(top_k, experts / ep) / top_k


def ep_group(hw: HardwareProfile, ep: int) -> Group:
    """The EP communicator: ``ep`` ranks, as many per node as the GPU's NVLink domain holds."""
    return Group(ep, min(ep, hw.nvlink_domain_gpus))


def a2a_time(hw: HardwareProfile, tokens: float, hidden: int, top_k: int, ep: int, skew: float = 1.0) -> float:
    """One dispatch or combine: the busiest rank's ``skew ×`` the mean share of ``tokens·top_k`` hidden
    states (``collective_time`` takes the full buffer and sends ``(ep−1)/ep`` of it)."""
    if ep <= 1:
        return 0.0
    return collective_time(hw, "all_to_all", tokens * hidden * ACT_BYTES * top_k * skew, ep_group(hw, ep))


# GPT-OSS's MXFP4 experts on Blackwell run as W4A8_MXFP4_MXFP8 (MXFP8 activations, costmodel.inference
# layer_precisions); the measured tables hold that kernel under its own dtype (scripts/import_silicon.py
# MOE_EXTRA_DTYPES), not under fp8's, whose rows are FP8 weights
MXFP4_ON_FP8 = "w4a8-mxfp4-mxfp8"


def table_dtype(experts_only_quant: str | None, expert_precision: str) -> str:
    """The dtype under which the measured MoE tables hold the experts' kernel: the experts' math format, or
    :data:`MXFP4_ON_FP8` for an MXFP4 experts-only checkpoint whose experts run FP8 math."""
    return MXFP4_ON_FP8 if experts_only_quant == "mxfp4" and expert_precision == "fp8" else expert_precision


def routed_expert_ops(spec: LayerSpec, hw: HardwareProfile, *, tokens: float, moe_tp: int, ep: int,
                      attention_dp: int, skew: float, precision: str, weight_bytes: float,
                      fp8_static: bool = False, busy_groups: int | None = None,
                      kernel_dtype: str | None = None) -> list[Op]:
    """Router, dispatch, the busiest rank's grouped GEMMs and combine of one MoE layer over an
    iteration of ``tokens`` tokens (all DP ranks together); shared experts and the layer's closing
    all-reduce are the caller's (module docstring). ``busy_groups``: DP groups with work this iteration
    (fewer sequences than groups leave some idle; default all). ``kernel_dtype``: the measured tables' dtype
    of the experts' kernel (:func:`table_dtype`; default ``precision``)."""
    mlp, h, T = spec.mlp, spec.hidden, tokens
    f, up, ne, k = mlp.ffn_hidden, mlp.up, mlp.experts, mlp.top_k
    local_tokens = T / (busy_groups or attention_dp)          # tokens on the busiest DP rank
    # the router stays 16-bit in quantized checkpoints (DeepSeek's and Qwen's FP8 checkpoints, GPT-OSS's
    # modules_to_not_convert and ModelOpt's NVFP4 exclude the gate)
    ops = [gemm(hw, "router", local_tokens, ne, h, "bf16")]
    dp_path = attention_dp > 1 and ep > 1
    if dp_path:
        ops.append(Op("moe_dispatch", "ep_comm", a2a_time(hw, local_tokens, h, k, ep, skew)))
    busiest = T * skew                                        # a balanced run of this many tokens
    fused = None if hw.kernels is None else hw.kernels.moe(dtype=kernel_dtype or precision, tokens=busiest, hidden=h,
                                                           inter=f,
                                                           topk=k, experts=ne, tp=moe_tp, ep=ep)
    if fused is not None:
        ops.append(Op("moe_experts", "gemm", fused, 2.0 * busiest * k * (up + f) * h / (moe_tp * ep), measured=True))
    else:
        roof = _roofline_experts(spec, hw, tokens=T, moe_tp=moe_tp, ep=ep, skew=skew, precision=precision,
                                 weight_bytes=weight_bytes, fp8_static=fp8_static)
        per_expert = T * k / ne                               # rows one expert's GEMMs see (balanced)
        factor = kernel_factor(hw, precision, per_expert)
        ops += [Op(o.name, o.kind, o.time * factor, o.flops) for o in roof]
    if dp_path:
        ops.append(Op("moe_combine", "ep_comm", a2a_time(hw, local_tokens, h, k, ep, skew)))
        if moe_tp > 1:
            ops.append(Op("moe_tp_allreduce", "tp_comm",
                          collective_time(hw, "all_reduce", local_tokens * h * ACT_BYTES,
                                          Group(moe_tp, min(moe_tp, hw.nvlink_domain_gpus)), tokens=local_tokens)))
    return ops


def check_layout(model_name: str, specs: list[tuple[LayerSpec, int]], *, tp: int, ep: int, attention_dp: int,
                 skew: float) -> None:
    """The replica's ``ep`` / ``attention_dp`` / ``expert_skew`` against the model: a clear error naming the
    key otherwise (:class:`~simulator.errors.CapsimError`)."""
    from ..errors import CapsimError

    moe = [s.mlp for s, _ in specs if s.mlp.is_moe]
    if not moe:
        if ep > 1 or attention_dp > 1 or skew != 1.0:
            raise CapsimError(f"replica.ep={ep}, replica.attention_dp={attention_dp}, replica.expert_skew={skew:g}: "
                              f"{model_name} has no routed experts; expert and attention data parallelism are for MoE "
                              "models (for a dense model add replicas instead of attention_dp)")
        return
    gpus = tp * attention_dp
    ne, k = moe[0].experts, moe[0].top_k
    if gpus % ep:
        raise CapsimError(f"replica.ep={ep} must divide the replica's tp × attention_dp = {tp} × {attention_dp} = "
                          f"{gpus} GPUs per stage (the routed experts run on ep groups of tp·attention_dp/ep GPUs)")
    if ne % ep:
        raise CapsimError(f"replica.ep={ep} must divide {model_name}'s {ne} routed experts")
    top = max_skew(ep, k, ne)
    if not 1.0 <= skew <= top:
        raise CapsimError(f"replica.expert_skew={skew:g}: the busiest EP rank's routed tokens over the mean is between "
                          f"1 (balanced) and {top:g} (every token's top-{k} experts on one of {ep} ranks) here")


def _roofline_experts(spec: LayerSpec, hw: HardwareProfile, *, tokens: float, moe_tp: int, ep: int, skew: float,
                      precision: str, weight_bytes: float, fp8_static: bool = False) -> list[Op]:
    """The busiest rank's grouped GEMMs as GEMM rooflines: its touched experts, each over its rows."""
    mlp, h, T = spec.mlp, spec.hidden, tokens
    f, up, ne, k = mlp.ffn_hidden, mlp.up, mlp.experts, mlp.top_k
    local_experts = ne / ep
    pairs = T * k / ep * skew                             # token-expert pairs on the busiest rank
    touched = local_experts * (1 - (1 - k / ne) ** T)     # its experts that any token hits
    per_expert = pairs / max(touched, 1e-9)
    return [gemm(hw, "expert_fc1", per_expert, up / moe_tp, h, precision, batch=touched,
                 bytes_per_element=weight_bytes, static_scales=fp8_static),
            memory_op(hw, "expert_activation", pairs * (up + f) / moe_tp * ACT_BYTES),
            gemm(hw, "expert_fc2", per_expert, h, f / moe_tp, precision, batch=touched,
                 bytes_per_element=weight_bytes, static_scales=fp8_static)]


# The shape every measured MoE table has (hardware_profiles/measured/*/moe.*: Mixtral-8x7B's experts,
# hidden 4096, width 14336, top-2 of 8, tp 1, ep 1) and the largest token count they measured.
REFERENCE = LayerSpec(4096, AttentionSpec(32, 8, 128), MLPSpec(14336, "swiglu", 8, 2), "rmsnorm", False)
TABLE_MAX_TOKENS = 2048
_FACTORS: dict[tuple[int, str, int], float] = {}


def kernel_factor(hw: HardwareProfile, precision: str, rows_per_expert: float) -> float:
    """How much slower the engine's fused MoE kernel ran than the grouped-GEMM roofline, at the measured
    tables' shape and the same rows per expert: applied to shapes the tables lack (DeepSeek's 256 experts,
    GPT-OSS's 128), so their experts run at the engine's measured efficiency, not the roofline's. The
    format's own table, else bf16's (w4a16's weight-only kernels run bf16 math); 1.0 without tables."""
    kb = hw.kernels
    if kb is None:
        return 1.0
    t_ref = min(max(round(rows_per_expert * 8 / 2), 1), TABLE_MAX_TOKENS)   # Mixtral: rows = tokens·2/8
    key = (id(kb), precision, t_ref)
    if key not in _FACTORS:
        factor = 1.0
        for dtype in dict.fromkeys((precision, "bf16")):
            if not kb.has("moe", (dtype, 4096, 14336, 2, 8, 1, 1, "balanced")):
                continue
            meas = kb.moe(dtype=dtype, tokens=t_ref, hidden=4096, inter=14336, topk=2, experts=8, tp=1, ep=1)
            from ..precision import get_format
            roof = sum(o.time for o in _roofline_experts(REFERENCE, hw, tokens=t_ref, moe_tp=1, ep=1, skew=1.0,
                                                          precision=dtype,
                                                          weight_bytes=get_format(dtype).weight_bytes))
            if meas is not None and roof > 0:
                factor = float(meas / roof)
                break
        _FACTORS[key] = factor
    return _FACTORS[key]
