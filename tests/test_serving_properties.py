"""Properties over random serving scenarios (seeded): whatever the batching limits, KV pressure,
admission policy, arrivals, classes, routers, faults and autoscaling, nothing is lost and
fast-forward never changes a per-request result."""

from __future__ import annotations

import random

import pytest

from simulator import CapsimError, parse_scenario, simulate_serving


def random_scenario(seed: int) -> dict:
    rng = random.Random(seed)
    d = {"kind": "serving", "model": rng.choice(["llama-2-7b", "llama-3.1-8b"]),
         "hardware": rng.choice(["a100-sxm-80gb", "h100-sxm"]),
         "replica": {"max_num_seqs": rng.choice([4, 16, 64]), "max_batched_tokens": rng.choice([512, 2048, 8192]),
                     "chunked_prefill": rng.random() < 0.7, "kv_cache_fraction": rng.choice([0.05, 0.1, 0.9]),
                     "scheduler_policy": rng.choice(["max_utilization", "guaranteed_no_evict"]),
                     "max_queue": rng.choice([None, 5, 50])},
         "workload": {"arrival": rng.choice([
                          {"process": "poisson", "rate_rps": rng.choice([2, 10, 40]), "requests": 200},
                          {"process": "gamma", "rate_rps": 10, "cv": 3, "requests": 200},
                          {"process": "closed_loop", "concurrency": 16, "requests": 150, "think_time_s": rng.choice([0, 0.5]),
                           "warmup_requests": rng.choice([0, 32]), "start": rng.choice(["burst", "stationary"])},
                          {"process": "offline", "requests": 150}]),
                      "prompt_tokens": {"dist": "lognormal", "mean": rng.choice([200, 1500]), "sigma": 0.8, "max": 3000},
                      "output_tokens": {"dist": "uniform", "low": 1, "high": rng.choice([50, 600])},
                      "prefix_cache_hit_rate": rng.choice([0, 0.5]),
                      "classes": rng.choice([[], [{"name": "hi", "priority": 2}, {"name": "lo", "weight": 3}]])},
         "cluster": {"replicas": rng.choice([1, 2, 3]),
                     "router": rng.choice(["round_robin", "least_outstanding", "power_of_two", "kv_aware"])},
         "seed": rng.randrange(1000)}
    if not d["replica"]["chunked_prefill"]:
        d["replica"]["max_batched_tokens"] = 8192
    if rng.random() < 0.3:
        d["workload"]["horizon_s"] = 30.0
    if rng.random() < 0.3:
        d["faults"] = {"replica_mtbf_hours": 0.01, "max_retries": 1}
        d["autoscaling"] = {"node_provision_s": 5, "model_load_s": 5}
    if rng.random() < 0.3:
        d["autoscaling"] = {"policy": rng.choice(["hpa", "kpa", "ray"]), "target": 4, "min_replicas": 1,
                            "max_replicas": 4, "node_provision_s": 5, "model_load_s": 5}
    if d["workload"]["prefix_cache_hit_rate"] == 0 and rng.random() < 0.3:
        d["replica"]["prefix_caching"] = False       # preempted requests recompute from token 0
    return d


@pytest.mark.parametrize("seed", range(12))
def test_random_scenario_conserves_requests_and_fast_forward_is_exact(seed: int) -> None:
    sc = parse_scenario(random_scenario(seed))
    try:
        fast = simulate_serving(sc)
    except CapsimError as e:               # e.g. weights + workspace leave no KV at this fraction
        assert "does not fit" in str(e)
        return
    slow = simulate_serving(sc, fast_forward=False)
    s = fast.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["arrived"]
    if sc.workload.horizon_s is None:
        assert s["in_flight"] == 0
    cols = ["arrival_s", "queue_s", "ttft_s", "e2e_s", "tpot_s", "max_itl_s", "replica", "status", "preemptions",
            "warmup"]
    assert fast.requests[cols].equals(slow.requests[cols])
    # every latency, throughput and cost figure is the same; only the KV-cache time average may
    # differ a little, as it is sampled when a window starts (a long window grows its cache inside)
    a, b = fast.summary, slow.summary
    for key in ("completed", "rejected", "failed", "preemptions", "ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s",
                "throughput_rps", "cost_usd", "replica_hours", "gpu_utilization", "mfu"):
        assert a[key] == b[key], key
