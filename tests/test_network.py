"""cluster.network (issue 17 item 7): the NICs per node, their speed and the fabric's taper set the
collectives between nodes. Values by hand."""

from __future__ import annotations

import math

import pytest

from simulator.catalog import get_model
from simulator.costmodel.collectives import Group, collective_time
from simulator.hardware import get_profile
from simulator.scenario import parse_scenario
from simulator.training import simulate_training
from simulator.training.network import per_gpu_busbw_gb_s, with_network
from simulator.training.stack import GRAD_BUCKET_PARAMS

# TP8 inside each of 8 nodes: the data-parallel group is one GPU per node, all-reduced after the backward
DOC = {"kind": "training", "model": "megatron-7.5b", "hardware": "h100-sxm", "cluster": {"nodes": 8},
       "parallelism": {"tp": 8}, "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1,
                                               "overlap_grad_reduce": False}}


def _run(network: dict | None):
    doc = {**DOC, "cluster": {**DOC["cluster"], **({"network": network} if network else {})}}
    return simulate_training(parse_scenario(doc))


def test_the_reference_network_is_the_profiles():
    # HGX H100: one 400 Gb/s NIC per GPU, 0.92 of line rate = the profile's 46 GB/s
    assert per_gpu_busbw_gb_s(nics_per_node=8, nic_gbps=400, gpus_per_node=8, oversubscription=1) == pytest.approx(46.0)
    assert _run({"nics_per_node": 8, "nic_gbps": 400}).iteration_time_s == _run(None).iteration_time_s


def test_four_100g_nics_for_eight_gpus_slow_the_gradient_all_reduce():
    # each GPU's share: 0.92 x 4 x 100 Gb/s / 8 bits / 8 GPUs = 5.75 GB/s
    assert per_gpu_busbw_gb_s(nics_per_node=4, nic_gbps=100, gpus_per_node=8, oversubscription=1) == pytest.approx(5.75)
    r = _run({"nics_per_node": 4, "nic_gbps": 100, "latency_us": 10})
    hw = with_network(get_profile("h100-sxm"), nics_per_node=4, nic_gbps=100, gpus_per_node=8, latency_us=10)
    params = get_model("megatron-7.5b").total_params() / 8            # one TP shard
    nb = math.ceil(params / GRAD_BUCKET_PARAMS)
    bucket = params * 4 / nb                                          # fp32 main gradients
    # ring over 8 nodes: 2·7/8 of the bytes at 5.75 GB/s plus 14 steps of 10 us, per bucket
    ring = 2 * 7 / 8 * bucket / 5.75e9 + 14 * 10e-6
    assert collective_time(hw, "all_reduce", bucket, Group(8, 1)) == pytest.approx(ring)
    assert r["time_breakdown_s"]["dp_comm_exposed_s"] == pytest.approx(nb * ring, rel=1e-4)


def test_a_tapered_fabric_divides_the_share():
    half = per_gpu_busbw_gb_s(nics_per_node=8, nic_gbps=400, gpus_per_node=8, oversubscription=2)
    assert half == pytest.approx(23.0)
    assert _run({"nics_per_node": 8, "nic_gbps": 400, "oversubscription": 2}).iteration_time_s > _run(None).iteration_time_s


def test_a_scalar_all_reduce_is_a_tree_of_step_latencies():
    # 64 GPUs on 8 nodes: up and down through 8 ranks (3 levels) and 8 nodes (3 levels)
    hw = get_profile("h100-sxm")
    from simulator.costmodel.collectives import scalar_all_reduce

    t = scalar_all_reduce(hw, Group(64, 8))
    assert t == pytest.approx(2 * (3 * hw.intra_node.step_latency_us + 3 * hw.inter_node.step_latency_us) * 1e-6)
    assert scalar_all_reduce(hw, Group(1, 1)) == 0.0
    # 16,384 GPUs on 2,048 nodes: 11 levels between nodes, so it stays in microseconds
    assert scalar_all_reduce(hw, Group(16384, 8)) < 200e-6


def test_a_tied_embedding_under_a_pipeline_all_reduces_its_gradient_between_the_end_stages():
    base = {"kind": "training", "model": "megatron-1.7b", "hardware": "h100-sxm", "cluster": {"nodes": 1},
            "parallelism": {"tp": 1, "pp": 2, "dp": 4},
            "training": {"seq_len": 2048, "global_batch": 32, "micro_batch": 1}}
    model = get_model("megatron-1.7b")
    assert model.tie_embeddings
    tied = simulate_training(parse_scenario(base))
    untied = simulate_training(parse_scenario({**base, "model": {**model.model_dump(), "tie_embeddings": False}}))
    hw = get_profile("h100-sxm")
    # the fp32 gradient of the vocab x hidden matrix, all-reduced over the 2 end stages in the node
    ar = collective_time(hw, "all_reduce", model.vocab * model.hidden * 4, Group(2, 2))
    assert tied["time_breakdown_s"]["optimizer_s"] - untied["time_breakdown_s"]["optimizer_s"] == pytest.approx(
        ar, rel=0.05, abs=2e-5)
