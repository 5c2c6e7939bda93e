"""Per-record files: capsim serve --out (one row per request) and --timeseries-out, capsim train
--out (the step's pipeline timeline), as CSV, Parquet or JSON; a bad name or a missing pyarrow is
an error before anything is simulated."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from capsim.cli import app

ROOT = Path(__file__).resolve().parents[1]
SERVE = str(ROOT / "examples" / "serve_llama3_8b.yaml")
runner = CliRunner()


def _flat(text):
    """An error message without the console's line wrapping."""
    return " ".join(text.split())


def _serve(*args):
    r = runner.invoke(app, ["serve", SERVE, "--set", "workload.duration_s=10", "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_serve_out_writes_one_row_per_request_in_each_format(tmp_path):
    res = _serve("--out", str(tmp_path / "r.csv"), "--timeseries-out", str(tmp_path / "ts.json"))
    csv = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert len(csv) == res["arrived"] and list(csv["request"]) == list(range(len(csv)))
    assert (csv["status"] == "completed").sum() == res["completed"]
    assert {"arrival_s", "prompt_tokens", "output_tokens", "queue_s", "ttft_s", "tpot_s", "e2e_s"} <= set(csv)
    assert csv["arrival_s"].is_monotonic_increasing
    # the same records as JSON and Parquet (same seed, same run)
    _serve("--out", str(tmp_path / "r.json"))
    js = pd.DataFrame(json.loads((tmp_path / "r.json").read_text()))
    assert js["ttft_s"].tolist() == pytest.approx(csv["ttft_s"].tolist(), rel=1e-12)
    _serve("--out", str(tmp_path / "r.parquet"))
    pq = pd.read_parquet(tmp_path / "r.parquet")
    assert pq["e2e_s"].tolist() == pytest.approx(csv["e2e_s"].tolist(), rel=1e-12)
    ts = json.loads((tmp_path / "ts.json").read_text())
    assert ts and {"t_s", "replica", "queue", "running", "utilization", "kv_cache_utilization"} <= set(ts[0])
    assert {row["replica"] for row in ts} == {0, 1}             # the example's two replicas


def test_bad_names_and_missing_pyarrow_fail_before_simulating(tmp_path, monkeypatch):
    r = runner.invoke(app, ["serve", SERVE, "--out", str(tmp_path / "r.xlsx")])
    assert r.exit_code == 2 and "use a .csv, .parquet or .json file name" in _flat(r.stderr)
    r = runner.invoke(app, ["serve", SERVE, "--out", str(tmp_path / "nowhere" / "r.csv")])
    assert r.exit_code == 2 and "does not exist" in _flat(r.stderr)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    r = runner.invoke(app, ["serve", SERVE, "--out", str(tmp_path / "r.parquet")])
    assert r.exit_code == 2 and "writing Parquet needs pyarrow (pip install pyarrow)" in _flat(r.stderr)
    assert not (tmp_path / "r.parquet").exists()


def test_train_out_writes_the_pipeline_timeline(tmp_path):
    out = tmp_path / "tl.csv"
    r = runner.invoke(app, ["train", str(ROOT / "examples" / "train_gpt3_175b.yaml"), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    tl = pd.read_csv(out)
    # PP 8 stages × 96 micro-batches (1536 / (1 · DP 16)) × 3 virtual chunks × (forward + backward)
    assert len(tl) == 8 * 96 * 3 * 2
    assert set(tl["pass"]) == {"F", "B"} and sorted(set(tl["stage"])) == list(range(8))
    assert (tl["end_s"] >= tl["start_s"]).all()
    assert tl["end_s"].max() <= json.loads(r.stdout)["iteration_time_s"]
