"""Long work is interruptible and never loses results (issue 21, item 4): Ctrl-C on serve and sweep
stops with a message and exit 130, a sweep keeps and writes its finished rows marked partial, output
paths are checked before the run, files are written whole or not at all, and an unreachable Ray
address fails at once."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from capsim.cli import app
from simulator.errors import CapsimError
from simulator.files import check_writable, write_atomic

ROOT = Path(__file__).resolve().parents[1]
SERVE = str(ROOT / "examples/serve_llama3_8b.yaml")
STOP_WITHIN_S = 10      # the bound the tests hold; measured on 2 busy cores: 0.6 s (serve), 1.8 s (sweep)


def interrupt(args: list[str], *, after_s: float) -> tuple[int, float, str]:
    """Run ``capsim ARGS``, send SIGINT after ``after_s``; (exit status, seconds to exit, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # a session of its own, so a run that does not stop is killed with every worker it started (a
    # timed-out test must not leave a sweep's pool running for the next one's leftover check)
    p = subprocess.Popen([sys.executable, "-m", "capsim", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(after_s)
    assert p.poll() is None, "finished before the interrupt: make the run longer"
    t = time.perf_counter()
    p.send_signal(signal.SIGINT)
    try:
        _, stderr = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # only a run that did not stop: one that exits is left as it left its workers, so the
        # leftover check below still sees any that outlive it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        raise
    return p.returncode, time.perf_counter() - t, stderr


def test_ctrl_c_stops_a_long_serve() -> None:
    code, took, stderr = interrupt(["serve", SERVE, "--set", "workload.duration_s=43200"], after_s=6)
    assert code == 130 and "interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr, stderr
    assert took < STOP_WITHIN_S


def test_ctrl_c_on_a_sweep_writes_the_finished_rows_marked_partial(tmp_path: Path) -> None:
    out, html = tmp_path / "rows.csv", tmp_path / "sweep.html"
    seeds = ",".join(str(i) for i in range(2000))    # about 90 s of work: the interrupt comes first
    # 20 s: on 2 cores shared with other work the pool's start and imports took more than 10 s, and a
    # sweep interrupted before its first row has nothing to write
    code, took, stderr = interrupt(["sweep", SERVE, "--set", "workload.duration_s=20", "--grid", f"seed={seeds}",
                                    "--workers", "2", "--out", str(out), "--html", str(html)], after_s=20)
    assert code == 130 and "interrupted (Ctrl-C)" in stderr and "Traceback" not in stderr, stderr
    assert took < STOP_WITHIN_S
    rows = pd.read_csv(out)
    assert 0 < len(rows) < 2000 and rows["partial"].all()
    assert f"{len(rows)} of 2000 configurations finished; partial results written to" in " ".join(stderr.split())
    assert list(rows["seed"]) == sorted(rows["seed"])      # in configuration order, as a full sweep's
    assert html.stat().st_size > 10_000
    leftovers = subprocess.run(["pgrep", "-f", f"seed={seeds[:40]}"], capture_output=True, text=True).stdout.split()
    assert leftovers == []                                  # no worker outlives the sweep


@pytest.mark.parametrize(("args", "says"), [
    (["sweep", SERVE, "--grid", "seed=1,2", "--out", "/no/such/folder/rows.csv"], "folder '/no/such/folder' does not exist"),
    (["sweep", SERVE, "--grid", "seed=1,2", "--out", "rows.txt"], "expected a file ending in .parquet or .csv"),
    (["sweep", SERVE, "--grid", "seed=1,2", "--html", "/no/such/folder/r.html"], "does not exist"),
    (["serve", SERVE, "--html", "/no/such/folder/r.html"], "--html '/no/such/folder/r.html': folder"),
    (["train", str(ROOT / "examples/train_gpt3_175b.yaml"), "--html", str(ROOT)], "is a folder; give a file name"),
])
def test_output_paths_are_checked_before_the_run(args: list[str], says: str) -> None:
    t = time.perf_counter()
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and says in " ".join(r.stderr.split()), r.stderr
    assert time.perf_counter() - t < 5           # no simulation ran


def test_write_atomic_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    f = tmp_path / "report.html"
    write_atomic(f, "good report")
    assert f.read_text() == "good report"

    def half_then_disk_full(fh: typing.IO[bytes]) -> None:
        fh.write(b"trunc")
        raise OSError(28, "No space left on device")

    with pytest.raises(CapsimError, match="cannot be written: No space left on device"):
        write_atomic(f, half_then_disk_full, "HTML report")
    assert f.read_text() == "good report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with pytest.raises(CapsimError, match="folder"):
        check_writable(tmp_path / "missing" / "x.csv", "--out")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install 'capsim[ray]')")
def test_unreachable_ray_address_fails_at_once() -> None:
    t = time.perf_counter()
    r = CliRunner().invoke(app, ["sweep", SERVE, "--grid", "seed=1,2", "--executor", "ray:127.0.0.1:1"])
    assert r.exit_code == 2 and "--executor ray:127.0.0.1:1: no Ray head answers there within 5 s" in \
        " ".join(r.stderr.split()), r.stderr
    assert time.perf_counter() - t < 10
    r = CliRunner().invoke(app, ["sweep", SERVE, "--grid", "seed=1,2", "--executor", "ray:nohost"])
    assert r.exit_code == 2 and "expected ray:HOST:PORT" in r.stderr
