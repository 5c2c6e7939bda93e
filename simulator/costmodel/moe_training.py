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

Linear = Callable[..., list[Op]]
Mem = Callable[[str, float], Op]


def grouped_gemm(hw: HardwareProfile, name: str, rows: float, n: float, k: float, precision: str, groups: float,
                 *, static_scales: bool = False) -> Op:
    """``groups`` GEMMs of ``[rows, k] x [k, n]``, one after another (Transformer Engine's grouped
    linear layer, one cuBLAS GEMM per expert): each at the measured (or roofline) time of its own
    shape."""
    one = gemm(hw, name, rows, n, k, precision, static_scales=static_scales)
    return Op(name, "gemm", one.time * groups, one.flops * groups, measured=one.measured)


def permute_bytes(tokens: float, hidden: int, top_k: int) -> float:
    """HBM bytes of one permute (tokens into expert order, a row per token-expert pair): read the
    ``tokens`` rows, write ``tokens·top_k``; the unpermute reads the ``tokens·top_k`` rows and their
    fp32 routing weights and writes ``tokens`` rows, the same row traffic."""
    return tokens * hidden * ACT_BYTES * (1 + top_k)


def unpermute_bytes(tokens: float, hidden: int, top_k: int) -> float:
    return permute_bytes(tokens, hidden, top_k) + tokens * top_k * PROB_BYTES


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
    routed = tokens * k                              # token-expert pairs from this rank (and, balanced, to it)
    a2a = dispatch_time(hw, lay, tokens, h, k, ne)
    local_experts = max(ne / lay.ep, 1)
    per_expert = routed / local_experts
    ops = [gemm(hw, "router", tokens, ne, h, router_precision),
           mem("moe_permute", permute_bytes(tokens, h, k))]
    if lay.ep > 1:
        # dropless routing: the host needs the all-to-all's split sizes (Megatron-Core token_dispatcher.py
        # MoEAlltoAllTokenDispatcher.preprocess, sync point "before_ep_alltoall"; DeepEP's normal dispatch
        # waits on the CPU for the received-token count), so it waits for the GPU before issuing the dispatch
        ops += [Op("moe_sync", HOST_SYNC, 0.0), Op("moe_dispatch", "ep_comm", a2a)]
    ops += [*linear("expert_fc1", per_expert, up / et, h, groups=local_experts),
            mem("expert_activation", routed * (up + f) / et * ACT_BYTES),
            *linear("expert_fc2", per_expert, h, f / et, groups=local_experts)]
    if lay.ep > 1:
        ops.append(Op("moe_combine", "ep_comm", a2a))
    ops.append(mem("moe_unpermute", unpermute_bytes(tokens, h, k)))
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
