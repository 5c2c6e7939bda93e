"""An MoE layer's routed experts in training, as Megatron-Core runs them (``MoELayer`` with the
all-to-all or flex token dispatcher and Transformer Engine's grouped linear layers).

One micro-batch's forward on one rank, ``T`` tokens of hidden ``h``, ``top_k`` experts each:

- **router**: a 16-bit GEMM to the expert logits (the router stays out of FP8 autocast).
- **permute**: the rank's tokens copied into expert order, one row per token-expert pair
  (``moe_permute_fusion``: Transformer Engine's fused ``moe_permute``): read ``T·h``, write
  ``T·k·h`` 16-bit elements (:func:`permute_bytes`).
- **dispatch** all-to-all over the EP group (``ep > 1``), then the local experts' **grouped
  GEMMs**: Transformer Engine's ``GroupedLinear`` runs one GEMM per local expert over the rows
  routed to it (``general_grouped_gemm``: a loop of cuBLAS GEMMs over ``m_splits``), so each runs at
  the measured rate of *its* shape, ``[T·k·ep/experts, h] x [h, width]``, not as one GEMM of all the
  rows (:func:`grouped_gemm`). A batched roofline over the experts would run them at the tensor
  cores' peak, faster than any measured GEMM of that size.
- the activation, fc2, the **combine** all-to-all and the **unpermute**, which reads the ``T·k``
  expert outputs and their routing weights and writes ``T`` summed rows.

The **dispatcher** sets what crosses the network when the EP group spans nodes
(:func:`dispatch_time`). Megatron-Core's ``alltoall`` dispatcher (NCCL all-to-all) sends every
token-expert copy to its expert's rank, ``(ep − local)/ep`` of them over the network. The ``flex``
dispatcher (DeepEP, HybridEP) sends a token over the network once per remote node that holds any
of its experts, to the GPU of the same local index there, which forwards it over NVLink to the
experts' GPUs (DeepSeek-V3 technical report, arXiv:2412.19437, Section 3.2.2; deepseek-ai/DeepEP
README: "forwarding data from NVLink domain to RDMA domain"); the two transfers run concurrently,
so the slower one sets the time. Balanced routing spreads a token's ``k`` experts uniformly, so a
node holding ``experts/nodes`` of them receives none with probability
``C(experts − experts/nodes, k) / C(experts, k)`` (:func:`remote_nodes`).

Routing is balanced (every rank receives ``T·k`` pairs): the benchmark recipes this models set
``moe_router_force_load_balancing`` (Megatron-Bridge perf_recipes/*: ``cfg.model.
moe_router_force_load_balancing = True``), and dropless routing keeps every pair.

**Token dropping** (``moe_capacity_factor`` cf): each expert takes at most ``ceil(cf·T·k/E)`` of a rank's
tokens (Megatron-Core ``get_capacity``), so balanced routing keeps ``min(1, cf)`` of the pairs; padded to
capacity (``moe_pad_to_capacity``) every expert gets exactly its capacity from every rank
(:func:`kept_pairs`). **The host sync**: dropless routing and unpadded capacity leave the split sizes (and
the grouped GEMM's ``m_splits``) on the GPU, so the host copies them back and waits before issuing the
all-to-all (Megatron-Core ``MoEAlltoAllTokenDispatcher.preprocess``: sync point ``before_ep_alltoall``, or
``before_finish`` without EP, ``before_permutation_1`` with a capacity); padded to capacity the shapes are
static and ``preprocess`` returns before any device-to-host copy, so the host never waits.

The backward reverses each kernel: the grouped GEMMs' dgrad and wgrad per expert, the permute's
backward is an unpermute of the gradients and vice versa (same traffic), the all-to-alls reversed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..hardware import HardwareProfile
from ..layers import LayerSpec
from .collectives import Group, collective_time
from .layout import Layout
from .ops import HOST_SYNC, Op, gemm

ACT_BYTES = 2.0      # 16-bit activations
PROB_BYTES = 4.0     # routing weights: fp32 (Megatron-Core's router returns float32 probs)

# Host cost of each further expert's kernel in a grouped linear layer, as a share of one modelled op's
# dispatch (training.dispatch_us). Transformer Engine's GroupedLinear sets up and issues each local expert's
# quantization and GEMM from host loops (general_grouped_gemm, split_quantize): each further expert costs
# the host less than a modelled op (no autograd node or Python module of its own), but not nothing.
# Fitted on the 22 B200 rows of the Megatron-Bridge MoE set, each run with its recipe's dispatcher and CUDA
# graphs, the experts' gradients over their own data-parallel group and current scaling's three kernels per
# cast (cast_launches), the recipes' selective recompute: bench/fit_expert_launch.py, grid step 0.1, 0 -> 21.0%
# MAPE, 0.5 -> 16.5%. Held out, the set's 19 H100 rows: 28.2% -> 18.9%. 0.5 x 70 us = 35 us per further
# expert kernel on the default host.
EXPERT_LAUNCH = 0.5

Linear = Callable[..., list[Op]]
Mem = Callable[[str, float], Op]


def grouped_gemm(hw: HardwareProfile, name: str, rows: float, n: float, k: float, precision: str, groups: float,
                 *, static_scales: bool = False) -> Op:
    """``groups`` GEMMs of ``[rows, k] x [k, n]``, one after another (Transformer Engine's grouped
    linear layer, one cuBLAS GEMM per expert): each at the measured (or roofline) time of its own
    shape."""
    one = gemm(hw, name, rows, n, k, precision, static_scales=static_scales)
    return Op(name, "gemm", one.time * groups, one.flops * groups, measured=one.measured,
              launches=expert_launches(groups))


def expert_launches(groups: float) -> float:
    """Host dispatches of a kernel run once per local expert (a grouped GEMM, its quantization): the first
    costs a modelled op, each further one :data:`EXPERT_LAUNCH` of one."""
    return 1.0 + max(groups - 1.0, 0.0) * EXPERT_LAUNCH


def cast_launches(launches: float, groups: float, recipe: str) -> float:
    """Host launches of one quantization before a linear layer's GEMM (``launches``: the GEMM's, one per
    ``groups`` expert). Current scaling runs three kernels per tensor where delayed scaling and the block
    formats run one: the amax, the scale from it, then the cast (Transformer Engine
    ``Float8CurrentScalingQuantizer``: nvte_compute_amax, nvte_compute_scale_from_amax, nvte_quantize),
    the two extra issued from C++ like a grouped layer's further experts (:data:`EXPERT_LAUNCH`)."""
    return launches + (2 * groups * EXPERT_LAUNCH if recipe == "current" else 0.0)


def permute_bytes(tokens: float, hidden: int, top_k: int, pairs: float | None = None) -> float:
    """HBM bytes of one permute (tokens into expert order, a row per kept token-expert pair, ``pairs``,
    default ``tokens·top_k``): read the ``tokens`` rows, write the ``pairs``; the unpermute reads the
    pairs and their fp32 routing weights and writes ``tokens`` rows, the same row traffic."""
    kept = tokens * top_k if pairs is None else pairs
    return (tokens + kept) * hidden * ACT_BYTES


def unpermute_bytes(tokens: float, hidden: int, top_k: int, pairs: float | None = None) -> float:
    kept = tokens * top_k if pairs is None else pairs
    return permute_bytes(tokens, hidden, top_k, kept) + kept * PROB_BYTES


def kept_pairs(tokens: float, top_k: int, experts: int, capacity_factor: float | None, pad: bool) -> float:
    """Token-expert pairs a rank sends to the experts (and, balanced, each rank's experts receive): every
    pair when dropless; ``min(1, cf)`` of them with a capacity; ``experts × capacity`` rows padded to it,
    capacity = ``ceil(cf·tokens·top_k/experts)`` (Megatron-Core moe_utils.get_capacity)."""
    pairs = tokens * top_k
    if capacity_factor is None:
        return pairs
    if pad:
        return experts * math.ceil(capacity_factor * pairs / experts)
    return pairs * min(1.0, capacity_factor)


def host_waits(lay: Layout) -> bool:
    """Whether the dispatcher copies the token counts to the host and waits for them (module docstring)."""
    return not (lay.moe_capacity_factor is not None and lay.moe_pad_to_capacity)


def remote_nodes(experts: int, top_k: int, nodes: int) -> float:
    """Expected number of nodes other than the sender's that hold at least one of a token's
    ``top_k`` experts, the experts a uniform draw without replacement, spread evenly over ``nodes``."""
    if nodes <= 1:
        return 0.0
    per_node = experts // nodes
    none = math.comb(experts - per_node, top_k) / math.comb(experts, top_k)
    return (nodes - 1) * (1 - none)


def dispatch_time(hw: HardwareProfile, lay: Layout, tokens: float, hidden: int, top_k: int, experts: int) -> float:
    """One dispatch (or combine) all-to-all of ``tokens`` tokens' ``top_k`` copies over the EP group,
    by the layout's dispatcher (module docstring)."""
    a2a = tokens * top_k * hidden * ACT_BYTES
    g = lay.ep_group
    if lay.moe_dispatcher != "flex" or g.nodes <= 1:
        return collective_time(hw, "all_to_all", a2a, g)
    nvlink = collective_time(hw, "all_to_all", a2a, Group(g.per_node, g.per_node))
    inter = hw.inter_node
    network = (tokens * hidden * ACT_BYTES * remote_nodes(experts, top_k, g.nodes) / (inter.busbw_gb_s * 1e9)
               + (g.nodes - 1) * inter.step_latency_us * 1e-6)
    return max(nvlink, network)


def routed_mlp_ops(spec: LayerSpec, hw: HardwareProfile, lay: Layout, tokens: float, router_precision: str,
                   linear: Linear, mem: Mem) -> list[Op]:
    """The forward kernels of one MoE layer's routed experts on one rank over ``tokens`` tokens
    (module docstring); shared experts are the caller's. ``linear(name, rows, n, k, groups=...)``
    builds a (grouped) linear layer with its quantization, ``mem(name, bytes)`` a memory-bound
    kernel whose backward the caller derives."""
    mlp, h = spec.mlp, spec.hidden
    f, up, k, ne = mlp.ffn_hidden, mlp.up, mlp.top_k, mlp.experts
    et = lay.expert_tp
    # token-expert pairs from this rank (and, balanced, to it): all of them dropless, else what the capacity keeps
    routed = kept_pairs(tokens, k, ne, lay.moe_capacity_factor, lay.moe_pad_to_capacity)
    a2a = dispatch_time(hw, lay, routed / k, h, k, ne)
    local_experts = max(ne / lay.ep, 1)
    per_expert = routed / local_experts
    # the host needs the split sizes (Megatron-Core token_dispatcher.py MoEAlltoAllTokenDispatcher.preprocess,
    # sync point "before_ep_alltoall", "before_finish" without EP; DeepEP's normal dispatch waits on the CPU
    # for the received-token count), so it waits for the GPU before issuing the dispatch (or the experts);
    # an unpadded capacity sizes the permute's output from the counts: "before_permutation_1"
    sync = [Op("moe_sync", HOST_SYNC, 0.0)] if host_waits(lay) else []
    early = lay.moe_capacity_factor is not None
    ops = [gemm(hw, "router", tokens, ne, h, router_precision), *(sync if early else []),
           mem("moe_permute", permute_bytes(tokens, h, k, routed)), *([] if early else sync)]
    if lay.ep > 1:
        ops.append(Op("moe_dispatch", "ep_comm", a2a))
    ops += [*linear("expert_fc1", per_expert, up / et, h, groups=local_experts),
            mem("expert_activation", routed * (up + f) / et * ACT_BYTES),
            *linear("expert_fc2", per_expert, h, f / et, groups=local_experts)]
    if lay.ep > 1:
        ops.append(Op("moe_combine", "ep_comm", a2a))
    ops.append(mem("moe_unpermute", unpermute_bytes(tokens, h, k, routed)))
    return ops


def overlap_a2a(ops: tuple[Op, ...], slowdown: float) -> tuple[Op, ...]:
    """One layer's pass with its expert-parallel all-to-alls overlapped with computation (Megatron-Core
    ``--overlap-moe-expert-parallel-comm``: the forward of one micro-batch and the backward of another run
    layer by layer together, each one's all-to-alls on a separate stream under the other's kernels;
    ``--delay-wgrad-compute`` moves the weight gradients under the combine). Costed within the pass: the
    all-to-alls are hidden under as much computation as the pass has, what outlasts it is exposed, and
    the hidden part costs the compute the communication kernels' SMs take (``slowdown``). The passes
    of the pipeline's warm-up and cool-down, which have no partner, are costed the same (a lower bound)."""
    comp = sum(o.time for o in ops if not o.is_comm)
    ep = sum(o.time for o in ops if o.kind == "ep_comm")
    if ep <= 0:
        return ops
    exposed = max(0.0, ep - comp) + min(ep, comp) * slowdown
    f = exposed / ep
    return tuple(Op(o.name, o.kind, o.time * f, o.flops, o.measured) if o.kind == "ep_comm" else o for o in ops)
