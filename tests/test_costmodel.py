"""Kernel and collective costs."""

import pytest

from simulator.costmodel.collectives import Group, collective_time
from simulator.costmodel.ops import gemm, memory_bound_time
from simulator.hardware import get_profile


@pytest.mark.parametrize("name", ["h100-sxm", "a100-sxm-80gb", "l4"])
def test_gemm_compute_bound_large_memory_bound_skinny(name):
    hw = get_profile(name).spec_only()      # the roofline (a measured GPU's tables answer inside their grid)
    peak = hw.peak_flops("bf16")
    big = gemm(hw, "big", 8192, 8192, 8192, "bf16")
    # compute-bound: achieved FLOP/s near the profile's maximum efficiency, far above bandwidth limit
    assert big.flops / big.time == pytest.approx(peak * hw.gemm_max("bf16"), rel=0.05)
    skinny = gemm(hw, "skinny", 1, 8192, 8192, "bf16")
    weights = 8192 * 8192 * 2
    # memory-bound: time is reading the weights at achieved bandwidth
    assert skinny.time == pytest.approx(memory_bound_time(hw, weights + 2 * 8192 * 2), rel=1e-9)
    assert skinny.flops / skinny.time < 0.02 * peak


def test_bigger_gemm_takes_longer():
    hw = get_profile("h100-sxm")
    times = [gemm(hw, "g", n, n, n, "bf16").time for n in (256, 1024, 4096, 16384)]
    assert times == sorted(times)


def test_ring_allreduce_formula():
    hw = get_profile("a100-sxm-80gb")
    S = 1 << 30
    t = collective_time(hw, "all_reduce", S, Group(8, 8))
    bw = hw.intra_node.busbw_gb_s * 1e9
    lat = hw.intra_node.step_latency_us * 1e-6
    assert t == pytest.approx(2 * 7 / 8 * S / bw + 14 * lat)
    # all-gather moves half the bytes of all-reduce
    ag = collective_time(hw, "all_gather", S, Group(8, 8))
    assert ag == pytest.approx(7 / 8 * S / bw + 7 * lat)


def test_small_messages_are_latency_bound():
    # reference README: ~20 GB/s bus bandwidth at 1 MiB on A100 NVLink vs ~230 GB/s large (the ring
    # model's calibration; the imported NCCL 2.27 table measures 47 GB/s there, see test_silicon.py)
    hw = get_profile("a100-sxm-80gb").spec_only()
    S = 1 << 20
    t = collective_time(hw, "all_reduce", S, Group(8, 8))
    busbw = 2 * 7 / 8 * S / t / 1e9
    assert busbw == pytest.approx(20, rel=0.05)


def test_hierarchical_allreduce_crosses_network():
    hw = get_profile("h100-sxm")
    S = 1 << 30
    one_node = collective_time(hw, "all_reduce", S, Group(8, 8))
    two_nodes = collective_time(hw, "all_reduce", S, Group(16, 8))
    assert two_nodes > one_node
    # inter-node leg: all-reduce of S/8 per GPU over 2 nodes at the NIC bandwidth
    inter = 2 * 1 / 2 * (S / 8) / (hw.inter_node.busbw_gb_s * 1e9)
    assert two_nodes - one_node == pytest.approx(inter, rel=0.05)


def test_dispatch_bound_sequence():
    from simulator.costmodel.ops import Op, dispatched_time

    ops = [Op("a", "memory", 1.0), Op("b", "memory", 1.0), Op("c", "gemm", 10.0)]
    # host issues at 2, 4, 6; GPU: 2+1 = 3, max(3, 4)+1 = 5, max(5, 6)+10 = 16
    assert dispatched_time([(ops, 1)], 2.0) == pytest.approx(16.0)
    # no dispatch cost: the GPU sum; repeated blocks extrapolate exactly in both regimes
    assert dispatched_time([(ops, 7)], 0.0) == pytest.approx(7 * 12.0)
    for d in (0.5, 2.0, 5.0):
        walked = dispatched_time([(ops, 1)] * 40, d)
        assert dispatched_time([(ops, 40)], d) == pytest.approx(walked)
    # host-bound: 3 kernels x 5 s of issue per block dominates 12 s of GPU work
    assert dispatched_time([(ops, 40)], 5.0) == pytest.approx(40 * 15.0 + 10.0)


def test_elementwise_kernels_run_at_the_elementwise_share_of_bandwidth():
    from simulator.costmodel.ops import memory_op

    hw = get_profile("a100-sxm-80gb")
    t = memory_op(hw, "dropout", 1e9).time
    assert t == pytest.approx(1e9 / (2.039e12 * 0.7) + 4e-6)


def test_sequence_parallel_backward_regathers_column_parallel_inputs():
    # Megatron SP per layer: forward all-gather + reduce-scatter around attention and MLP (4
    # collectives of b·s·h); backward the mirror of each (4) plus an all-gather of the QKV and FC1
    # inputs again for their weight gradients (2). Without SP: 2 all-reduces each way.
    from simulator.catalog import get_model
    from simulator.costmodel.layout import Layout
    from simulator.costmodel.transformer import layer_ops

    hw = get_profile("a100-sxm-80gb").spec_only()   # the ring model: all-gather and reduce-scatter cost the same
    m = get_model("gpt3-175b")
    sp = layer_ops(m, hw, Layout(tp=8, sequence_parallel=True, recompute="selective", flash_attention=False), 1, 2048)
    fwd = [o for o in sp.fwd if o.kind == "tp_comm"]
    bwd = [o for o in sp.bwd if o.kind == "tp_comm"]
    ag = collective_time(hw, "all_gather", 2048 * 12288 * 2, Group(8, 8))
    assert len(fwd) == 4 and len(bwd) == 6
    assert sum(o.time for o in bwd) == pytest.approx(6 * ag)
    plain = layer_ops(m, hw, Layout(tp=8, recompute="full", flash_attention=False), 1, 2048)
    assert sum(o.kind == "tp_comm" for o in plain.bwd) == 2


def test_inference_allreduce_without_tables_is_the_engines_peer_kernel():
    # spec-sheet H100: NVLink 450 GB/s per direction, NCCL busbw 370 GB/s, 6 us ring steps
    hw = get_profile("h100-sxm").spec_only()
    S = 1 << 20
    one_shot = 3e-6 + 7 * S / 450e9            # 19.3 us
    two_shot = 6e-6 + 2 * 7 / 8 * S / 450e9    # 10.1 us
    ring = 2 * 7 / 8 * S / 370e9 + 14 * 6e-6   # 89.0 us
    assert two_shot < one_shot < ring
    assert collective_time(hw, "all_reduce", S, Group(8, 8), tokens=64) == pytest.approx(two_shot)
    # a decode step's tiny buffer at TP2: one barrier and the peer's 16 KiB
    assert collective_time(hw, "all_reduce", 16384, Group(2, 8), tokens=1) == pytest.approx(3e-6 + 16384 / 450e9)
    # training (no iteration size) keeps NCCL's ring; so do buffers above vLLM's 8 MiB custom-AR limit
    assert collective_time(hw, "all_reduce", S, Group(8, 8)) == pytest.approx(ring)
    big = 16 << 20
    assert collective_time(hw, "all_reduce", big, Group(8, 8), tokens=1024) == pytest.approx(
        2 * 7 / 8 * big / 370e9 + 14 * 6e-6)


def test_inference_allreduce_over_pcie_is_the_ring():
    hw = get_profile("l4").spec_only()      # PCIe cards: no peer-memory kernel
    S = 1 << 20
    link = hw.intra_node
    ring = 2 * 3 / 4 * S / (link.busbw_gb_s * 1e9) + 6 * link.step_latency_us * 1e-6
    assert collective_time(hw, "all_reduce", S, Group(4, 8), tokens=64) == pytest.approx(ring)


def test_cost_basis_says_measured_for_a_tabled_all_reduce() -> None:
    from simulator.costmodel.collectives import collective_measured

    hw = get_profile("h100-sxm").with_engine("trtllm")
    assert collective_measured(hw, "all_reduce", 16 * 8192 * 2, Group(8, 8), tokens=16)
    assert not collective_measured(hw.spec_only(), "all_reduce", 16 * 8192 * 2, Group(8, 8), tokens=16)
    assert not collective_measured(hw, "all_reduce", 1 << 20, Group(16, 8), tokens=64)    # two nodes: modelled
    kb = hw.kernels
    assert kb is not None and not kb.coverage.hits                                        # a probe counts nothing
