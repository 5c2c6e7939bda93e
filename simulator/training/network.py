"""The cluster's network as a scenario property (``cluster.network``), over the GPU profile's default.

A GPU profile describes the network of its reference system (one 400 Gb/s NIC per GPU for an
HGX H100 node). Real clusters differ: four 100 Gb/s NICs shared by eight GPUs, or a fabric tapered
2:1 above the leaf switches. ``cluster.network`` gives the NICs per node, their speed and the
taper; the collectives between nodes then see each GPU's share of the node's NICs:

    bus bandwidth per GPU = 0.92 × NICs × Gb/s ÷ 8 ÷ GPUs per node ÷ oversubscription

0.92 is what NCCL reaches of an NDR 400 Gb/s link (46 of 50 GB/s, shared/reference/README.md, the
profiles' own inter-node figure). The NVLink domain is ``cluster.gpus_per_node`` (72 for a GB200
NVL72 rack). The inter-node step latency is the profile's unless ``latency_us`` is given.
"""

from __future__ import annotations

from ..hardware import HardwareProfile, Link

NIC_BUSBW_EFFICIENCY = 0.92     # NCCL bus bandwidth ÷ line rate on NDR InfiniBand (46 of 50 GB/s)


def per_gpu_busbw_gb_s(*, nics_per_node: int, nic_gbps: float, gpus_per_node: int, oversubscription: float) -> float:
    """Each GPU's share of its node's NICs, as NCCL bus bandwidth (GB/s)."""
    return NIC_BUSBW_EFFICIENCY * nics_per_node * nic_gbps / 8 / gpus_per_node / oversubscription


def with_network(hw: HardwareProfile, *, nics_per_node: int, nic_gbps: float, gpus_per_node: int,
                 oversubscription: float = 1.0, latency_us: float | None = None) -> HardwareProfile:
    """``hw`` with its inter-node tier replaced by the cluster's network (the measured tables and
    everything else kept)."""
    old = hw.inter_node
    link = Link(link=f"{nics_per_node}x{nic_gbps:g}Gb/s" + (f" {oversubscription:g}:1" if oversubscription > 1 else ""),
                busbw_gb_s=per_gpu_busbw_gb_s(nics_per_node=nics_per_node, nic_gbps=nic_gbps,
                                              gpus_per_node=gpus_per_node, oversubscription=oversubscription),
                link_gb_s_per_direction=nics_per_node * nic_gbps / 8 / gpus_per_node,
                step_latency_us=old.step_latency_us if latency_us is None else latency_us)
    out = hw.model_copy(update={"inter_node": link})
    out._measured, out._kernels = hw._measured, hw.kernels   # one basis (and coverage count) for both
    out._training_basis_due = False
    return out
