"""How fast is the serving simulation? Simulated requests per wall-second on standard workloads.

Targets (issue 4):
- 5,000 requests of Llama-2-7B on one A100, 512 prompt / 128 output tokens, Poisson 4 req/s,
  continuous batching (max 128 seqs, 4,096 batched tokens): < 1 s wall on one core. Vidur takes
  about 20 s for this once its predictors are cached; with ``VIDUR_PYTHON`` pointing at a Python
  that has ``vidur`` installed, the same workload is run through Vidur for a side-by-side time.
- 1,000,000 requests over 64 replicas: < 60 s wall, < 2 GB memory (``--large``).

Also times the step-by-step mode (fast-forward off) for the ratio. Usage:
    python bench/serving_speed.py [--repeats N] [--large]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import parse_scenario, simulate_serving


def vidur_case() -> dict:
    return {
        "kind": "serving", "model": "llama-2-7b", "hardware": "a100-sxm-80gb", "precision": "bf16",
        "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 128, "max_batched_tokens": 4096},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 4, "requests": 5000},
                     "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 128}},
        "seed": 1,
    }


def chat_case() -> dict:
    """Bursty chat traffic with variable lengths on 4 H100 replicas."""
    return {
        "kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
        "replica": {"tp": 1, "max_num_seqs": 256, "max_batched_tokens": 8192},
        "workload": {"arrival": {"process": "gamma", "rate_rps": 24, "cv": 2, "requests": 20000},
                     "prompt_tokens": {"dist": "lognormal", "mean": 1024, "sigma": 0.8, "max": 8000},
                     "output_tokens": {"dist": "lognormal", "mean": 256, "sigma": 0.6, "max": 2000}},
        "cluster": {"replicas": 4, "router": "least_outstanding"},
        "seed": 1,
    }


def prefix_case(caching: bool = True) -> dict:
    """The chat workload's traffic with token identities: 16 shared system prompts of 1,500 tokens and
    4-turn sessions, on the hashed prefix cache (off: the same requests, every token computed)."""
    doc = chat_case()
    doc["replica"] = {**doc["replica"], "prefix_caching": caching}
    doc["workload"] = {"arrival": {"process": "gamma", "rate_rps": 6, "cv": 2, "requests": 5000},
                       "prompt_tokens": {"dist": "lognormal", "mean": 256, "sigma": 0.8, "max": 4000},
                       "output_tokens": {"dist": "lognormal", "mean": 256, "sigma": 0.6, "max": 2000},
                       "shared_prefix": {"groups": 16, "system_prompt_tokens": 1500},
                       "sessions": {"turns": 4, "think_time_s": 5}}
    doc["cluster"] = {"replicas": 4, "router": "prefix_aware" if caching else "least_outstanding"}
    return doc


def large_case() -> dict:
    """1M requests over 64 A100 replicas of Llama-2-7B at ~4 req/s each."""
    doc = vidur_case()
    doc["workload"]["arrival"] = {"process": "poisson", "rate_rps": 256, "requests": 1_000_000}
    doc["cluster"] = {"replicas": 64, "router": "least_outstanding"}
    return doc


def timed(doc: dict, repeats: int, **kw: bool) -> tuple[float, list[float], object]:
    times, r = [], None
    for _ in range(repeats):
        sc = parse_scenario(doc)
        t0 = time.perf_counter()
        r = simulate_serving(sc, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, r


def run_vidur(python: str) -> None:
    cmd = [python, "-m", "vidur.main", "--replica_config_model_name", "meta-llama/Llama-2-7b-hf",
           "--replica_config_device", "a100", "--cluster_config_num_replicas", "1",
           "--request_generator_config_type", "synthetic",
           "--synthetic_request_generator_config_num_requests", "5000",
           "--length_generator_config_type", "fixed", "--fixed_request_length_generator_config_prefill_tokens", "512",
           "--fixed_request_length_generator_config_decode_tokens", "128",
           "--interval_generator_config_type", "poisson", "--poisson_request_interval_generator_config_qps", "4",
           "--replica_scheduler_config_type", "vllm", "--vllm_scheduler_config_batch_size_cap", "128",
           "--vllm_scheduler_config_max_tokens_in_batch", "4096"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    status = "ok" if p.returncode == 0 else f"failed ({p.returncode}): {p.stderr[-300:]}"
    print(f"vidur, same workload: {wall:.2f} s wall ({status})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--large", action="store_true", help="also run 1M requests over 64 replicas (about a minute)")
    a = ap.parse_args()
    med, times, r = timed(vidur_case(), a.repeats)
    print(f"vidur workload (5,000 req, llama-2-7b, 1 x a100, poisson 4/s): median {med:.3f} s "
          f"(min {min(times):.3f}) -> {5000 / med:,.0f} simulated req/s; target < 1 s")
    print(f"  predicted: ttft p50 {r.ttft_s.p50 * 1e3:.1f} ms, tpot p50 {r.tpot_s.p50 * 1e3:.2f} ms, "
          f"{r.throughput_rps:.2f} req/s")
    slow, _, r2 = timed(vidur_case(), 1, fast_forward=False)
    same = (r.requests["e2e_s"].to_numpy() == r2.requests["e2e_s"].to_numpy()).all()
    print(f"  fast-forward off: {slow:.3f} s ({slow / med:.1f}x slower); identical per-request results: {same}")
    med, times, r = timed(chat_case(), max(1, a.repeats // 2))
    print(f"chat workload (20,000 req, gamma cv=2, lognormal lengths, 4 x h100): median {med:.3f} s "
          f"-> {20000 / med:,.0f} req/s; {r.preemptions} preemptions")
    for caching in (True, False):
        med, times, r = timed(prefix_case(caching), max(1, a.repeats // 2))
        hit = f"prefix hit rate {r.prefix_cache.hit_rate:.3f}" if r.prefix_cache is not None else "prefix caching off"
        print(f"prefix-cache workload (20,000 req in 4-turn sessions, 16 shared prompts, 4 x h100, "
              f"{'hashed cache, prefix-aware router' if caching else 'no cache'}): median {med:.3f} s -> "
              f"{20000 / med:,.0f} req/s; {hit}")
    vidur = os.environ.get("VIDUR_PYTHON")
    if vidur:
        run_vidur(vidur)
    else:
        print("vidur: not run (set VIDUR_PYTHON to a Python with vidur installed; the issue quotes ~20 s)")
    if a.large:
        med, _, r = timed(large_case(), 1)
        rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"large (1,000,000 req over 64 x a100): {med:.1f} s wall -> {1e6 / med:,.0f} req/s; "
              f"peak RSS {rss_gib:.2f} GiB; targets < 60 s, < 2 GB")
        print(f"  simulated {r.simulated_s:.0f} s; completed {r.completed:,}; ttft p99 {r.ttft_s.p99:.3f} s")


if __name__ == "__main__":
    main()
