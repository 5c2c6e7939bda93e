"""Start-up time of the command line, as whole processes (what a user waits for).

Times ``capsim --help`` (target <= 0.3 s on an idle machine: it imports typer and rich only, no
pandas, numpy, pydantic or plotly) and a 10-simulated-second ``capsim serve`` of the 8B example
(target <= 0.5 s). Prints the median and the spread of --runs runs each.

Usage: python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "capsim --help": ["--help"],
    "capsim serve (8B example, 10 simulated s)": ["serve", "examples/serve_llama3_8b.yaml", "--set",
                                                   "workload.duration_s=10"],
}
TARGETS_S = {"capsim --help": 0.3, "capsim serve (8B example, 10 simulated s)": 0.5}


def time_once(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "capsim", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    print(f"{'command':<44}{'median s':>9}{'min s':>8}{'max s':>8}{'target s':>9}")
    for name, args in COMMANDS.items():
        time_once(args)                                   # warm the file cache and __pycache__
        ts = [time_once(args) for _ in range(a.runs)]
        print(f"{name:<44}{statistics.median(ts):>9.3f}{min(ts):>8.3f}{max(ts):>8.3f}{TARGETS_S[name]:>9.1f}")
    print(f"({a.runs} runs each; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
