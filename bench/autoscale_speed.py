"""A day of diurnal traffic on up to 200 autoscaled replicas: wall time (target < 2 minutes).

Long-form generation with Llama-3.1-405B (FP8, TP8 on H100): ~1M requests over 24 h, mean 12 req/s,
4× peak-to-trough, outputs of ~3,000 tokens, so the HPA (10 concurrent per replica) runs up to
~200 replicas at the peak. Usage: python bench/autoscale_speed.py
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import parse_scenario, simulate_serving

DAY = {
    "kind": "serving", "name": "405b-day", "model": "llama-3.1-405b", "hardware": "h100-sxm", "precision": "fp8",
    "replica": {"tp": 8, "max_num_seqs": 64},
    "workload": {"duration_s": 86400, "arrival": {"process": "diurnal", "mean_rps": 12, "peak_to_trough": 4},
                 "prompt_tokens": {"dist": "lognormal", "mean": 1000, "sigma": 0.5},
                 "output_tokens": {"dist": "lognormal", "mean": 3000, "sigma": 0.4, "max": 8000}},
    "cluster": {"replicas": 40},
    "autoscaling": {"policy": "hpa", "metric": "concurrency", "target": 10, "min_replicas": 10, "max_replicas": 200},
    "slo": {"ttft_p99_s": 10.0, "tpot_p99_s": 0.1},
    "seed": 1,
}


def main() -> None:
    t0 = time.perf_counter()
    r = simulate_serving(parse_scenario(DAY))
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"a day of diurnal traffic, {r.arrived:,} requests, up to {r.replicas.max} replicas "
          f"(mean {r.replicas.mean:.1f}): {wall:.1f} s wall, peak RSS {rss:.2f} GiB; target < 120 s")
    print(f"  {r.replica_hours:,.0f} replica-hours, ${r.cost_usd:,.0f}; SLO attainment {r.slo_attainment}, "
          f"ttft p99 {r.ttft_s.p99:.2f} s, tpot p99 {r.tpot_s.p99 * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
