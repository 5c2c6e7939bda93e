"""Static peak provisioning vs HPA vs predictive scaling over a day of diurnal chat traffic.

Runs the three scenarios next to this file (in parallel) and prints cost, replica-hours and SLO
attainment. A progress bar per scenario (simulated hours, time left) goes to stderr when it is a
terminal, or always with --progress. Usage: python examples/compare_autoscaling.py [--progress]
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from simulator import load_scenario, simulate_serving  # noqa: E402

FILES = ["serve_diurnal_static.yaml", "serve_diurnal_hpa.yaml", "serve_diurnal_predictive.yaml"]


def run(name: str, updates: Any = None) -> dict:
    def report(now: float, total: float | None) -> None:
        updates.put((name, now, total))

    r = simulate_serving(load_scenario(HERE / name), progress=report if updates is not None else None)
    tpot = r.tpot_s.p99
    return {"scenario": r.name, "replica_hours": r.replica_hours, "replicas_max": r.replicas.max,
            "cost_usd": r.cost_usd, "slo_attainment": r.slo_attainment, "slo_met": r.slo_met,
            "ttft_p99_s": r.ttft_s.p99, "tpot_p99_ms": None if tpot is None else tpot * 1e3,
            "per_m_tokens": r.cost_per_million_tokens_usd, "requests": r.completed}


def run_all(show: bool) -> list[dict]:
    """The three runs in parallel; with ``show``, a bar per run fed by the workers' progress reports."""
    if not show:
        with ProcessPoolExecutor() as pool:
            return list(pool.map(run, FILES))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with multiprocessing.Manager() as manager, ProcessPoolExecutor() as pool, Progress(
            TextColumn("{task.description:<30}"), BarColumn(), TextColumn("{task.fields[hours]}"),
            TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True, force_terminal=True),
            transient=True) as bar:
        updates = manager.Queue()
        tasks = {f: bar.add_task(f, total=None, hours="") for f in FILES}
        futures = [pool.submit(run, f, updates) for f in FILES]
        while not all(f.done() for f in futures):
            try:
                name, now, total = updates.get(timeout=0.2)
            except queue.Empty:
                continue
            bar.update(tasks[name], completed=min(now, total or now), total=total,
                       hours=f"{now / 3600:.1f} h simulated")
        wait(futures)
        return [f.result() for f in futures]


def main() -> None:
    rows = run_all(show="--progress" in sys.argv or sys.stderr.isatty())
    print(f"{'scenario':<24}{'replica-h':>10}{'max':>5}{'cost $':>10}{'$/M tok':>9}{'SLO att.':>10}{'met':>5}"
          f"{'TTFT p99':>10}{'TPOT p99':>10}")
    for r in rows:
        print(f"{r['scenario']:<24}{r['replica_hours']:>10.1f}{r['replicas_max']:>5}{r['cost_usd']:>10,.0f}"
              f"{r['per_m_tokens']:>9.2f}{100 * r['slo_attainment']:>9.2f}%{'yes' if r['slo_met'] else 'no':>5}"
              f"{r['ttft_p99_s']:>9.2f}s{r['tpot_p99_ms']:>8.1f}ms")


if __name__ == "__main__":
    main()
