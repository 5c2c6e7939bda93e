"""MoE training as Megatron-Core runs it (issue 17 item 5): Transformer Engine's grouped experts one
GEMM per expert at its own shape, the fused permute/unpermute kernels. Values by hand from the shapes."""

from __future__ import annotations

import pytest

from simulator.catalog import get_model
from simulator.costmodel.layout import Layout
from simulator.costmodel.moe_training import grouped_gemm, permute_bytes, unpermute_bytes
from simulator.costmodel.ops import gemm, memory_op
from simulator.costmodel.transformer import layer_ops
from simulator.hardware import get_profile

QWEN = get_model("qwen3-30b-a3b").layer_groups()[0][0]      # hidden 2048, 128 experts of width 768, top-8


def test_grouped_experts_run_one_measured_gemm_per_expert():
    hw = get_profile("b200")
    # EP8, micro-batch 1 of 4,096 tokens: 4,096·8 pairs over 16 local experts = 2,048 rows each
    lay = Layout(dp=8, ep=8, etp=1, precision="bf16")
    ops = {o.name: o for o in layer_ops(QWEN, hw, lay, 1, 4096).fwd}
    one = gemm(hw, "x", 2048, 2 * 768, 2048, "bf16")
    assert one.measured
    assert ops["expert_fc1"].time == pytest.approx(16 * one.time)
    assert ops["expert_fc1"].flops == pytest.approx(16 * 2 * 2048 * 1536 * 2048)
    # never faster than the measured GEMM of its shape: the batched roofline ran it at the peak
    batched = gemm(hw, "x", 2048, 1536, 2048, "bf16", batch=16)
    assert ops["expert_fc1"].time > 1.5 * batched.time
    g = grouped_gemm(hw, "y", 100, 200, 300, "bf16", 1)
    assert g.time == gemm(hw, "y", 100, 200, 300, "bf16").time    # one group is the plain GEMM


def test_permute_and_unpermute_move_every_token_expert_row():
    # 4,096 tokens of hidden 2048, top-8: read 4,096 rows, write 32,768 (16-bit); the unpermute also
    # reads the 32,768 fp32 routing weights
    assert permute_bytes(4096, 2048, 8) == 4096 * 2048 * 2 * 9
    assert unpermute_bytes(4096, 2048, 8) == 4096 * 2048 * 2 * 9 + 4096 * 8 * 4
    hw = get_profile("h100-sxm")
    po = layer_ops(QWEN, hw, Layout(dp=8, ep=8, etp=1, precision="bf16"), 1, 4096)
    fwd = {o.name: o for o in po.fwd}
    bwd = {o.name: o for o in po.bwd}
    assert fwd["moe_permute"].time == pytest.approx(memory_op(hw, "moe_permute", 4096 * 2048 * 2 * 9).time)
    # backward: the permute's is an unpermute of the gradients (the same traffic); the unpermute's
    # also re-reads the expert outputs (twice its forward)
    assert bwd["moe_permute_bwd"].time == pytest.approx(fwd["moe_permute"].time)
    assert bwd["moe_unpermute_bwd"].time == pytest.approx(
        memory_op(hw, "x", 2 * unpermute_bytes(4096, 2048, 8)).time)
    names = [o.name for o in po.fwd]
    assert names.index("moe_permute") < names.index("moe_dispatch") < names.index("expert_fc1")
    assert names.index("moe_combine") < names.index("moe_unpermute")
