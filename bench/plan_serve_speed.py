"""How fast is ``capsim plan serve``? Target (issue 18 item 6): Llama-3.1-70B at a 30 req/s peak under
p99 TTFT <= 2 s, three GPUs x TP 1, 2, 4, 8 x two engines (vLLM, SGLang) = 24 candidates, capacity
search only (no autoscaling day), in under 60 s on this 2-core machine.

Usage: python bench/plan_serve_speed.py [--gpu G ...]
Measured (2 cores shared with other sessions, 2026-12-02): see the figure printed; recorded in the
module docstring of simulator/plan/capacity.py's report and the issue note.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.plan.serving import plan_serving


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="append", default=None)
    a = ap.parse_args()
    gpus = a.gpu or ["h100-sxm", "h200", "a100-sxm-80gb"]
    t0 = time.perf_counter()
    plan = plan_serving(model="llama-3.1-70b", peak_rps=30, slo={"ttft_p99_s": 2.0}, gpus=gpus, tps=[1, 2, 4, 8],
                        engines=["vllm", "sglang"], prompt_tokens=800, output_tokens=250)
    wall = time.perf_counter() - t0
    sims = sum(c.simulations for c in plan.candidates)
    fitted = sum(c.limit not in ("memory", "error") for c in plan.candidates)
    print(f"plan serve, Llama-3.1-70B at 30 req/s, {len(plan.candidates)} candidates ({fitted} fit in memory), "
          f"{sims} capacity simulations + fleet checks of the best 3: {wall:.1f} s; target < 60 s")
    b = plan.best
    if b is not None:
        print(f"  best: {b.replicas} x {b.hardware} TP{b.tp} {b.engine}, {b.max_rate_per_replica_rps:.2f} req/s per "
              f"replica, ${b.usd_per_hour:,.2f}/h, ${b.usd_per_month:,.0f}/month")


if __name__ == "__main__":
    main()
