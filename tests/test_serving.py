"""Serving simulator: queueing theory, KV-cache invariants, conservation, fast-forward, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator import CapsimError, InfeasibleError, parse_scenario, simulate_serving
from simulator.catalog import get_model
from simulator.costmodel.inference import InferenceModel
from simulator.hardware import get_profile
from simulator.serving.frames import step_integral
from simulator.serving.workload import generate


def doc(**over: object) -> dict:
    d: dict = {
        "kind": "serving", "model": "llama-2-7b", "hardware": "a100-sxm-80gb",
        "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 64, "max_batched_tokens": 2048},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 2.0, "requests": 400},
                     "prompt_tokens": {"dist": "fixed", "value": 256}, "output_tokens": {"dist": "fixed", "value": 64}},
        "seed": 3,
    }
    for k, v in over.items():
        node = d
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return d


def run(d: dict, **kw: bool):
    return simulate_serving(parse_scenario(d), **kw)


# ---- queueing theory --------------------------------------------------------------------------------
def single_server(service_dist: dict, rho: float, n: int) -> tuple[float, np.ndarray, float]:
    """One replica serving one request at a time: (mean queueing wait, service times, arrival rate)."""
    base = doc(**{"replica": {"batching": "none"}, "model": "llama-3.1-8b", "hardware": "h100-sxm",
                  "workload.prompt_tokens": {"dist": "fixed", "value": 16}, "workload.output_tokens": service_dist,
                  "workload.arrival": {"process": "poisson", "rate_rps": 1.0, "requests": 200}})
    probe = run(base).requests
    mean_s = float((probe.e2e_s - probe.queue_s).mean())
    lam = rho / mean_s
    base["workload"]["arrival"] = {"process": "poisson", "rate_rps": lam, "requests": n}
    r = run(base).requests
    service = (r.e2e_s - r.queue_s).to_numpy()
    return float(r.queue_s.mean()), service, lam


def test_md1_mean_wait_matches_pollaczek_khinchine() -> None:
    wait, service, lam = single_server({"dist": "fixed", "value": 64}, rho=0.6, n=60000)
    assert np.ptp(service) < 1e-9 * service.mean()          # deterministic service
    S = service.mean()
    rho = lam * S
    expected = rho * S / (2 * (1 - rho))                     # M/D/1
    assert wait == pytest.approx(expected, rel=0.05)


def test_mm1_mean_wait() -> None:
    wait, service, lam = single_server({"dist": "exponential", "mean": 400}, rho=0.5, n=60000)
    cv = service.std() / service.mean()
    assert cv == pytest.approx(1.0, abs=0.03)                # service is (nearly) exponential
    S = service.mean()
    rho = lam * S
    assert wait == pytest.approx(rho * S / (1 - rho), rel=0.05)   # M/M/1


def test_littles_law_on_the_time_series() -> None:
    r = run(doc(**{"cluster.replicas": 2, "workload.arrival": {"process": "gamma", "rate_rps": 6, "cv": 2, "requests": 3000},
                   "workload.output_tokens": {"dist": "lognormal", "mean": 120, "sigma": 0.7}}))
    ts = r.timeseries
    end = r["simulated_s"]
    width = end / ts.t_s.nunique()
    L = float((ts["queue"] + ts["running"]).sum() * width / end)   # time-average requests in the system
    lam = r["arrived"] / end
    W = r["e2e_s"]["mean"]
    assert L == pytest.approx(lam * W, rel=0.01)


def test_step_integral() -> None:
    t = np.array([0.0, 1.0, 3.0])
    v = np.array([2.0, 0.0, 5.0])
    # ∫ = 2 on [0,1], 0 on [1,3], 5/s after 3
    assert step_integral(t, v, np.array([0.5, 1.0, 2.0, 4.0]), 4.0).tolist() == [1.0, 2.0, 2.0, 7.0]


# ---- continuous batching invariants -----------------------------------------------------------------
def tight_kv() -> dict:
    """KV for about a dozen of these requests (Llama-2-7B, 10% of the free memory): forces preemption by recompute."""
    return doc(**{"replica.max_num_seqs": 64, "replica.max_batched_tokens": 4096, "replica.kv_cache_fraction": 0.1,
                  "workload.arrival": {"process": "poisson", "rate_rps": 50, "requests": 300},
                  "workload.prompt_tokens": {"dist": "uniform", "low": 200, "high": 1200},
                  "workload.output_tokens": {"dist": "uniform", "low": 50, "high": 800}})


def test_preemption_never_exceeds_kv_and_everything_completes() -> None:
    r = run(tight_kv())
    cap = r["kv_cache_tokens_per_replica"]
    assert r["preemptions"] > 0
    assert r["completed"] == r["arrived"] == 300 and r["rejected"] == 0
    assert r.timeseries.kv_cache_utilization.max() <= 1.0
    assert (r.requests.preemptions > 0).sum() > 0
    # a preempted request still produced every output token exactly once: TPOT is finite
    assert r.requests.tpot_s.notna().all()
    assert cap < 15000


def test_guaranteed_no_evict_never_preempts() -> None:
    r = run({**tight_kv(), "replica": {**tight_kv()["replica"], "scheduler_policy": "guaranteed_no_evict"}})
    assert r["preemptions"] == 0 and r["completed"] == 300


def test_conservation_with_horizon_and_rejections() -> None:
    d = doc(**{"workload.arrival": {"process": "poisson", "rate_rps": 40, "requests": 2000},
               "workload.horizon_s": 20.0, "replica.max_queue": 30})
    r = run(d)
    assert r["rejected"] > 0 and r["in_flight"] > 0 and r["completed"] > 0
    assert r["completed"] + r["rejected"] + r["in_flight"] == r["arrived"]
    assert r["rejected_by_reason"] == {"queue_full": r["rejected"]}
    frame = r.requests
    arrived = frame[frame.arrival_s <= 20.0]
    assert len(arrived) == r["arrived"]
    assert (arrived.status == "in_flight").sum() == r["in_flight"]


def test_too_long_requests_are_rejected_not_dropped() -> None:
    d = tight_kv()
    d["model"] = "llama-3.1-8b"                       # 128k positions; 10% of free memory holds ~47k tokens
    d["workload"]["prompt_tokens"] = {"dist": "fixed", "value": 60000}
    d["workload"]["arrival"]["requests"] = 5
    r = run(d)
    assert r["kv_cache_tokens_per_replica"] < 60000
    assert r["rejected"] == 5 and r["rejected_by_reason"] == {"exceeds_kv_capacity": 5}
    d = tight_kv()                                     # Llama-2-7B: 4,096 positions
    d["workload"]["prompt_tokens"] = {"dist": "fixed", "value": 4090}
    r = run(d)
    assert r["rejected_by_reason"] == {"exceeds_max_positions": 300}


# ---- fast-forward equivalence and determinism -------------------------------------------------------
@pytest.mark.parametrize("name,d", [
    ("preemption", tight_kv()),
    ("priorities+kv_aware", doc(**{"cluster.replicas": 3, "cluster.router": "kv_aware",
                                    "workload.classes": [{"name": "gold", "weight": 1, "priority": 2},
                                                         {"name": "bulk", "weight": 3, "priority": 0}],
                                    "workload.arrival": {"process": "gamma", "rate_rps": 12, "cv": 3, "requests": 600},
                                    "workload.prompt_tokens": {"dist": "lognormal", "mean": 900, "sigma": 0.8},
                                    "workload.prefix_cache_hit_rate": 0.3})),
    ("closed_loop", doc(**{"cluster.replicas": 2, "cluster.router": "power_of_two",
                           "workload.arrival": {"process": "closed_loop", "concurrency": 24, "requests": 300,
                                                "think_time_s": 0.5}})),
    ("no_chunking", doc(**{"replica.chunked_prefill": False, "replica.max_batched_tokens": 4096})),
    ("harness", doc(**{"workload.arrival": {"process": "closed_loop", "concurrency": 16, "requests": 200,
                                            "warmup_requests": 32, "start": "stationary", "think_time_s": 0.05},
                       "workload.output_tokens": {"dist": "normal", "mean": 200, "stddev": 40}})),
    ("harness_sglang", {**tight_kv(), "replica": {**tight_kv()["replica"], "engine": "sglang"},
                        "workload": {**tight_kv()["workload"],
                                     "arrival": {"process": "closed_loop", "concurrency": 32, "requests": 300,
                                                 "warmup_requests": 32, "start": "stationary"}}}),
])
def test_fast_forward_gives_identical_per_request_results(name: str, d: dict) -> None:
    fast, slow = run(d), run(d, fast_forward=False)
    cols = ["arrival_s", "queue_s", "ttft_s", "e2e_s", "tpot_s", "max_itl_s", "replica", "status", "preemptions",
            "warmup"]
    a, b = fast.requests[cols], slow.requests[cols]
    assert a.equals(b), name
    assert fast.itl_s == slow.itl_s and fast.itl_s.p50 is not None, name


def test_same_seed_same_json_different_seed_differs() -> None:
    d = doc(**{"workload.arrival": {"process": "poisson", "rate_rps": 3, "requests": 300}})
    assert run(d).to_json() == run(d).to_json()
    d2 = {**d, "seed": 4}
    assert json.loads(run(d2).to_json())["e2e_s"] != json.loads(run(d).to_json())["e2e_s"]


# ---- cost model and metrics by hand ----------------------------------------------------------------------
def test_decode_step_is_bound_by_reading_the_weights() -> None:
    """Llama-2-7B bf16 on A100: one decode step of one sequence streams every weight but the
    embedding table once (13.2 GB at 85% of 2.04 TB/s = 7.6 ms) plus a 4 µs latency for each of its
    356 kernels (11 per layer, the embedding lookup and the 3 of the head). The roofline: the
    GPU's measured tables are set aside."""
    m, hw = get_model("llama-2-7b"), get_profile("a100-sxm-80gb").spec_only()
    perf = InferenceModel(model=m, hw=hw)
    bw = hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.memory
    floor = (m.total_params() - m.vocab * m.hidden) * 2 / bw
    assert floor == pytest.approx(7.63e-3, rel=0.01)
    assert perf.decode_base(1) == pytest.approx(floor + (32 * 11 + 4) * 4e-6, rel=0.01)
    # reading 1,000 cached tokens adds 1,000 × 32 layers × 2 × 4096 × 2 bytes at the same bandwidth
    assert perf.decode_coef == pytest.approx(32 * 2 * 4096 * 2 / bw, rel=0.01)


def test_kv_capacity_by_hand() -> None:
    """Llama-3.1-8B bf16 on H100 80 GiB: 128 KiB of KV per token."""
    m, hw = get_model("llama-3.1-8b"), get_profile("h100-sxm")
    perf = InferenceModel(model=m, hw=hw)
    assert perf.kv_bytes_per_token_per_gpu() == 32 * 2 * 8 * 128 * 2
    tokens, mem = perf.kv_capacity_tokens(kv_fraction=0.9, max_tokens=8192, max_seqs=256)
    free = 80 * 2**30 - m.total_params() * 2 - perf.workspace_bytes(8192, 256) - 2**30
    assert tokens == int(0.9 * free // (128 * 1024))
    assert mem["weights_gib"] == pytest.approx(8_030_261_248 * 2 / 2**30)


def test_cost_per_million_tokens() -> None:
    d = doc(**{"pricing": {"usd_per_gpu_hour": 2.0}, "cluster.replicas": 2})
    r = run(d)
    hours = r["simulated_s"] / 3600
    assert r["usd_per_hour"] == 4.0
    assert r["cost_usd"] == pytest.approx(4.0 * hours, rel=1e-5)
    tokens = 64 * r["completed"]
    assert r["cost_per_million_tokens_usd"] == pytest.approx(4.0 * hours / tokens * 1e6, rel=1e-5)


def test_slo_attainment_counts_rejections_as_misses() -> None:
    d = doc(**{"workload.arrival": {"process": "poisson", "rate_rps": 40, "requests": 500}, "replica.max_queue": 5,
               "slo": {"ttft_p99_s": 1000.0}})
    r = run(d)
    assert r["rejected"] > 0
    assert r["slo_attainment"] == pytest.approx(r["completed"] / (r["completed"] + r["rejected"]), abs=1e-4)
    assert r["slo_met"] is False


# ---- batching policies, routers, non-LLM models ---------------------------------------------------------
def test_dynamic_batcher_uses_latency_table_and_preferred_sizes() -> None:
    d = {"kind": "serving", "model": "bert-large", "hardware": "t4",
         "replica": {"batching": "dynamic", "max_batch_size": 8, "preferred_batch_sizes": [4, 8],
                     "max_queue_delay_ms": 5, "latency_table": [[1, 0.010], [4, 0.020], [8, 0.030]]},
         "workload": {"arrival": {"process": "offline", "requests": 64},
                      "prompt_tokens": {"dist": "fixed", "value": 128}, "output_tokens": {"dist": "fixed", "value": 1}}}
    r = run(d)
    e2e = np.sort(r.requests.e2e_s.to_numpy())
    # 64 queued at t=0: eight batches of the preferred 8, each 30 ms, back to back
    assert np.allclose(e2e, np.repeat(0.030 * np.arange(1, 9), 8))
    assert r["ttft_s"] is None and r["generative"] is False     # one forward: no first token


def test_dynamic_batcher_waits_for_the_queue_delay() -> None:
    d = {"kind": "serving", "model": "bert-large", "hardware": "t4",
         "replica": {"batching": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 50,
                     "latency_table": [[1, 0.010], [8, 0.030]]},
         "workload": {"arrival": {"process": "poisson", "rate_rps": 1.0, "requests": 50},
                      "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 1}}}
    q = run(d).requests
    # at 1 req/s, almost every request waits the full 50 ms for company, then runs alone (10 ms)
    assert (np.isclose(q.queue_s, 0.050) | (q.queue_s < 0.050)).all()
    assert np.isclose(q.queue_s, 0.050).mean() > 0.8


def test_continuous_batching_rejected_for_encoders() -> None:
    with pytest.raises(CapsimError, match="continuous batching applies to decoders"):
        run({"kind": "serving", "model": "bert-large", "hardware": "t4",
             "workload": {"arrival": {"process": "offline", "requests": 4}}})


def test_static_batching_pads_to_the_longest() -> None:
    d = doc(**{"replica": {"batching": "static", "max_batch_size": 4},
               "workload.arrival": {"process": "offline", "requests": 4},
               "workload.output_tokens": {"dist": "uniform", "low": 10, "high": 200}})
    q = run(d).requests
    assert q.ttft_s.nunique() == 1                   # one padded prefill for the batch
    assert q.e2e_s.nunique() == 4                    # each finishes at its own last token


def test_round_robin_spreads_evenly() -> None:
    r = run(doc(**{"cluster.replicas": 4, "cluster.router": "round_robin"}))
    assert r.requests.replica.value_counts().tolist() == [100, 100, 100, 100]


def test_closed_loop_never_exceeds_concurrency() -> None:
    r = run(doc(**{"workload.arrival": {"process": "closed_loop", "concurrency": 8, "requests": 200}}))
    q = r.requests
    events = sorted([(a, 1) for a in q.arrival_s] + [(a + e, -1) for a, e in zip(q.arrival_s, q.e2e_s, strict=True)],
                    key=lambda x: (x[0], x[1]))
    level = np.cumsum([e for _, e in events])
    assert level.max() == 8 and r["completed"] == 200


# ---- workloads -----------------------------------------------------------------------------------------
def test_gamma_arrivals_have_the_requested_cv() -> None:
    sc = parse_scenario(doc(**{"workload.arrival": {"process": "gamma", "rate_rps": 5, "cv": 3, "requests": 50000}}))
    reqs, _ = generate(sc.workload, 1)
    gaps = np.diff(reqs.arrival)
    assert gaps.mean() == pytest.approx(0.2, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(3, rel=0.05)


def test_diurnal_peak_and_trough() -> None:
    sc = parse_scenario(doc(**{"workload.duration_s": 86400.0,
                               "workload.arrival": {"process": "diurnal", "mean_rps": 2, "peak_to_trough": 4}}))
    reqs, _ = generate(sc.workload, 1)
    hours = np.bincount((reqs.arrival // 3600).astype(int), minlength=24) / 3600
    assert hours.mean() == pytest.approx(2, rel=0.03)
    assert hours[14] / hours[2] == pytest.approx(4, rel=0.15)    # peak at 14:00, trough 12 h later


def test_piecewise_schedule() -> None:
    sc = parse_scenario(doc(**{"workload.duration_s": 200.0,
                               "workload.arrival": {"process": "diurnal", "schedule": [[0, 1], [100, 10]]}}))
    reqs, _ = generate(sc.workload, 2)
    first, second = (reqs.arrival < 100).sum(), (reqs.arrival >= 100).sum()
    assert first == pytest.approx(100, abs=35) and second == pytest.approx(1000, abs=110)


def test_lognormal_lengths_have_the_requested_mean() -> None:
    sc = parse_scenario(doc(**{"workload.prompt_tokens": {"dist": "lognormal", "mean": 700, "sigma": 0.9},
                               "workload.arrival": {"process": "offline", "requests": 40000}}))
    reqs, _ = generate(sc.workload, 0)
    assert reqs.prompt.mean() == pytest.approx(700, rel=0.03)


def test_trace_replay_and_malformed_traces(tmp_path: Path) -> None:
    good = tmp_path / "t.csv"
    good.write_text("timestamp,prompt_tokens,output_tokens\n10.0,100,20\n10.5,300,40\n12.0,50,5\n")
    r = run(doc(**{"workload.arrival": {"process": "trace", "path": str(good)}}))
    q = r.requests
    assert q.arrival_s.tolist() == [0.0, 0.5, 2.0] and q.prompt_tokens.tolist() == [100, 300, 50]
    assert r["completed"] == 3
    missing = tmp_path / "m.csv"
    missing.write_text("timestamp,prompt\n0,1\n")
    with pytest.raises(CapsimError, match="lacks column.*prompt_tokens.*output_tokens"):
        run(doc(**{"workload.arrival": {"process": "trace", "path": str(missing)}}))
    bad = tmp_path / "b.csv"
    bad.write_text("timestamp,prompt_tokens,output_tokens\n0,100,20\n1,-3,20\n")
    with pytest.raises(CapsimError, match="row 3 has prompt_tokens -3;"):
        run(doc(**{"workload.arrival": {"process": "trace", "path": str(bad)}}))
    with pytest.raises(CapsimError, match="does not exist"):
        run(doc(**{"workload.arrival": {"process": "trace", "path": str(tmp_path / "nope.csv")}}))


def test_unsorted_trace_is_sorted_with_a_warning(tmp_path: Path) -> None:
    p = tmp_path / "u.csv"
    p.write_text("timestamp,prompt_tokens,output_tokens\n5,10,2\n1,20,3\n")
    r = run(doc(**{"workload.arrival": {"process": "trace", "path": str(p)}}))
    assert r.requests.prompt_tokens.tolist() == [20, 10]
    assert any("sorted" in w for w in r["warnings"])


def test_impossible_settings_give_clear_errors() -> None:
    with pytest.raises(InfeasibleError, match="does not fit.*Raise replica.tp"):
        run(doc(**{"model": "llama-3.1-70b"}))
    with pytest.raises(CapsimError, match="needs an end"):
        run(doc(**{"workload.arrival": {"process": "poisson", "rate_rps": 1}}))
    with pytest.raises(CapsimError, match="must divide"):
        run(doc(**{"replica.tp": 3}))
    with pytest.raises(CapsimError, match="high .* must be >= low"):
        parse_scenario(doc(**{"workload.prompt_tokens": {"dist": "uniform", "low": 10, "high": 5}}))


def test_tensor_parallel_replica_is_faster_per_token() -> None:
    one = run(doc(**{"model": "llama-3.1-8b", "hardware": "h100-sxm"}))
    two = run(doc(**{"model": "llama-3.1-8b", "hardware": "h100-sxm", "replica.tp": 2}))
    assert two["tpot_s"]["p50"] < 0.75 * one["tpot_s"]["p50"]
    assert two["usd_per_hour"] == pytest.approx(2 * one["usd_per_hour"])



def test_serving_mfu_by_hand() -> None:
    """MFU = 2 · params · (prompt + output tokens served) / (peak FLOP/s · GPU-seconds paid)."""
    r = run(doc(**{"cluster.replicas": 2}))
    params = get_model("llama-2-7b").total_params()
    tokens = r["completed"] * (256 + 64)
    peak = get_profile("a100-sxm-80gb").peak_flops("bf16")
    expected = 2 * params * tokens / (peak * 2 * r["simulated_s"])
    assert r["mfu"] == pytest.approx(expected, rel=1e-3)
    assert 0 < r["mfu"] < r["gpu_utilization"]


def test_pipeline_parallel_replica_gains_throughput_not_latency() -> None:
    """With pp micro-batches in flight a decode step of n sequences costs the full forward of n/pp
    tokens: compute-bound batches run ~pp× faster per step; a memory-bound single sequence does not
    (every micro-batch still reads every stage's weights)."""
    m, hw = get_model("llama-3.1-8b"), get_profile("h100-sxm")
    one, two = InferenceModel(model=m, hw=hw), InferenceModel(model=m, hw=hw, pp=2)
    assert 0.45 < two.decode_base(2048) / one.decode_base(2048) < 0.6
    assert 0.95 < two.decode_base(1) / one.decode_base(1) < 1.1
    assert two.decode_coef_per_step == pytest.approx(one.decode_coef / 2)
