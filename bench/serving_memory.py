"""Memory of a very large serving run (issue 21 item 3): 10M requests at <= 1.5 GB peak.

An open-loop Poisson workload of short requests (GPT-2, 64-token prompts, 2 output tokens) on
H100s with continuous batching and fast-forward, so the run is dominated by the per-request
record rather than by the engines' per-iteration logs. At ``--requests`` >= ``--exact-below``
(default 10M, simulate_serving's) the latency percentiles stream through ±0.5% sketches
(simulator.serving.streamed). Prints peak RSS (resource.getrusage: the process's high-water
mark, imports included), wall time, and the retained request record's bytes per request.

Usage: python bench/serving_memory.py [--requests 10000000] [--exact-below 10000000]
(10M requests take tens of minutes on one core.)
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import parse_scenario, simulate_serving
from simulator.serving.frames import RequestRecord
from simulator.workbound import allow_large

TARGET_GIB = 1.5


def scenario(n: int) -> dict:
    replicas = 4
    return {
        "kind": "serving", "name": "memory-bench", "model": "gpt2", "hardware": "h100-sxm", "precision": "bf16",
        "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 256, "max_batched_tokens": 8192},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 1000 * replicas, "requests": n},
                     "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 2}},
        "cluster": {"replicas": replicas, "router": "least_outstanding"}, "seed": 11,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000_000)
    ap.add_argument("--exact-below", type=int, default=10_000_000)
    a = ap.parse_args()
    sc = parse_scenario(scenario(a.requests))
    t0 = time.perf_counter()
    with allow_large():          # 10M is the bound itself; nothing beyond it is refused here
        r = simulate_serving(sc, exact_below=a.exact_below)
    wall = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    table = r.request_table
    rec = next(c.cell_contents for c in (table.__closure__ or ()) if isinstance(c.cell_contents, RequestRecord))
    mode = "streamed (sketch percentiles)" if a.requests >= a.exact_below else "exact"
    print(f"{a.requests:,} requests, {mode}: wall {wall:,.1f} s ({a.requests / wall:,.0f} req/s), peak RSS "
          f"{peak_gib:.2f} GiB (target <= {TARGET_GIB} GB), request record {rec.nbytes / len(rec):.0f} B/request")
    print(f"  completed {r.completed:,}, rejected {r.rejected:,}, in flight {r.in_flight:,}; "
          f"ttft p50 {r.ttft_s.p50} p99 {r.ttft_s.p99} s; e2e p99 {r.e2e_s.p99} s")


if __name__ == "__main__":
    main()
