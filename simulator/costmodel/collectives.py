"""Collective communication costs: measured single-node tables where the GPU has them, else ring
algorithms with per-step latency plus bytes over the measured bus bandwidth; hierarchical
(intra-node, then inter-node) when a group spans nodes, its intra-node steps from the tables.

Bus bandwidth is what ``nccl-tests`` reports: all-reduce moves ``2(n-1)/n·S`` bytes per GPU,
all-gather and reduce-scatter ``(n-1)/n·S`` (S the full buffer size).

Inference engines do not use NCCL for a tensor-parallel all-reduce inside an NVLink node: vLLM's
custom all-reduce (csrc/custom_all_reduce.cuh, vllm/distributed/device_communicators/
custom_all_reduce.py: buffers up to 8 MiB), TensorRT-LLM's one-shot/two-shot kernels and SGLang's
copy of vLLM's read peers' buffers directly. Where no measured table covers the size, an inference
all-reduce is the fastest of: one-shot (each GPU reads all ``n-1`` peers' full buffers and reduces
locally: one barrier, ``(n-1)·S`` bytes in), two-shot (reduce-scatter then all-gather through peer
memory: two barriers, ``2(n-1)/n·S`` bytes in) and the NCCL ring. Training collectives keep NCCL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..hardware import HardwareProfile, Link


@dataclass(frozen=True, slots=True)
class Group:
    """A communicator: ``size`` ranks, of which ``per_node`` share a node."""

    size: int
    per_node: int

    @property
    def nodes(self) -> int:
        return max(1, self.size // max(1, self.per_node))


def _ring(link: Link, kind: str, n: int, nbytes: float) -> float:
    if n <= 1 or nbytes <= 0:
        return 0.0
    bw = link.busbw_gb_s * 1e9
    lat = link.step_latency_us * 1e-6
    if kind == "all_reduce":
        return 2 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * lat
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n * nbytes / bw + (n - 1) * lat
    raise ValueError(f"unknown collective {kind!r}")


# One barrier of a peer-memory all-reduce kernel: the smallest all-reduce TensorRT-LLM's and SGLang's
# custom kernels measure on H100/H200 (hardware_profiles/measured/{h100-sxm,h200}, 2 ranks, 16 KiB:
# 2.6-2.8 us; 3.5-3.7 us at 8 ranks).
PEER_BARRIER_US = 3.0
CUSTOM_AR_MAX_BYTES = 8 * 1024 * 1024   # vLLM custom_all_reduce.py max_size (8192 * 1024)


def engine_all_reduce(link: Link, n: int, nbytes: float) -> float:
    """An inference engine's all-reduce inside one NVLink node without a measured table (module
    docstring): min(one-shot, two-shot, ring); the ring alone without peer links or above 8 MiB."""
    ring = _ring(link, "all_reduce", n, nbytes)
    peer = link.link.startswith(("nvlink", "infinity-fabric"))    # all GPUs of the node are peers
    if n <= 1 or nbytes <= 0 or not peer or not link.link_gb_s_per_direction or nbytes > CUSTOM_AR_MAX_BYTES:
        return ring
    bw = link.link_gb_s_per_direction * 1e9
    one_shot = PEER_BARRIER_US * 1e-6 + (n - 1) * nbytes / bw
    two_shot = 2 * PEER_BARRIER_US * 1e-6 + 2 * (n - 1) / n * nbytes / bw
    return min(one_shot, two_shot, ring)


TABLE_OPS = {"all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
             "all_to_all": "alltoall"}


def _intra(hw: HardwareProfile, kind: str, n: int, nbytes: float, tokens: float | None) -> float:
    """One node's collective: the measured table (the engine's own all-reduce for inference, NCCL
    otherwise) where it covers ``n`` ranks and the size, else the ring model."""
    kb = hw.kernels
    if kb is not None and n > 1 and nbytes > 0:
        t = kb.collective(TABLE_OPS[kind], ranks=n, nbytes=nbytes, tokens=tokens)
        if t is not None:
            return t
    if kind == "all_reduce" and tokens is not None:
        return engine_all_reduce(hw.intra_node, n, nbytes)
    return _ring(hw.intra_node, kind, n, nbytes)


def collective_time(hw: HardwareProfile, kind: str, nbytes: float, group: Group, *,
                    tokens: float | None = None) -> float:
    """Time of ``kind`` over ``group`` for a buffer of ``nbytes`` (the full, unsharded size).
    ``tokens``: the inference iteration's size, which picks an engine's CUDA-graph or eager kernel."""
    n = group.size
    if n <= 1 or nbytes <= 0:
        return 0.0
    if kind not in TABLE_OPS:
        raise ValueError(f"unknown collective {kind!r}")
    local = min(group.per_node, n)
    nodes = group.nodes
    if nodes <= 1:
        return _intra(hw, kind, n, nbytes, tokens)
    if local <= 1:
        return _ring(hw.inter_node, kind, n, nbytes)
    # Hierarchical: each GPU drives its own NIC (rail-optimised), so the inter-node step moves
    # 1/local of the buffer per GPU.
    inter = hw.inter_node
    if kind == "all_reduce":
        return (_intra(hw, "reduce_scatter", local, nbytes, None)
                + _ring(inter, "all_reduce", nodes, nbytes / local)
                + _intra(hw, "all_gather", local, nbytes, None))
    if kind in ("all_gather", "reduce_scatter"):
        return _intra(hw, kind, local, nbytes, None) + _ring(inter, kind, nodes, nbytes / local)
    if kind == "all_to_all":
        # (n-local)/n of the data crosses the network, the rest stays on NVLink.
        cross = nbytes * (n - local) / n
        return (_intra(hw, "all_to_all", local, nbytes * local / n, None)
                + cross / (inter.busbw_gb_s * 1e9) + (nodes - 1) * inter.step_latency_us * 1e-6)
    raise ValueError(f"unknown collective {kind!r}")


def scalar_all_reduce(hw: HardwareProfile, group: Group) -> float:
    """A few bytes all-reduced over ``group`` (a gradient norm, an overflow flag, a token count):
    latency only, over a tree, as NCCL runs small messages (its double binary tree, whose latency
    grows with log2 of the nodes): up and down through the node's ranks, then the nodes."""
    if group.size <= 1:
        return 0.0
    local = max(1, min(group.per_node, group.size))
    nodes = group.nodes
    intra = math.ceil(math.log2(local)) * hw.intra_node.step_latency_us if local > 1 else 0.0
    inter = math.ceil(math.log2(nodes)) * hw.inter_node.step_latency_us if nodes > 1 else 0.0
    return 2 * (intra + inter) * 1e-6


def collective_measured(hw: HardwareProfile, kind: str, nbytes: float, group: Group, *,
                        tokens: float | None = None) -> bool:
    """Whether a measured table times this collective (a one-node group inside a table's grid), for
    the basis column of ``capsim cost``; a probe, not counted in the coverage."""
    kb = hw.kernels
    if kb is None or group.size <= 1 or nbytes <= 0 or group.nodes > 1 or kind not in TABLE_OPS:
        return False
    return kb.collective(TABLE_OPS[kind], ranks=group.size, nbytes=nbytes, tokens=tokens, count=False) is not None


def p2p_time(hw: HardwareProfile, nbytes: float, *, same_node: bool) -> float:
    """A point-to-point send (pipeline activations)."""
    if nbytes <= 0:
        return 0.0
    link = hw.intra_node if same_node else hw.inter_node
    bw = (link.link_gb_s_per_direction * 0.8 if same_node and link.link_gb_s_per_direction else link.busbw_gb_s)
    return nbytes / (bw * 1e9) + link.step_latency_us * 1e-6
