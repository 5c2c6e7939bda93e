"""How fast is a layout search? Target (issue 8): every valid layout of GPT-3 175B on 1,024 A100s
(TP, PP, DP, micro-batch, recompute, ZeRO stage) evaluated in under 30 s on this 2-core machine.

Usage: python bench/sweep_speed.py [--workers N] [--executor local|ray]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import parse_scenario
from simulator.sweep import sweep

GPT3 = {"kind": "training", "name": "gpt3-175b-1024", "model": "gpt3-175b", "hardware": "a100-sxm-80gb",
        "cluster": {"nodes": 128, "gpus_per_node": 8},
        "training": {"seq_len": 2048, "global_batch": 1536, "micro_batch": 1}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--executor", default="local")
    a = ap.parse_args()
    t0 = time.perf_counter()
    r = sweep(parse_scenario(GPT3), layouts=True, workers=a.workers, executor=a.executor)
    wall = time.perf_counter() - t0
    f = r.frame
    best = f.loc[r.best]
    print(f"GPT-3 175B on 1,024 A100s: {len(f):,} layouts in {wall:.1f} s ({len(f) / wall:,.0f} layouts/s; "
          f"{int(f.feasible.sum())} feasible, {int((~f.feasible).sum())} invalid or out of memory); target < 30 s")
    print(f"  fastest: {best.config} -> {best.iteration_time_s:.2f} s/iteration, MFU {100 * best.mfu:.1f}%, "
          f"{best.memory_gib:.1f} GiB/GPU")


if __name__ == "__main__":
    main()
