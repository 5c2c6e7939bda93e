"""Progress on long work: simulate_serving reports simulated time along the run without changing
a thing in the result; the CLI draws a bar (with the time left) on stderr only when asked or on a
terminal, never into --json; a max-rate search reports each of its simulations."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from simulator import simulate_serving
from simulator.scenario import load_scenario
from simulator.sweep.evaluate import MAX_RATE_SIMULATIONS, max_sustainable_rate

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / "examples" / "serve_llama3_8b.yaml"
runner = CliRunner()


@pytest.mark.parametrize("path,overrides", [
    (SERVE, ["workload.duration_s=20"]),                                         # until every request is done
    (SERVE, ["workload.duration_s=20", "workload.horizon_s=12"]),                # stopped at a horizon
    (ROOT / "examples" / "serve_diurnal_hpa.yaml", ["workload.duration_s=900"]),  # an autoscaler's periodic steps
    (SERVE, ["workload.arrival.process=closed_loop", "workload.arrival.concurrency=8",
             "workload.arrival.requests=120", "faults.replica_mtbf_hours=0.005"]),  # closed loop, failures
])
def test_progress_reports_time_and_changes_nothing(path, overrides):
    sc = load_scenario(path, overrides)
    plain = simulate_serving(sc)
    calls: list[tuple[float, float | None]] = []
    watched = simulate_serving(sc, progress=lambda now, total: calls.append((now, total)))
    assert watched.to_json() == plain.to_json()
    assert watched.requests.equals(plain.requests) and watched.timeseries.equals(plain.timeseries)
    times = [t for t, _ in calls]
    assert times == sorted(times) and len(calls) >= 10
    total = calls[-1][1]
    if sc.workload.horizon_s is not None:
        assert total == sc.workload.horizon_s and times[-1] == sc.workload.horizon_s
        assert len(calls) == 200                       # PROGRESS_STEPS slices of the horizon
    elif total is not None:                            # the last arrival; the run ends after it
        assert times[-1] >= total


def test_cli_progress_only_when_asked_and_never_in_the_json():
    args = ["serve", str(SERVE), "--set", "workload.duration_s=10", "--json"]
    quiet = runner.invoke(app, args)                   # the runner is not a terminal: no bar
    assert quiet.exit_code == 0 and quiet.stderr == ""
    shown = runner.invoke(app, [*args, "--progress"])
    assert shown.exit_code == 0
    assert "simulating" in shown.stderr and "s simulated" in shown.stderr and "ETA" in shown.stderr
    assert json.loads(shown.stdout) == json.loads(quiet.stdout)
    sweep = runner.invoke(app, ["sweep", str(SERVE), "--set", "workload.duration_s=5", "--grid",
                                "cluster.replicas=1,2", "--workers", "1", "--json", "--progress"])
    assert sweep.exit_code == 0 and "2/2 configurations" in sweep.stderr


def test_max_rate_search_reports_each_simulation():
    doc = load_scenario(SERVE, ["workload.duration_s=5"]).model_dump(mode="json", exclude_unset=True)
    steps: list[float] = []
    rate = max_sustainable_rate(doc, on_step=steps.append)
    assert rate == max_sustainable_rate(doc)
    assert steps == sorted(steps) and 0 < steps[0] and steps[-1] <= 1.0
    assert len(steps) <= MAX_RATE_SIMULATIONS
    # every simulation counted: doublings while the SLO holds, one that misses, then 7 bisection steps
    assert steps == [k / MAX_RATE_SIMULATIONS for k in range(1, len(steps) + 1)]
