"""How fast is ``capsim plan train``? Target (issue 18, item 6): Llama-3.1-70B on 2T tokens, three GPU
types × the default count set ({8·2^k, 24·2^k} up to 4,096 GPUs) × every layout, in under 60 s on
this 2-core machine, with a progress bar (stderr). Large plans run on Ray like sweeps (--executor ray).

Usage: python bench/plan_speed.py [--gpu h100-sxm --gpu h200 --gpu a100-sxm-80gb] [--workers N]
                                  [--executor local|ray|ray:ADDRESS] [--no-progress]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console

from capsim.progress import bar
from simulator.plan.training import DEFAULT_COUNTS, plan_training

GPUS = ["h100-sxm", "h200", "a100-sxm-80gb"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="append", default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--executor", default="local")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args()
    gpus = a.gpu or GPUS
    err = Console(stderr=True)
    t0 = time.perf_counter()
    with bar(err, "plan train", enabled=not a.no_progress, unit="candidates") as update:
        plan = plan_training(model="llama-3.1-70b", tokens=2e12, days=30, gpus=gpus, workers=a.workers,
                             executor=a.executor, progress=update)
    wall = time.perf_counter() - t0
    cpu = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
              for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))   # the pool's workers have exited
    c = plan.counts
    print(f"plan train llama-3.1-70b, 2T tokens, 30 days: {len(gpus)} GPU types × {len(DEFAULT_COUNTS)} counts, "
          f"{c.enumerated:,} candidates ({c.pruned_by_bound:,} pruned by the bounds, {c.invalid:,} invalid, "
          f"{c.out_of_memory:,} out of memory, {c.simulated:,} simulated) in {wall:.1f} s wall, {cpu:.1f} CPU-s "
          "(this process and its workers: the wall time on a shared machine overstates it); target < 60 s")
    b = plan.best
    if b is not None:
        print(f"  cheapest in 30 days: {b.hardware} × {b.gpus:,} {b.layout.label()}: {b.time_to_train_days:.1f} days, "
              f"${b.cost_usd:,.0f}, MFU {b.mfu:.1%}")


if __name__ == "__main__":
    main()
