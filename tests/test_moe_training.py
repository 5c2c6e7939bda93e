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


def test_flex_dispatcher_sends_a_token_once_per_remote_node():
    from simulator.costmodel.collectives import Group, collective_time
    from simulator.costmodel.moe_training import dispatch_time, remote_nodes

    # 128 experts over 2 nodes, top-8: the other node holds none of a token's experts with probability
    # (64·63·…·57)/(128·127·…·121), so it receives the token almost always, once (not 4 copies)
    p_none = 1.0
    for i in range(8):
        p_none *= (64 - i) / (128 - i)
    assert remote_nodes(128, 8, 2) == pytest.approx(1 - p_none)
    assert remote_nodes(128, 8, 1) == 0.0
    hw = get_profile("h100-sxm")
    tokens, h = 4096, 2048
    a2a = Layout(dp=16, ep=16, etp=1, gpus_per_node=8)
    flex = Layout(dp=16, ep=16, etp=1, gpus_per_node=8, moe_dispatcher="flex")
    assert a2a.ep_group == Group(16, 8)
    nbytes = tokens * 8 * h * 2
    assert dispatch_time(hw, a2a, tokens, h, 8, 128) == collective_time(hw, "all_to_all", nbytes, Group(16, 8))
    network = tokens * h * 2 * (1 - p_none) / (hw.inter_node.busbw_gb_s * 1e9) + hw.inter_node.step_latency_us * 1e-6
    nvlink = collective_time(hw, "all_to_all", nbytes, Group(8, 8))
    assert dispatch_time(hw, flex, tokens, h, 8, 128) == pytest.approx(max(network, nvlink))
    assert dispatch_time(hw, flex, tokens, h, 8, 128) < 0.5 * dispatch_time(hw, a2a, tokens, h, 8, 128)
    # inside one node both dispatchers are the same all-to-all
    one = Layout(dp=8, ep=8, etp=1, gpus_per_node=8, moe_dispatcher="flex")
    assert dispatch_time(hw, one, tokens, h, 8, 128) == collective_time(hw, "all_to_all", nbytes, Group(8, 8))


def test_overlapped_all_to_alls_show_only_what_outlasts_the_compute():
    from simulator.costmodel.moe_training import overlap_a2a
    from simulator.costmodel.ops import Op

    ops = (Op("fc1", "gemm", 1.0), Op("moe_dispatch", "ep_comm", 0.2), Op("moe_combine", "ep_comm", 0.2))
    hidden = {o.name: o.time for o in overlap_a2a(ops, 0.1)}
    assert hidden["fc1"] == 1.0
    assert hidden["moe_dispatch"] + hidden["moe_combine"] == pytest.approx(0.4 * 0.1)    # all hidden, SMs shared
    long = (Op("fc1", "gemm", 1.0), Op("moe_dispatch", "ep_comm", 0.75), Op("moe_combine", "ep_comm", 0.75))
    out = {o.name: o.time for o in overlap_a2a(long, 0.1)}
    assert out["moe_dispatch"] + out["moe_combine"] == pytest.approx(0.5 + 1.0 * 0.1)   # 0.5 s outlasts it


def test_a2a_overlap_needs_expert_parallelism():
    from simulator.errors import CapsimError
    from simulator.scenario import parse_scenario
    from simulator.training import simulate_training

    doc = {"kind": "training", "model": "qwen3-30b-a3b", "hardware": "h100-sxm", "cluster": {"nodes": 1},
           "training": {"seq_len": 4096, "global_batch": 32, "micro_batch": 1, "moe_a2a_overlap": True}}
    with pytest.raises(CapsimError, match="moe_a2a_overlap overlaps the expert-parallel all-to-alls; ep=1"):
        simulate_training(parse_scenario(doc))
    on = simulate_training(parse_scenario(doc, ["parallelism.ep=8", "parallelism.etp=1"]))
    off = simulate_training(parse_scenario(doc, ["parallelism.ep=8", "parallelism.etp=1", "training.moe_a2a_overlap=false"]))
    assert on.time_breakdown_s.ep_comm_s < off.time_breakdown_s.ep_comm_s


def test_a_host_sync_stops_the_host_running_ahead():
    from simulator.costmodel.ops import HOST_SYNC, Op, dispatched_time

    # two 100 us kernels then a sync then two more, host 10 us per kernel: without the sync the host
    # issues all four in 40 us and the GPU runs back to back (10 + 400 us); with it the host waits for
    # the GPU at 210 us and issues the third kernel 10 us later: 210 + 10 + 100 + 100 = 420 us
    k = [Op("a", "gemm", 100e-6), Op("b", "gemm", 100e-6)]
    plain = dispatched_time([((*k, *k), 1)], 10e-6)
    synced = dispatched_time([((*k, Op("s", HOST_SYNC, 0.0), *k), 1)], 10e-6)
    assert plain == pytest.approx(410e-6)
    assert synced == pytest.approx(420e-6)
    # the dropless dispatcher syncs before its forward all-to-all only (the backward knows the splits)
    po = layer_ops(QWEN, get_profile("h100-sxm"), Layout(dp=8, ep=8, etp=1), 1, 4096)
    names = [o.name for o in po.fwd]
    assert names.index("moe_sync") == names.index("moe_dispatch") - 1
    assert not any(o.kind == HOST_SYNC for o in po.bwd)


def test_capacity_factor_keeps_or_pads_the_token_expert_pairs():
    from simulator.costmodel.moe_training import host_waits, kept_pairs

    # 4,096 tokens, top-8, 128 experts: 256 pairs per expert from this rank when balanced
    assert kept_pairs(4096, 8, 128, None, False) == 32768                 # dropless: every pair
    assert kept_pairs(4096, 8, 128, 0.5, False) == 16384                  # half the capacity: half dropped
    assert kept_pairs(4096, 8, 128, 1.25, False) == 32768                 # room to spare: nothing dropped
    assert kept_pairs(4096, 8, 128, 1.25, True) == 128 * 320              # padded: ceil(1.25 · 256) rows each
    assert kept_pairs(100, 8, 128, 1.0, True) == 128 * 7                  # ceil(800 / 128) = 7 rows each
    assert host_waits(Layout(ep=8, etp=1, dp=8))
    assert host_waits(Layout(ep=8, etp=1, dp=8, moe_capacity_factor=1.0))
    assert not host_waits(Layout(ep=8, etp=1, dp=8, moe_capacity_factor=1.0, moe_pad_to_capacity=True))


def test_padded_capacity_has_static_shapes_so_the_host_never_waits():
    from simulator.costmodel.ops import HOST_SYNC

    hw = get_profile("h100-sxm")
    dropless = layer_ops(QWEN, hw, Layout(dp=8, ep=8, etp=1), 1, 4096)
    padded = layer_ops(QWEN, hw, Layout(dp=8, ep=8, etp=1, moe_capacity_factor=1.0, moe_pad_to_capacity=True), 1, 4096)
    assert any(o.kind == HOST_SYNC for o in dropless.fwd)
    assert not any(o.kind == HOST_SYNC for o in padded.fwd)
    # capacity factor 1 on balanced routing: the same rows, the same GEMMs and all-to-alls
    d, p = ({o.name: o.time for o in x.fwd} for x in (dropless, padded))
    assert p["expert_fc1"] == pytest.approx(d["expert_fc1"])
    assert p["moe_dispatch"] == pytest.approx(d["moe_dispatch"])
    # half the capacity drops half the pairs: half the rows per expert, half the all-to-all volume
    half = {o.name: o for o in layer_ops(QWEN, hw, Layout(dp=8, ep=8, etp=1, moe_capacity_factor=0.5), 1, 4096).fwd}
    assert half["expert_fc1"].flops == pytest.approx(0.5 * {o.name: o for o in dropless.fwd}["expert_fc1"].flops)
    assert half["moe_dispatch"].time < d["moe_dispatch"]
    assert half["moe_permute"].time < d["moe_permute"]
    # without EP a dropless layer still syncs: the grouped GEMM's m_splits must reach the host ("before_finish")
    assert any(o.kind == HOST_SYNC for o in layer_ops(QWEN, hw, Layout(), 1, 4096).fwd)


def test_padding_needs_a_capacity_factor():
    from simulator.errors import CapsimError
    from simulator.scenario import parse_scenario
    from simulator.training import simulate_training

    doc = {"kind": "training", "model": "qwen3-30b-a3b", "hardware": "h100-sxm", "cluster": {"nodes": 1},
           "parallelism": {"ep": 8, "etp": 1},
           "training": {"seq_len": 4096, "global_batch": 32, "micro_batch": 1, "moe_pad_to_capacity": True}}
    with pytest.raises(CapsimError, match="moe_pad_to_capacity .* set training.moe_capacity_factor"):
        simulate_training(parse_scenario(doc))
    padded = simulate_training(parse_scenario(doc, ["training.moe_capacity_factor=1.0"]))
    dropless = simulate_training(parse_scenario(doc, ["training.moe_pad_to_capacity=false"]))
    assert padded.iteration_time_s <= dropless.iteration_time_s


def test_an_unpadded_capacity_syncs_before_the_permute():
    hw = get_profile("h100-sxm")
    names = [o.name for o in layer_ops(QWEN, hw, Layout(dp=8, ep=8, etp=1, moe_capacity_factor=1.0), 1, 4096).fwd]
    assert names.index("router") < names.index("moe_sync") < names.index("moe_permute") < names.index("moe_dispatch")


def test_grouped_experts_cost_the_host_one_launch_share_per_further_expert():
    from simulator.costmodel.moe_training import EXPERT_LAUNCH

    hw = get_profile("b200")
    # EP8: 16 local experts. Each GEMM (and in FP8 its quantization) issues once per expert: the first a
    # modelled op, the other 15 EXPERT_LAUNCH each; the backward's dgrad and wgrad the same
    po = layer_ops(QWEN, hw, Layout(dp=8, ep=8, etp=1, precision="fp8"), 1, 4096)
    fwd, bwd = ({o.name: o for o in ops} for ops in (po.fwd, po.bwd))
    want = 1 + 15 * EXPERT_LAUNCH
    for name in ("expert_fc1", "expert_fc1_quantize", "expert_fc2"):
        assert fwd[name].launches == pytest.approx(want)
    for name in ("expert_fc1_dgrad", "expert_fc1_wgrad", "expert_fc2_quantize_bwd"):
        assert bwd[name].launches == pytest.approx(want)
    assert fwd["qkv"].launches == 1.0 and fwd["router"].launches == 1.0     # one kernel each
    # one expert per rank (EP = experts) issues one GEMM: a plain linear layer's launch
    one = {o.name: o for o in layer_ops(QWEN, hw, Layout(dp=128, ep=128, etp=1), 1, 4096).fwd}
    assert one["expert_fc1"].launches == 1.0


def test_a_launch_share_is_host_time_the_gpu_waits_for_when_it_runs_ahead():
    from simulator.costmodel.ops import Op, dispatched_time

    # host 100 us per launch, two 10 us kernels: issued at 100 and 200 us, done at 210 us
    a, b = Op("a", "gemm", 10e-6), Op("b", "gemm", 10e-6)
    assert dispatched_time([((a, b), 1)], 100e-6) == pytest.approx(210e-6)
    # the second replayed from a graph the first launched (0 launches): 100 + 10 + 10 us
    assert dispatched_time([((a, Op("b", "gemm", 10e-6, launches=0.0)), 1)], 100e-6) == pytest.approx(120e-6)
    # a kernel of 2.5 launches (16 experts at 0.1 more each): issued at 250 us
    assert dispatched_time([((Op("g", "gemm", 10e-6, launches=2.5),), 1)], 100e-6) == pytest.approx(260e-6)
    # repeated blocks advance by the steady increment: 5 layers of (a, b) at 200 us each, + 10 us
    assert dispatched_time([((a, b), 5)], 100e-6) == pytest.approx(1010e-6)


def test_cuda_graph_scopes_replace_their_kernels_launches_by_one_per_captured_run():
    hw = get_profile("b200")
    base = dict(dp=8, ep=8, etp=1, precision="fp8")
    eager = layer_ops(QWEN, hw, Layout(**base), 1, 4096)
    part = layer_ops(QWEN, hw, Layout(**base, cuda_graph_scope=frozenset({"attn", "moe_router", "moe_preprocess"})),
                     1, 4096)
    names = [o.name for o in part.fwd]
    launches = {o.name: o.launches for o in part.fwd}
    # norm1 ... the attention's residual add, norm2, the router and the permute run back to back: one
    # graph (Megatron-Core captures the layer up to MoELayer.preprocess as one), one launch
    captured = part.fwd[:names.index("moe_permute") + 1]
    assert sum(o.launches for o in captured) == 1.0 and captured[0].name == "norm1"
    assert launches["router"] == 0.0 and launches["moe_permute"] == 0.0
    # the host sync, the all-to-alls and the experts stay eager, with their own launches
    assert launches["moe_dispatch"] == 1.0
    assert launches["expert_fc1"] == pytest.approx({o.name: o.launches for o in eager.fwd}["expert_fc1"])
    # the GPU work is the same kernels at the same times; only the host's share changes
    assert sum(o.time for o in part.fwd) == pytest.approx(sum(o.time for o in eager.fwd))
    assert sum(o.time for o in part.bwd) == pytest.approx(sum(o.time for o in eager.bwd))
    # the backward of the captured parts is captured too (Transformer Engine graphs both passes)
    back = {o.name: o.launches for o in part.bwd}
    assert back["qkv_dgrad"] == 0.0 and back["qkv_wgrad"] == 0.0 and back["router_wgrad"] == 0.0
    assert back["expert_fc1_dgrad"] == pytest.approx(launches["expert_fc1"])
    # a full-layer graph over padded experts: the whole pass is one launch
    full = layer_ops(QWEN, hw, Layout(**base, moe_capacity_factor=1.0, moe_pad_to_capacity=True,
                                      cuda_graph_scope=frozenset({"full"})), 1, 4096)
    assert sum(o.launches for o in full.fwd) == 1.0
    assert sum(o.launches for o in full.bwd) == 1.0


def test_graphing_the_routed_experts_needs_static_shapes():
    from simulator.errors import CapsimError
    from simulator.scenario import parse_scenario
    from simulator.training import simulate_training

    doc = {"kind": "training", "model": "qwen3-30b-a3b", "hardware": "b200", "cluster": {"nodes": 1},
           "parallelism": {"ep": 8, "etp": 1},
           "training": {"seq_len": 4096, "global_batch": 64, "micro_batch": 1, "cuda_graph_scope": ["moe"]}}
    with pytest.raises(CapsimError,
                       match=r"cuda_graph_scope captures the routed experts \(moe or full\).*training.moe_pad_to_capacity"):
        simulate_training(parse_scenario(doc))
    padded = ["training.moe_capacity_factor=1.0", "training.moe_pad_to_capacity=true"]
    graphed = simulate_training(parse_scenario(doc, padded))
    eager = simulate_training(parse_scenario(doc, [*padded, "training.cuda_graph_scope=[]"]))
    # the same GPU work, less host time: a host-bound micro-batch 1 layer gets faster, never slower
    assert graphed.iteration_time_s < eager.iteration_time_s
    partial = simulate_training(parse_scenario(doc, ["training.cuda_graph_scope=[attn,moe_router,moe_preprocess]"]))
    dropless = simulate_training(parse_scenario(doc, ["training.cuda_graph_scope=[]"]))
    assert partial.iteration_time_s <= dropless.iteration_time_s


def test_routed_experts_sync_and_shard_over_the_expert_data_parallel_group():
    from simulator.costmodel.collectives import Group

    # GPT-OSS-120B's B200 recipe: 64 GPUs, tp 1, dp 64, EP8 inside each node: the experts' grid
    # etp·ep·edp = 1·8·8 leaves edp = 8 ranks, every 8th one: one per node
    lay = Layout(dp=64, ep=8, etp=1, gpus_per_node=8)
    assert lay.expert_grad_ranks == 8 and lay.expert_grad_group == Group(8, 1)
    assert lay.grad_group == Group(64, 8)
    # Qwen3-235B's H100 recipe: tp 2, dp 16 per stage, EP32 with etp 1 folds into all 32: no expert DP
    assert Layout(tp=2, dp=16, ep=32, etp=1).expert_grad_ranks == 1
    # ep 4 of 8 GPUs per node: two expert-DP ranks per node
    assert Layout(dp=16, ep=4, etp=1).expert_grad_group == Group(4, 2)


def test_expert_optimizer_states_shard_over_fewer_ranks_than_the_dense_ones():
    from simulator.scenario import parse_scenario
    from simulator.training import simulate_training
    from simulator.training.layout import partition, stage_expert_params, stage_params
    from simulator.training.simulate import resolve_layout, step_schedule

    doc = {"kind": "training", "model": "qwen3-30b-a3b", "hardware": "h100-sxm", "cluster": {"nodes": 2},
           "parallelism": {"ep": 8, "etp": 1, "zero_stage": 1},
           "training": {"seq_len": 4096, "global_batch": 64, "micro_batch": 1, "precision": "bf16"}}
    sc = parse_scenario(doc)
    model = get_model("qwen3-30b-a3b")
    hw = get_profile("h100-sxm")
    lay, mb = resolve_layout(sc, model, hw, None)
    stages = partition(model, lay, step_schedule(sc, mb, lay.dp))
    params, experts = stage_params(stages[0]), stage_expert_params(stages[0])
    # 48 layers of 128 experts, 3 matrices of 2048 x 768 each, over EP8: 16 experts per rank
    assert experts == pytest.approx(48 * 16 * 3 * 2048 * 768)
    res = simulate_training(sc)
    # bf16 mixed precision: 12 bytes of Adam state per parameter (fp32 master, m, v), sharded over the
    # 16 data-parallel ranks for the dense part and over edp = 16 / 8 = 2 for the experts
    want = 12 * ((params - experts) / 16 + experts / 2)
    assert res.memory_per_gpu_gib.optimizer * 2**30 == pytest.approx(want, rel=1e-4)   # the result rounds GiB


def test_current_scaling_casts_issue_amax_and_scale_kernels_too():
    from simulator.costmodel.moe_training import EXPERT_LAUNCH, cast_launches

    # one dense linear: the cast's own launch plus two more kernels (amax, scale) at the expert share
    assert cast_launches(1.0, 1, "current") == pytest.approx(1 + 2 * EXPERT_LAUNCH)
    assert cast_launches(1.0, 1, "delayed") == 1.0
    hw = get_profile("h100-sxm")
    cur = {o.name: o for o in layer_ops(QWEN, hw, Layout(dp=8, ep=8, etp=1, precision="fp8", fp8_recipe="current"),
                                        1, 4096).fwd}
    # 16 local experts: the grouped GEMM's 1 + 15 shares, and 2 more kernels for each expert's tensor
    assert cur["expert_fc1_quantize"].launches == pytest.approx(1 + 15 * EXPERT_LAUNCH + 32 * EXPERT_LAUNCH)
    assert cur["expert_fc1"].launches == pytest.approx(1 + 15 * EXPERT_LAUNCH)


def test_the_bridge_recipe_example_lands_near_its_measured_steps():
    """examples/train_qwen3_moe_b200.yaml is Megatron-Bridge's 26.04 Qwen3-30B-A3B B200 recipe (measured
    9.66 s per step, bench/data/megatron_bridge_perf_summary_h100_b200.csv); the 26.02 recipe, micro-batch
    1 with the alltoall dispatcher and graphs over the router and permute only, measured 27.05 s."""
    from pathlib import Path

    import yaml

    from simulator.scenario import load_scenario, parse_scenario, scenario_yaml
    from simulator.training import simulate_training

    path = Path(__file__).resolve().parents[1] / "examples" / "train_qwen3_moe_b200.yaml"
    sc = load_scenario(path)
    assert simulate_training(sc).iteration_time_s == pytest.approx(9.66, rel=0.10)
    old = parse_scenario(yaml.safe_load(scenario_yaml(sc)), ["training.micro_batch=1", "training.moe_dispatcher=alltoall",
                                                             "training.cuda_graph_scope=[moe_router,moe_preprocess]"])
    res = simulate_training(old)
    assert res.iteration_time_s == pytest.approx(27.05, rel=0.15)
    # host-bound: the host's exposed time is the largest part of the micro-batch 1 step
    assert res.time_breakdown_s.host_overhead_s > res.time_breakdown_s.ep_comm_s


def test_selective_recompute_reruns_the_named_modules_and_keeps_less():
    from simulator.costmodel.memory import activation_bytes_per_layer

    hw = get_profile("b200")
    base = dict(dp=8, ep=8, etp=1, precision="bf16")
    # GPT-OSS's recipes: [layernorm, moe_act]: the two norms and the experts' activation run again
    po = layer_ops(QWEN, hw, Layout(**base, recompute="selective",
                                    recompute_modules=frozenset({"layernorm", "moe_act"})), 1, 4096)
    assert [o.name for o in po.recompute] == ["norm1", "norm2", "expert_activation"]
    # Megatron-Core's default, core_attn, reruns the attention core: with flash attention its forward kernel
    core = layer_ops(QWEN, hw, Layout(**base, recompute="selective"), 1, 4096)
    assert [o.name for o in core.recompute] == ["attention"]
    # moe reruns the MoE half after its norm, the dispatcher's host sync and all-to-alls included
    moe = [o.name for o in layer_ops(QWEN, hw, Layout(**base, recompute="selective",
                                                      recompute_modules=frozenset({"moe"})), 1, 4096).recompute]
    assert moe[0] == "router" and "moe_sync" in moe and "moe_dispatch" in moe and moe[-1] == "moe_unpermute"
    # memory: per token and hidden unit, the norms' two 16-bit outputs (4 bytes) and the experts' activation
    # output (2 bytes x 768 / 2048 x top-8 = 6 bytes) are no longer kept
    sbh = 4096 * 1 * 2048
    keep = activation_bytes_per_layer(QWEN, Layout(**base), 1, 4096)
    less = activation_bytes_per_layer(QWEN, Layout(**base, recompute="selective",
                                                   recompute_modules=frozenset({"layernorm", "moe_act"})), 1, 4096)
    assert keep - less == pytest.approx(sbh * (4 + 2 * 768 / 2048 * 8))


def test_recompute_modules_need_selective_recompute_and_an_moe_model_for_moe_modules():
    from simulator.errors import CapsimError
    from simulator.scenario import parse_scenario
    from simulator.training import simulate_training

    doc = {"kind": "training", "model": "qwen3-30b-a3b", "hardware": "b200", "cluster": {"nodes": 1},
           "parallelism": {"ep": 8, "etp": 1},
           "training": {"seq_len": 4096, "global_batch": 64, "micro_batch": 1, "recompute_modules": ["moe_act"]}}
    with pytest.raises(CapsimError, match="recompute_modules names what selective recompute recomputes; "
                                          "training.recompute is none"):
        simulate_training(parse_scenario(doc))
    assert simulate_training(parse_scenario(doc, ["training.recompute=selective"])).fits_in_memory
    dense = parse_scenario(doc, ["training.recompute=selective", "model=llama-3.1-8b", "parallelism.ep=1",
                                 "parallelism.etp=null"])
    with pytest.raises(CapsimError, match=r"recompute_modules \['moe_act'\] recompute MoE modules; .* is dense"):
        simulate_training(dense)
    mla = parse_scenario(doc, ["training.recompute=selective", "training.recompute_modules=[mla_up_proj]"])
    with pytest.raises(CapsimError, match="mla_up_proj cannot be recomputed on its own here"):
        simulate_training(mla)
