"""ZeRO/FSDP with pipeline parallelism, hybrid sharding (HSDP) and the overlapped parameter gather of
a sharded optimizer (issue 17, items 1 and 4). Values by hand from the parameter counts and the
collective model."""

from __future__ import annotations

import pytest

from simulator.catalog import get_model
from simulator.costmodel.collectives import Group, collective_time, scalar_all_reduce
from simulator.costmodel.layout import Layout
from simulator.costmodel.ops import overlap_slowdown
from simulator.errors import CapsimError
from simulator.hardware import get_profile
from simulator.scenario import parse_scenario
from simulator.training import simulate_training
from simulator.training.stack import GRAD_BUCKET_PARAMS

GIB = 2**30
# megatron-7.5b on 16 A100s: TP2 PP2 DP4, one micro-batch per rank and step pair
PP = {"kind": "training", "model": "megatron-7.5b", "hardware": "a100-sxm-80gb",
      "cluster": {"nodes": 2, "gpus_per_node": 8}, "parallelism": {"tp": 2, "pp": 2},
      "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1}}


def _run(doc: dict, *sets: str):
    return simulate_training(parse_scenario(doc, list(sets)))


def _stage_params(r) -> float:
    """Parameters one GPU of the result's most loaded stage holds, from its 16-bit weights at ZeRO-0."""
    return r["memory_per_gpu_gib"]["params"] * GIB / 2


def test_zero3_with_a_pipeline_keeps_weights_and_gradients_whole_and_shards_the_optimizer():
    z0 = _run(PP)
    n = _stage_params(z0)
    z3 = _run(PP, "parallelism.zero_stage=3")          # torchtitan's default under PP: no reshard
    mem = z3["memory_per_gpu_gib"]
    assert mem["params"] * GIB == pytest.approx(2 * n, rel=1e-3)       # gathered over the whole step
    assert mem["grads"] * GIB == pytest.approx(4 * n, rel=1e-3)        # fp32, accumulated unsharded
    assert mem["optimizer"] * GIB == pytest.approx(12 * n / 4, rel=1e-3)
    resharded = _run(PP, "parallelism.zero_stage=3", "parallelism.reshard_after_forward=true")["memory_per_gpu_gib"]
    assert resharded["params"] * GIB == pytest.approx(2 * n / 4, rel=1e-3)
    assert resharded["grads"] == mem["grads"]
    # gathering before every pass costs more than once per step
    again = _run(PP, "parallelism.zero_stage=3", "parallelism.reshard_after_forward=true")
    assert again["iteration_time_s"] > z3["iteration_time_s"]


def test_zero2_under_a_pipeline_is_zero1():
    """Gradients accumulate unsharded until each chunk's last micro-batch, then reduce-scatter, and the
    updated weights are all-gathered: exactly the distributed optimizer."""
    z1, z2 = _run(PP, "parallelism.zero_stage=1"), _run(PP, "parallelism.zero_stage=2")
    assert z2["iteration_time_s"] == z1["iteration_time_s"]
    assert z2["memory_per_gpu_gib"] == z1["memory_per_gpu_gib"]


def test_zero3_without_a_pipeline_reshards_by_default_and_can_keep_the_forwards_gather():
    doc = {**PP, "parallelism": {"tp": 2, "pp": 1}}
    n = _stage_params(_run(doc))
    default = _run(doc, "parallelism.zero_stage=3")
    assert default["memory_per_gpu_gib"]["params"] * GIB == pytest.approx(2 * n / 8, rel=1e-3)
    assert default["memory_per_gpu_gib"]["grads"] * GIB == pytest.approx(4 * n / 8, rel=1e-3)
    kept = _run(doc, "parallelism.zero_stage=3", "parallelism.reshard_after_forward=false")
    assert kept["memory_per_gpu_gib"]["params"] * GIB == pytest.approx(2 * n, rel=1e-3)
    assert kept["time_breakdown_s"]["dp_comm_exposed_s"] <= default["time_breakdown_s"]["dp_comm_exposed_s"]


def test_hybrid_sharding_shards_over_its_group_and_all_reduces_the_shards():
    # 32 GPUs, TP1 DP32 ZeRO-1: shard groups of 8 (one node each) and 4 replicas, one per node
    lay = Layout(dp=32, zero_stage=1, dp_shard=8)
    assert lay.shard_group == Group(8, 8) and lay.replica_group == Group(4, 1)
    assert Layout(dp=32, zero_stage=1).shard_group == Group(32, 8)
    doc = {"kind": "training", "model": "megatron-1.7b", "hardware": "a100-sxm-80gb",
           "cluster": {"nodes": 4, "gpus_per_node": 8}, "parallelism": {"zero_stage": 1},
           "training": {"seq_len": 2048, "global_batch": 32, "micro_batch": 1, "overlap_grad_reduce": False}}
    full = _run(doc)
    hsdp = _run(doc, "parallelism.dp_shard=8")
    n = _stage_params(full)
    assert full["memory_per_gpu_gib"]["optimizer"] * GIB == pytest.approx(12 * n / 32, rel=1e-3)
    assert hsdp["memory_per_gpu_gib"]["optimizer"] * GIB == pytest.approx(12 * n / 8, rel=1e-3)
    # reduced after the backward, so exposed: per bucket a reduce-scatter in the node and an all-reduce
    # of its eighth across the 4 nodes; the weights' all-gather after the optimizer stays in the node
    hw = get_profile("a100-sxm-80gb")
    nb = -(-n // GRAD_BUCKET_PARAMS)
    bucket = n * 4 / nb
    sync = nb * (collective_time(hw, "reduce_scatter", bucket, Group(8, 8))
                 + collective_time(hw, "all_reduce", bucket / 8, Group(4, 1)))
    assert hsdp["time_breakdown_s"]["dp_comm_exposed_s"] == pytest.approx(sync, rel=2e-3)
    gather_8, gather_32 = (collective_time(hw, "all_gather", n * 2, g) for g in (Group(8, 8), Group(32, 8)))
    norm = scalar_all_reduce(hw, Group(32, 8))     # the gradient norm over all 32 ranks, in both
    adam = ((hsdp["time_breakdown_s"]["optimizer_s"] - gather_8 - norm)
            / (full["time_breakdown_s"]["optimizer_s"] - gather_32 - norm))
    assert adam == pytest.approx(4, rel=0.02)        # the optimizer updates a quarter as many shards


def test_overlapped_parameter_gather_exposes_its_first_bucket_and_slows_the_forward_under_the_rest():
    # one 8-GPU node, ZeRO-1 over 8: a long forward (micro-batch 8 of 2048 tokens) hides every bucket
    # but the first
    doc = {"kind": "training", "model": "megatron-1.7b", "hardware": "a100-sxm-80gb",
           "cluster": {"nodes": 1, "gpus_per_node": 8}, "parallelism": {"zero_stage": 1},
           "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 8}}
    plain = _run(doc)
    over = _run(doc, "training.overlap_param_gather=true")
    hw = get_profile("a100-sxm-80gb")
    n = _stage_params(plain)
    nb = -(-n // GRAD_BUCKET_PARAMS)
    bucket = collective_time(hw, "all_gather", n * 2 / nb, Group(8, 8))
    whole = collective_time(hw, "all_gather", n * 2, Group(8, 8))
    saved = whole - (bucket + (nb - 1) * bucket * overlap_slowdown(hw))
    assert plain["iteration_time_s"] - over["iteration_time_s"] == pytest.approx(saved, rel=1e-3)
    assert saved > 0.5 * whole


@pytest.mark.parametrize("sets,msg", [
    (["parallelism.reshard_after_forward=false"], "reshard_after_forward applies to zero_stage 3"),
    (["parallelism.dp_shard=2"], "needs zero_stage >= 1"),
    (["parallelism.zero_stage=1", "parallelism.dp_shard=3"], "dp_shard=3 must divide the dp·cp = 4·1 = 4"),
    (["training.overlap_param_gather=true"], "zero_stage=0 has none"),
    (["parallelism.zero_stage=3", "training.overlap_param_gather=true"], "gathers every layer before it runs"),
])
def test_sharding_keys_that_do_not_apply_are_errors(sets, msg):
    with pytest.raises(CapsimError, match=msg):
        _run(PP, *sets)


def test_llama3_405b_layout_runs_with_fsdp_under_its_pipeline():
    """Llama 3 405B's layout: TP8 PP16 with FSDP over the data-parallel ranks, 8k tokens (Dubey et al.
    2024, section 3.3.2, 16,384 H100s with DP 128), refused before ZeRO-3 could run under a pipeline.
    Weights (2 B) and fp32 gradients (4 B) stay whole per stage: 6 B of a stage's parameters."""
    doc = {"kind": "training", "model": "llama-3.1-405b", "hardware": "h100-sxm",
           "cluster": {"nodes": 2048, "gpus_per_node": 8},
           "parallelism": {"tp": 8, "pp": 16, "zero_stage": 3, "sequence_parallel": True},
           "training": {"seq_len": 8192, "global_batch": 2048, "micro_batch": 1}}
    r = _run(doc)
    assert r["layout"]["dp"] == 128
    params = get_model("llama-3.1-405b").total_params()
    mem = r["memory_per_gpu_gib"]
    # the first stage also holds the embedding, and one layer fewer (126 layers on 16 stages)
    assert mem["params"] + mem["grads"] == pytest.approx(6 * params / 128 / GIB, rel=0.15)
    assert mem["optimizer"] * GIB == pytest.approx(12 * mem["params"] * GIB / 2 / 128, rel=1e-3)
