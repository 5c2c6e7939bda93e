"""MoE parallel folding in training (issue 17 item 5): the experts' grid etp × ep × expert-dp drawn from
the tp·cp·dp GPUs of a stage, as Megatron-Core runs it. Values by hand from the shapes."""

from __future__ import annotations

import pytest

from simulator.catalog import get_model
from simulator.costmodel.collectives import collective_time
from simulator.costmodel.layout import Layout
from simulator.costmodel.transformer import ACT_BYTES, layer_ops
from simulator.errors import CapsimError
from simulator.hardware import get_profile
from simulator.scenario import parse_scenario
from simulator.training import simulate_training

# qwen3-30b-a3b (128 experts, top-8, hidden 2048, expert width 768) on 8 H100s, TP2 DP4
DOC = {"kind": "training", "model": "qwen3-30b-a3b", "hardware": "h100-sxm", "cluster": {"nodes": 1},
       "parallelism": {"tp": 2, "sequence_parallel": True},
       "training": {"seq_len": 4096, "global_batch": 32, "micro_batch": 1}}


def test_ep_may_span_tensor_parallel_ranks_when_the_experts_run_below_tp():
    with pytest.raises(CapsimError, match=r"ep·etp = 8·2 must divide the tp·cp·dp = 2·1·4"):
        simulate_training(parse_scenario(DOC, ["parallelism.ep=8"]))        # etp defaults to tp
    r = simulate_training(parse_scenario(DOC, ["parallelism.ep=8", "parallelism.etp=1"]))
    assert r.iteration_time_s > 0
    with pytest.raises(CapsimError, match="etp=4 above tp=2"):
        simulate_training(parse_scenario(DOC, ["parallelism.ep=2", "parallelism.etp=4"]))


def test_expert_weights_are_split_over_ep_times_etp():
    model = get_model("qwen3-30b-a3b")
    spec = model.layer_groups()[0][0]
    folded = simulate_training(parse_scenario(DOC, ["parallelism.ep=8", "parallelism.etp=1"]))
    plain = simulate_training(parse_scenario(DOC))          # no EP, experts split over tp = 2
    routed = spec.routed_params() * model.layers
    # weights (bf16, 2 B): every routed expert parameter 1/8 instead of 1/2 on a GPU
    saved = (plain["memory_per_gpu_gib"]["params"] - folded["memory_per_gpu_gib"]["params"]) * 2**30 / 2
    assert saved == pytest.approx(routed * (1 / 2 - 1 / 8), rel=1e-3)


def test_folded_moe_layer_sends_its_sequence_shard_to_full_width_experts():
    model = get_model("qwen3-30b-a3b")
    spec = model.layer_groups()[0][0]
    hw = get_profile("h100-sxm")
    lay = Layout(tp=2, dp=4, ep=8, etp=1, sequence_parallel=True)
    ops = {o.name: o for o in layer_ops(spec, hw, lay, 1, 4096).fwd}
    assert "tp_allgather_mlp" not in ops and "tp_allreduce_mlp" not in ops   # tokens stay in their shards
    tokens = 4096 / 2                                                         # this rank's SP shard
    a2a = tokens * spec.mlp.top_k * model.hidden * ACT_BYTES
    assert ops["moe_dispatch"].time == pytest.approx(collective_time(hw, "all_to_all", a2a, lay.ep_group))
    assert lay.ep_group.size == 8 and lay.ep_group.per_node == 8               # every rank of the node
    # the same work per GPU, shaped differently: folded, 16 local experts at full width get 2048·8·8/128 =
    # 1,024 tokens each; unfolded (ep 4 over DP, etp = tp = 2), 32 half-width experts get 4096·8·4/128 = 1,024
    unfolded = {o.name: o for o in layer_ops(spec, hw, Layout(tp=2, dp=4, ep=4, sequence_parallel=True), 1, 4096).fwd}
    assert "tp_allgather_mlp" in unfolded
    up = spec.mlp.up
    assert ops["expert_fc1"].flops == pytest.approx(2 * 1024 * up * model.hidden * 16)
    assert unfolded["expert_fc1"].flops == pytest.approx(2 * 1024 * (up / 2) * model.hidden * 32)
