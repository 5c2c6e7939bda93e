"""How fast is one training-step simulation? Prints median wall time over repeated runs.

Target (issue 3): one step of Llama-3.1-405B on 16,384 H100s (TP8 PP16 DP128, interleaved) in
under 1 s on one core. Also reports a small layout for the ratio, and layouts per second.
Cold runs clear the cost model's memos first (what one ``capsim train`` pays); warm runs reuse them
(what a sweep or a plan pays for a layout whose layers it has already costed).
Usage: python bench/training_speed.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import parse_scenario, simulate_training
from simulator.training.work import clear_memos

CASES = {
    "llama-3.1-405b, 16384 x h100 (TP8 PP16 DP128, v=2, m=16)": {
        "kind": "training", "model": "llama-3.1-405b", "hardware": "h100-sxm",
        "cluster": {"nodes": 2048, "gpus_per_node": 8},
        "parallelism": {"tp": 8, "pp": 16, "virtual_stages": 2, "schedule": "interleaved", "sequence_parallel": True,
                        "zero_stage": 1},
        "training": {"seq_len": 8192, "global_batch": 2048, "micro_batch": 1, "recompute": "full"},
    },
    "megatron-7.5b, 16 x a100 (TP4 PP2 DP2)": {
        "kind": "training", "model": "megatron-7.5b", "hardware": "a100-sxm-80gb",
        "cluster": {"nodes": 2, "gpus_per_node": 8},
        "parallelism": {"tp": 4, "pp": 2},
        "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 2, "recompute": "selective"},
    },
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    for name, doc in CASES.items():
        sc = parse_scenario(doc)
        simulate_training(sc)                  # load the model and profile once
        cold, warm = [], []
        for _ in range(a.repeats):
            clear_memos()
            t0 = time.perf_counter()
            r = simulate_training(sc)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            simulate_training(sc)
            warm.append(time.perf_counter() - t0)
        print(f"{name}: median {statistics.median(cold) * 1e3:.1f} ms cold, {statistics.median(warm) * 1e3:.1f} ms "
              f"warm over {a.repeats} runs (min {min(cold) * 1e3:.1f} / {min(warm) * 1e3:.1f}); step "
              f"{r.iteration_time_s:.2f} s, MFU {100 * r.mfu:.1f}%, {r.memory_per_gpu_gib.total:.1f} GiB/GPU, "
              f"fits={r.fits_in_memory}")


if __name__ == "__main__":
    main()
