"""Memory of very large serving runs (issue 21 item 3): 10M requests at <= 1.5 GB peak.

An open-loop Poisson workload of short requests (GPT-2, 64-token prompts, 2 output tokens) on four
H100s with continuous batching and fast-forward, so the run is dominated by per-request state and
per-iteration logs rather than by the engines. Each case runs in a subprocess of its own, so its peak
RSS (resource.getrusage's high-water mark) is its own: ``exact`` keeps every log row and request time
to the end (the mode below simulate_serving's exact_below, 10M), ``streamed`` folds the replicas' logs
into time bins as it goes and frees each request's in-flight state at its completion
(simulator.serving.streamed, simulator.serving.binned). Prints per case the wall time, the peak RSS,
the peak over the RSS after imports per request (what simulator.workbound's estimate models), and
the retained request record per request.

Usage: python bench/serving_memory.py [--cases 1M:exact,1M:streamed,10M:streamed]
(on one shared core: 1M requests take about a minute, 10M about ten)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_GB = 1.5
DEFAULT_CASES = "1M:exact,1M:streamed,10M:streamed"


def scenario(n: int) -> dict:
    replicas = 4
    return {
        "kind": "serving", "name": "memory-bench", "model": "gpt2", "hardware": "h100-sxm", "precision": "bf16",
        "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 256, "max_batched_tokens": 8192},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 1000 * replicas, "requests": n},
                     "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 2}},
        "cluster": {"replicas": replicas, "router": "least_outstanding"}, "seed": 11,
    }


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024      # Linux: KiB


def child(n: int, streamed: bool) -> None:
    """One case in this process: print its figures as one JSON line."""
    import pandas  # noqa: F401  (every result builds its frames with it: part of the fixed cost)

    from simulator import parse_scenario, simulate_serving
    from simulator.serving.frames import RequestRecord
    from simulator.workbound import allow_large

    sc = parse_scenario(scenario(n))
    base = peak_bytes()
    t0 = time.perf_counter()
    with allow_large():          # 10M is the bound itself; nothing beyond it is refused here
        r = simulate_serving(sc, exact_below=1 if streamed else n + 1)
    wall = time.perf_counter() - t0
    peak = peak_bytes()
    table = r.request_table
    rec = next(c.cell_contents for c in (table.__closure__ or ()) if isinstance(c.cell_contents, RequestRecord))
    print(json.dumps({"n": n, "streamed": streamed, "wall_s": wall, "peak": peak, "base": base,
                      "record_b": rec.nbytes / len(rec), "arrived": r.arrived, "completed": r.completed,
                      "rejected": r.rejected, "failed": r.failed, "in_flight": r.in_flight,
                      "ttft_p99": r.ttft_s.p99 if r.ttft_s else None, "e2e_p99": r.e2e_s.p99,
                      "itl_p50": r.itl_s.p50 if r.itl_s else None}))


def parse_cases(text: str) -> list[tuple[int, bool]]:
    out = []
    for item in text.split(","):
        size, _, mode = item.partition(":")
        mult = {"K": 10**3, "M": 10**6}.get(size[-1:].upper(), 1)
        n = int(float(size[:-1] if mult > 1 else size) * mult)
        if mode not in ("exact", "streamed"):
            raise SystemExit(f"--cases: {item!r}: the mode is exact or streamed")
        out.append((n, mode == "streamed"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=DEFAULT_CASES, help=f"requests:mode, comma-separated (default {DEFAULT_CASES})")
    ap.add_argument("--child", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(int(a.child[0]), a.child[1] == "streamed")
        return
    for n, streamed in parse_cases(a.cases):
        mode = "streamed" if streamed else "exact"
        out = subprocess.run([sys.executable, __file__, "--child", str(n), mode], capture_output=True, text=True)
        if out.returncode:
            print(f"{n:,} requests, {mode}: failed (exit {out.returncode})\n{out.stderr[-2000:]}")
            continue
        f = json.loads(out.stdout.strip().splitlines()[-1])
        per = (f["peak"] - f["base"]) / n
        ok = "meets" if f["peak"] <= TARGET_GB * 1e9 else "misses"
        print(f"{n:,} requests, {mode}: wall {f['wall_s']:,.0f} s ({n / f['wall_s']:,.0f} req/s), peak RSS "
              f"{f['peak'] / 2**30:.2f} GiB = {f['peak'] / 1e9:.2f} GB ({ok} <= {TARGET_GB} GB), "
              f"{per:.0f} B/request over the {f['base'] / 2**30:.2f} GiB after imports; request record "
              f"{f['record_b']:.0f} B/request")
        print(f"  arrived {f['arrived']:,}: completed {f['completed']:,}, rejected {f['rejected']:,}, failed "
              f"{f['failed']:,}, in flight {f['in_flight']:,}; ttft p99 {f['ttft_p99']} s, e2e p99 {f['e2e_p99']} s, "
              f"itl p50 {f['itl_p50']} s")


if __name__ == "__main__":
    main()
