"""Training step simulation: pipeline schedules, communication, layouts, determinism."""

import json

import pytest

from simulator import parse_scenario, simulate_training
from simulator.errors import CapsimError
from simulator.training.schedules import Interleaved, OneFOneB
from simulator.training.step import PassTime, StageSpec, simulate_step

BASE = {"kind": "training", "model": "megatron-7.5b", "hardware": "a100-sxm-80gb",
        "cluster": {"nodes": 1, "gpus_per_node": 8},
        "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1, "recompute": "full"}}


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (8, 32)])
def test_1f1b_bubble_fraction(p, m):
    f, b = 1.0, 2.0
    st = [StageSpec([PassTime.of(f)], [PassTime.of(b)]) for _ in range(p)]
    t = simulate_step(st, OneFOneB(p, m)).iteration_time
    ideal = m * (f + b)
    assert (t - ideal) / ideal == pytest.approx((p - 1) / m)


@pytest.mark.parametrize("p,v,m", [(4, 2, 8), (4, 3, 16), (8, 4, 16)])
def test_interleaved_bubble_fraction(p, v, m):
    f, b = 1.0, 2.0
    st = [StageSpec([PassTime.of(f)] * v, [PassTime.of(b)] * v) for _ in range(p)]
    t = simulate_step(st, Interleaved(p, m, v)).iteration_time
    ideal = m * v * (f + b)
    assert (t - ideal) / ideal == pytest.approx((p - 1) / (v * m))


def test_zero_comm_step_equals_sum_of_compute():
    st = [StageSpec([PassTime.of(0.3)], [PassTime.of(0.7)], optimizer=0.05)]
    assert simulate_step(st, OneFOneB(1, 10)).iteration_time == pytest.approx(10 * 1.0 + 0.05)


def test_dp1_has_no_gradient_communication():
    r = simulate_training(parse_scenario(BASE, ["parallelism.tp=8"]))
    assert r["layout"]["dp"] == 1
    assert r["time_breakdown_s"]["dp_comm_exposed_s"] == 0
    r2 = simulate_training(parse_scenario(BASE, ["parallelism.tp=2", "parallelism.pp=1"]))
    assert r2["layout"]["dp"] == 4


def test_breakdown_sums_to_iteration_time():
    r = simulate_training(parse_scenario(BASE, ["parallelism.tp=2", "parallelism.pp=2"]))
    assert sum(r["time_breakdown_s"].values()) == pytest.approx(r["iteration_time_s"], rel=1e-4)


@pytest.mark.parametrize("override,msg", [
    (["parallelism.tp=3"], "does not divide the 8 GPUs"),
    (["parallelism.tp=2", "parallelism.dp=2"], "tp·pp·dp·cp = 2·1·2·1 = 4 but the cluster has 8 GPUs"),
    (["model=megatron-18.4b", "parallelism.tp=8", "cluster.nodes=1"], None),
    (["model={layers: 4, hidden: 512, heads: 8, vocab: 1000}", "parallelism.pp=8"],
     "4 layers, fewer than pp·virtual_stages = 8"),
    (["parallelism.tp=8", "training.global_batch=6", "training.micro_batch=4"], "global_batch=6 not divisible"),
])
def test_invalid_layouts(override, msg):
    sc = parse_scenario(BASE, override)
    if msg is None:  # 48 heads / tp 8 is fine: control case
        assert simulate_training(sc)["iteration_time_s"] > 0
        return
    with pytest.raises(CapsimError, match=msg):
        simulate_training(sc)


def test_heads_not_divisible():
    sc = parse_scenario({**BASE, "model": {"layers": 4, "hidden": 768, "heads": 12, "vocab": 1000}},
                        ["parallelism.tp=8"])
    with pytest.raises(CapsimError, match="12 attention heads, not divisible by tp=8"):
        simulate_training(sc)


def test_layout_that_does_not_fit_is_flagged():
    sc = parse_scenario({**BASE, "model": "gpt3-175b"}, ["parallelism.tp=8", "training.recompute=none"])
    r = simulate_training(sc)
    assert r["fits_in_memory"] is False and r["feasible"] is False
    assert "needs" in r["infeasible_reason"] and r["memory_per_gpu_gib"]["total"] > 80


def test_auto_micro_batch_picks_a_fitting_one():
    r = simulate_training(parse_scenario(BASE, ["parallelism.tp=8", "training.micro_batch=auto"]))
    assert r["fits_in_memory"] and r["layout"]["micro_batch"] >= 1


def test_same_scenario_same_json():
    doc = {**BASE, "cluster": {"nodes": 64}, "training": {**BASE["training"], "total_tokens": 2e10},
           "reliability": {"node_mtbf_hours": 500}, "parallelism": {"tp": 8}}
    a = simulate_training(parse_scenario(doc)).to_json()
    b = simulate_training(parse_scenario(doc)).to_json()
    assert a == b
    d = json.loads(a)
    assert d["failures_mean"] > 0 and d["cost_usd"] > 0 and d["energy_kwh"] > 0
    c = simulate_training(parse_scenario(doc, ["seed=5"])).to_json()
    assert json.loads(c)["time_to_train_days"] != d["time_to_train_days"]


def test_failures_lengthen_training():
    doc = {**BASE, "cluster": {"nodes": 64}, "training": {**BASE["training"], "total_tokens": 2e10},
           "parallelism": {"tp": 8}}
    clean = simulate_training(parse_scenario(doc))
    flaky = simulate_training(parse_scenario(doc, ["reliability.node_mtbf_hours=200"]))
    assert clean["goodput"] == pytest.approx(1.0, abs=1e-3)
    assert flaky["time_to_train_days"] > clean["time_to_train_days"]


def test_uneven_stages_shorten_the_ends():
    from simulator.training.layout import stage_layers

    counts = stage_layers(126, 32)  # Llama 3 405B on PP16 × 2 virtual stages
    assert sum(counts) == 126 and counts[0] == counts[-1] == 3 and set(counts[1:-1]) == {4}
    assert stage_layers(36, 8) == [4, 4, 5, 5, 5, 5, 4, 4]


def test_gradient_reduction_after_the_backward_is_fully_exposed():
    # One stage, 4 micro-batches of 1 s forward + 2 s backward, two 0.5 s gradient buckets.
    # Overlapped: the first bucket is ready halfway through the last backward (t = 11), the
    # second at its end (t = 12), so only the second is exposed. Not overlapped: both are.
    def step(overlap: bool) -> float:
        st = [StageSpec([PassTime.of(1.0)], [PassTime.of(2.0)], grad_buckets=[[0.5, 0.5]], overlap_grad=overlap)]
        return simulate_step(st, OneFOneB(1, 4)).iteration_time
    assert step(True) == pytest.approx(12.5)
    assert step(False) == pytest.approx(13.0)


def test_overlap_grad_reduce_switch_in_a_scenario():
    on = simulate_training(parse_scenario(BASE, ["parallelism.tp=2"]))
    off = simulate_training(parse_scenario(BASE, ["parallelism.tp=2", "training.overlap_grad_reduce=false"]))
    assert on["time_breakdown_s"]["dp_comm_exposed_s"] < off["time_breakdown_s"]["dp_comm_exposed_s"]
    assert off["iteration_time_s"] - on["iteration_time_s"] == pytest.approx(
        off["time_breakdown_s"]["dp_comm_exposed_s"] - on["time_breakdown_s"]["dp_comm_exposed_s"], rel=1e-3)


def test_optimizer_step_streams_50_bytes_per_parameter_in_fp16():
    # megatron-7.5b on tp=8 dp=1: each GPU updates a 1/8 of the parameters; the fp16 step makes the
    # passes listed in training/stack.py (50 B/param), bf16 skips unscaling (42 B/param).
    from simulator.catalog import get_model
    from simulator.costmodel.collectives import Group, scalar_all_reduce
    from simulator.hardware import get_profile

    hw = get_profile("a100-sxm-80gb")
    params = simulate_training(parse_scenario(BASE, ["parallelism.tp=8"]))
    per_gpu = params["params_b"] * 1e9 / 8
    bw = hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.memory
    for precision, nbytes in (("fp16", 50), ("bf16", 42)):
        r = simulate_training(parse_scenario(BASE, ["parallelism.tp=8", f"training.precision={precision}"]))
        # per-GPU params: the layers' share plus the embedding (vocab-parallel), within 0.1%; plus the
        # gradient norm's all-reduce over the 8 ranks (and in fp16 the overflow flag's)
        sync = scalar_all_reduce(hw, Group(8, 8)) * (2 if precision == "fp16" else 1)
        assert r["time_breakdown_s"]["optimizer_s"] == pytest.approx(per_gpu * nbytes / bw + sync, rel=2e-3)
    assert get_model("megatron-7.5b").total_params() == pytest.approx(params["params_b"] * 1e9, rel=1e-3)


def test_overlapped_reduction_slows_the_compute_it_hides_under():
    # As above, but the collective's kernels take a quarter of the GPU while they run: the hidden
    # first bucket (0.5 s) costs 0.125 s of compute; the exposed second one costs its full 0.5 s.
    st = [StageSpec([PassTime.of(1.0)], [PassTime.of(2.0)], grad_buckets=[[0.5, 0.5]], overlap_slowdown=0.25)]
    assert simulate_step(st, OneFOneB(1, 4)).iteration_time == pytest.approx(12.5 + 0.125)


def test_zero2_reduce_scatters_gradients_every_micro_batch():
    # ZeRO-2 keeps a shard of the gradients, so each micro-batch's backward reduce-scatters all of
    # them: with the reduction after each backward, m micro-batches expose m reduce-scatters.
    from simulator.catalog import get_model
    from simulator.costmodel.collectives import Group, collective_time
    from simulator.hardware import get_profile

    hw = get_profile("a100-sxm-80gb")
    params = get_model("megatron-7.5b").total_params()
    rs = collective_time(hw, "reduce_scatter", params * 4, Group(8, 8))
    for m in (1, 3):
        r = simulate_training(parse_scenario(BASE, ["parallelism.zero_stage=2", f"training.global_batch={8 * m}",
                                                    "training.overlap_grad_reduce=false"]))
        assert r["layout"]["microbatches_per_step"] == m
        assert r["time_breakdown_s"]["dp_comm_exposed_s"] == pytest.approx(m * rs, rel=1e-3)


def test_placement_decides_which_groups_share_a_node():
    from simulator.costmodel.layout import Layout

    # 64 GPUs on 8-GPU nodes, TP2 PP4 DP8. Megatron-Core's order (tp, cp, dp, pp; DeepSpeed's pipeline
    # topology too): 4 data-parallel ranks share a node (2 nodes per group) and every pipeline send
    # crosses the network.
    meg = Layout(tp=2, pp=4, dp=8)
    assert not meg.pp_same_node and meg.dp_group.per_node == 4 and meg.dp_group.nodes == 2
    # pipeline inside data parallel (tp, cp, pp, dp): a pipeline fills a node, so its sends stay on
    # NVLink, and each data-parallel group spans 8 nodes, one rank per node.
    inner = Layout(tp=2, pp=4, dp=8, placement=("tp", "cp", "pp", "dp"))
    assert inner.pp_same_node and inner.dp_group.per_node == 1 and inner.dp_group.nodes == 8
    assert inner.tp_group == meg.tp_group


def test_placement_must_name_each_dimension_once():
    with pytest.raises(CapsimError, match="must list tp, cp, pp and dp once each"):
        parse_scenario(BASE, ["parallelism.placement=[tp, pp, dp]"])


def test_context_and_expert_parallel_traffic_is_reported_apart_from_tensor_parallel():
    # One stage, so the breakdown covers every pass: m micro-batches × L layers × the layer's
    # collectives of each kind in its forward, recomputed forward and backward.
    from simulator.catalog import get_model
    from simulator.costmodel.collectives import collective_time
    from simulator.costmodel.layout import Layout
    from simulator.costmodel.transformer import layer_ops
    from simulator.hardware import get_profile

    hw = get_profile("a100-sxm-80gb")

    def tp_per_layer(model, lay):
        ops = layer_ops(model, hw, lay, 1, 2048)
        return sum(o.time for o in ops.fwd + ops.recompute + ops.bwd if o.kind == "tp_comm")

    # CP 2 (with TP 2, DP 2): m = 64 / 2 = 32, L = 36. Each layer all-gathers the other rank's keys
    # and values (2048 tokens × 2 × kv_dim / tp, 16-bit) in its forward, again in the recomputed
    # forward (full recompute), and in its backward the blocks once more and their gradients: 4 exchanges.
    model = get_model("megatron-7.5b")
    lay = Layout(tp=2, cp=2, dp=2, recompute="full")
    ag = collective_time(hw, "all_gather", 2048 * 2 * model.kv_dim / 2 * 2, lay.cp_group)
    bd = simulate_training(parse_scenario(BASE, ["parallelism.tp=2", "parallelism.cp=2"]))["time_breakdown_s"]
    assert list(bd)[1:4] == ["tp_comm_s", "cp_comm_s", "ep_comm_s"]
    assert bd["cp_comm_s"] == pytest.approx(32 * 36 * 4 * ag, rel=1e-5)
    assert bd["tp_comm_s"] == pytest.approx(32 * 36 * tp_per_layer(model, lay), rel=1e-5)
    assert bd["ep_comm_s"] == 0

    # EP 2 on Mixtral (TP 1, DP 8, no recompute): m = 64 / 8 = 8, L = 32. Each layer dispatches its
    # 2048 × top-2 token copies (hidden 4096, 16-bit) to the experts' ranks and combines them back,
    # in the forward and again in the backward: 4 all-to-alls; no tensor parallelism, no TP traffic.
    moe = get_model("mixtral-8x7b")
    lay = Layout(tp=1, dp=8, ep=2)
    a2a = collective_time(hw, "all_to_all", 2048 * 2 * 4096 * 2, lay.ep_group)
    bd = simulate_training(parse_scenario({**BASE, "model": "mixtral-8x7b"},
                                          ["parallelism.ep=2", "training.recompute=none"]))["time_breakdown_s"]
    assert bd["ep_comm_s"] == pytest.approx(8 * 32 * 4 * a2a, rel=1e-5)
    assert bd["tp_comm_s"] == 0 == tp_per_layer(moe, lay) and bd["cp_comm_s"] == 0


def test_breakdown_is_read_from_the_bottleneck_stage():
    """The last stage also runs the output layer and the loss over a 51k vocabulary, so it has the
    most work; stage 0 finishes last (the final backward) but mostly waits on it."""
    r = simulate_training(parse_scenario(BASE, ["parallelism.tp=2", "parallelism.pp=4",
                                                "training.global_batch=32"]))
    assert r["breakdown_stage"] == 3
    bd = r["time_breakdown_s"]
    assert sum(bd.values()) == pytest.approx(r["iteration_time_s"], rel=1e-4)
    # the bottleneck's bubble is at most 1F1B's (p-1)/m of its own work: it waits only for the warm-up
    # and drain of the others, which are faster
    own = r["iteration_time_s"] - bd["pipeline_bubble_s"] - bd["optimizer_s"]
    assert 0 < bd["pipeline_bubble_s"] <= own * 3 / 16 * 1.0001
