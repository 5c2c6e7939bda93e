"""KV offload tiers (simulator/serving/engines/offload.py): the LRU cascade by hand, the tiers' sizes,
and a prefix found partly on the GPU and partly in host memory costing exactly its transfer instead
of its prefill, worked out block by block."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import CapsimError, load_scenario, parse_scenario, simulate_serving
from simulator.serving.engines.offload import GIB, PCIE5_X16_GBPS, KVOffload, Tier, build_tiers, offload
from simulator.serving.simulate import prepare

ROOT = Path(__file__).resolve().parents[1]


def test_evicted_blocks_cascade_through_the_tiers_in_lru_order() -> None:
    cpu, nvme = Tier("cpu", 2, 1.0, 0.0), Tier("nvme", 1, 2.0, 0.0)
    for h in (1, 2, 3):
        offload([cpu, nvme], h)
    # cpu holds the two most recent; block 1 went on to nvme
    assert list(cpu.blocks) == [2, 3] and list(nvme.blocks) == [1]
    offload([cpu, nvme], 2)                       # already in cpu: refreshed, nothing moves
    assert list(cpu.blocks) == [3, 2] and cpu.stored == 3
    offload([cpu, nvme], 4)                       # cpu passes 3 to nvme, which drops 1
    assert list(cpu.blocks) == [2, 4] and list(nvme.blocks) == [3] and nvme.evicted == 1
    assert cpu.load_s(0) == 0.0 and nvme.load_s(3) == 6.0


def test_tier_sizes_and_transfer_rates() -> None:
    """Llama-3.1-8B in bf16 keeps 32 layers × 8 KV heads × 128 × 2 (K, V) × 2 bytes = 131,072 B per token:
    a 16-token block is 2 MiB, so 1 GiB of host memory holds 512 blocks, each 2 MiB / 63 GB/s over PCIe 5."""
    block = 131072 * 16
    cpu, nvme = build_tiers(KVOffload(cpu_gib=1, nvme_gib=4, nvme_gbps=6.8), block)
    assert cpu.capacity == 512 and nvme.capacity == 2048
    assert cpu.s_per_block == pytest.approx(block / (PCIE5_X16_GBPS * 1e9))
    assert nvme.s_per_block == pytest.approx(block / 63e9 + block / 6.8e9)
    assert nvme.latency_s == pytest.approx(110e-6) and cpu.latency_s == pytest.approx(10e-6)
    assert GIB == 2**30
    with pytest.raises(ValueError, match="nvme_gib and nvme_gbps go together"):
        KVOffload(cpu_gib=1, nvme_gbps=6.8)


def three_requests(offload_cfg: dict | None) -> dict:
    """Groups 0, 1, 0 (seed 0) of a 2,000-token system prompt plus 200 own tokens, 10 output tokens, seconds
    apart, on a GPU cache of 224 blocks of 16."""
    replica: dict = {"engine": "vllm", "kv_cache_fraction": 0.007}
    if offload_cfg is not None:
        replica["kv_offload"] = offload_cfg
    return {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "bf16",
            "replica": replica,
            "workload": {"arrival": {"process": "poisson", "rate_rps": 0.1, "requests": 3},
                         "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 10},
                         "shared_prefix": {"groups": 2, "system_prompt_tokens": 2000}},
            "seed": 0}


def test_a_prefix_in_host_memory_costs_its_transfer_instead_of_its_prefill() -> None:
    """By hand, blocks of 16 on a 224-block cache. A (group 0) computes 2,209 tokens: 138 full blocks,
    cached when it leaves, tail first in the LRU queue. B (group 1) takes 138 blocks for its prompt and one
    more while decoding: 86 never used, then 53 of A's, its tail first: A's 13 own blocks (125-137) and its
    prefix blocks 124 down to 85 — to host memory. C (group 0) finds blocks 0-84 on the GPU and 85-124 in
    host memory: 2,000 tokens not computed, 40 blocks loaded (10 us + 40 × 2 MiB / 63 GB/s). Without the tier
    C recomputes the 40 blocks: 840 tokens after 1,360 cached."""
    sc = parse_scenario(three_requests({"cpu_gib": 1}))
    _, _, perf, plan = prepare(sc).stages[0]       # the replica model the run used
    assert plan.kv_cache_tokens // 16 == 224
    r = simulate_serving(sc)
    f = r.requests
    assert (f.queue_s == 0).all()
    p = r.prefix_cache
    assert p is not None
    cpu = p.tiers["cpu"]
    assert cpu["stored_blocks"] >= 53 and cpu["loaded_blocks"] == 40 and cpu["hit_tokens"] == 640
    assert p.hit_tokens == 2000 and p.queried_tokens == 3 * 2200
    load = 10e-6 + 40 * 131072 * 16 / 63e9
    assert cpu["load_s"] == pytest.approx(load, rel=1e-5)

    def prefill(q: int, cached: int) -> float:
        return perf.iteration_time(tokens=q, sampled=1, prefill_work=q * (cached + (q + 1) / 2), decode_seqs=0,
                                   decode_ctx=0)

    assert f.ttft_s[0] == pytest.approx(prefill(2200, 0), rel=1e-9)
    assert f.ttft_s[2] == pytest.approx(prefill(200, 2000) + load, rel=1e-9)
    gpu_only = simulate_serving(parse_scenario(three_requests(None)))
    assert gpu_only.prefix_cache is not None and gpu_only.prefix_cache.hit_tokens == 85 * 16
    assert gpu_only.requests.ttft_s[2] == pytest.approx(prefill(840, 1360), rel=1e-9)
    assert f.ttft_s[2] < gpu_only.requests.ttft_s[2]


def test_offload_without_token_identities_keeps_evicted_blocks_in_host_memory() -> None:
    """Without shared prefixes every request is its own content: offload still keeps what a preempted or
    finished request computed, and the run conserves its requests and is exact under fast-forward."""
    d = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "bf16",
         "replica": {"engine": "vllm", "kv_cache_fraction": 0.03, "kv_offload": {"cpu_gib": 4}},
         "workload": {"arrival": {"process": "offline", "requests": 60},
                      "prompt_tokens": {"dist": "lognormal", "mean": 2000, "sigma": 0.4},
                      "output_tokens": {"dist": "lognormal", "mean": 400, "sigma": 0.4}},
         "seed": 2}
    fast = simulate_serving(parse_scenario(d))
    slow = simulate_serving(parse_scenario(d), fast_forward=False)
    assert fast.preemptions > 0 and fast.completed == fast.arrived == 60
    assert fast.prefix_cache is not None and fast.prefix_cache.tiers["cpu"]["stored_blocks"] > 0
    cols = ["ttft_s", "e2e_s", "preemptions"]
    assert fast.requests[cols].equals(slow.requests[cols])


def test_offload_needs_the_prefix_cache() -> None:
    d = three_requests({"cpu_gib": 1})
    d["replica"]["prefix_caching"] = False
    with pytest.raises(CapsimError, match="kv_offload needs prefix caching"):
        simulate_serving(parse_scenario(d))


def test_example_runs_and_offload_pays_off() -> None:
    """The example's agent loops outgrow the GPU cache: with host memory behind it more of the prompts
    are found and TTFT falls."""
    path = ROOT / "examples" / "serve_kv_offload.yaml"
    on = simulate_serving(load_scenario(path))
    off = simulate_serving(load_scenario(path, ["replica.kv_offload=null"]))
    assert on.prefix_cache is not None and off.prefix_cache is not None
    assert on.prefix_cache.tiers["cpu"]["loaded_blocks"] > 0
    assert on.prefix_cache.hit_rate > off.prefix_cache.hit_rate
    assert on.ttft_s.p50 < off.ttft_s.p50
    assert on.completed == on.arrived
