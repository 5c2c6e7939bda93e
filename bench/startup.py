"""Start-up time of the command line, as whole processes (what a user waits for).

Times ``capsim --help`` (target <= 0.3 s on an idle machine: it imports typer and rich only, no
pandas, numpy, pydantic or plotly) and a 10-simulated-second ``capsim serve`` of the 8B example
(target <= 0.5 s), plus the same serve with the kernel-table cache off (``CAPSIM_CACHE_DIR=off``:
what the first run after an install or a table update pays; no target). Prints the median and the
spread of --runs runs each.

Each command runs once untimed first, which writes ``__pycache__`` (``PYTHONDONTWRITEBYTECODE`` is
dropped from the environment: an installed package has its bytecode) and the table cache, as a
user's second run finds them. The last column is the median CPU time (user + system) of the
process, which a busy machine inflates less than the wall time. ``--compare DIR`` times another checkout of capsim (e.g. ``git
worktree add /tmp/before main``) with the same interpreter, the two alternating run by run, so a
busy machine slows both alike.

Usage: python bench/startup.py [--runs 15] [--compare DIR]
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

ROOT = Path(__file__).resolve().parents[1]
SERVE = ["serve", "examples/serve_llama3_8b.yaml", "--set", "workload.duration_s=10"]
# name -> (arguments, extra environment, target seconds or None)
COMMANDS: dict[str, tuple[list[str], dict[str, str], float | None]] = {
    "capsim --help": (["--help"], {}, 0.3),
    "capsim serve (8B example, 10 simulated s)": (SERVE, {}, 0.5),
    "  same, table cache off": (SERVE, {"CAPSIM_CACHE_DIR": "off"}, None),
}


def time_once(root: Path, args: list[str], extra: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"PYTHONPATH": str(root), "COLUMNS": "100", **extra})
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "capsim", *args], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--compare", type=Path, help="another capsim checkout, timed interleaved with this one")
    a = ap.parse_args()
    roots = {"this": ROOT} if a.compare is None else {"compare": a.compare.resolve(), "this": ROOT}
    label = max(len(n) for n in COMMANDS) + (10 if a.compare else 2)
    print(f"{'command':<{label}}{'median s':>9}{'min s':>8}{'max s':>8}{'target s':>9}{'CPU s':>8}")
    for name, (args, extra, target) in COMMANDS.items():
        for root in roots.values():
            time_once(root, args, extra)         # __pycache__, the file cache and the table cache
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in roots}
        for _ in range(a.runs):
            for k, root in roots.items():
                times[k].append(time_once(root, args, extra))
        for k, runs in times.items():
            ts, cpu = [w for w, _ in runs], [c for _, c in runs]
            shown = name if a.compare is None else f"{name} [{k}]"
            goal = f"{target:>9.1f}" if target is not None else f"{'-':>9}"
            print(f"{shown:<{label}}{statistics.median(ts):>9.3f}{min(ts):>8.3f}{max(ts):>8.3f}{goal}"
                  f"{statistics.median(cpu):>8.3f}")
    if a.compare is not None:
        print(f"[compare] = {roots['compare']}, [this] = {ROOT}")
    print(f"({a.runs} runs each; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
