"""Sweep errors say what happened: an unknown grid key or column is an error naming it with the
closest keys, before anything runs; --layouts that finds nothing says which rule no layout passes;
when every configuration fails, --out still writes every row with its error."""

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from capsim.tables import usd
from simulator.errors import CapsimError
from simulator.scenario import load_scenario
from simulator.sweep import sweep
from simulator.training import simulate_training

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / "examples" / "serve_llama3_8b.yaml"
TRAIN = ROOT / "examples" / "train_gpt3_175b.yaml"
runner = CliRunner()


def test_unknown_grid_key_names_the_closest_keys():
    with pytest.raises(CapsimError, match=r"--grid cluster\.replicaz: not a key of a serving scenario; "
                                          r"closest: cluster\.replicas"):
        sweep(load_scenario(SERVE), grid={"cluster.replicaz": [1, 2]}, workers=1)


def test_grid_keys_inside_lists_and_variants_are_known():
    sc = load_scenario(ROOT / "examples" / "serve_rag_chain.yaml", ["workload.duration_s=5"])
    r = sweep(sc, grid={"services.2.cluster.replicas": [1, 2]}, workers=1)
    assert list(r.frame["services.2.cluster.replicas"]) == [1, 2]
    assert r.frame["feasible"].all()


def test_unknown_constraint_and_objective_columns_are_named_up_front():
    sc = load_scenario(SERVE)
    with pytest.raises(CapsimError, match=r"constraint on unknown column 'ttft_p99'; closest: ttft_p99_s"):
        sweep(sc, grid={"cluster.replicas": [1, 2]}, constraints=["ttft_p99<=1"], workers=1)
    with pytest.raises(CapsimError, match=r"objective on unknown column 'max_rate_rps'.*need --max-rate"):
        sweep(sc, grid={"cluster.replicas": [1, 2]}, objective="max:max_rate_rps", workers=1)


def test_layouts_that_find_nothing_say_why():
    # 3 nodes × 7 GPUs: TP can be 1 or 7... 7 does not divide 96 heads, so TP 1; DP = 21 / PP is 21 or 7
    # (PP 1 or 3 divide the 96 layers), and neither divides the global batch 1536 = 2^9 · 3
    sc = load_scenario(TRAIN, ["cluster.nodes=3", "cluster.gpus_per_node=7"])
    with pytest.raises(CapsimError) as e:
        sweep(sc, layouts=True, workers=1)
    msg = str(e.value)
    assert "--layouts found no layout of gpt3-175b on 21 GPUs (3 nodes × 7)" in msg
    assert "can be 7, 21" in msg and "none divides training.global_batch 1536" in msg
    assert "nothing to sweep" not in msg


def test_out_writes_every_row_with_its_error_when_all_fail(tmp_path):
    out = tmp_path / "rows.csv"
    r = runner.invoke(app, ["sweep", str(SERVE), "--grid", "replica.tp=3,5", "--workers", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert [row["replica.tp"] for row in rows] == ["3", "5"]
    assert rows[0]["error"] == "replica.tp=3 must divide llama-3.1-8b's 32 attention heads"
    assert rows[1]["error"] == "replica.tp=5 must divide llama-3.1-8b's 32 attention heads"
    assert "2 of 2 configurations infeasible or invalid" in r.stderr
    assert "1 × replica.tp=3 must divide" in r.stderr


@pytest.mark.parametrize("width", [80, 200])
def test_sweep_table_keeps_each_configuration_whole(width):
    r = runner.invoke(app, ["sweep", str(TRAIN), "--grid", "parallelism.pp=8,16", "--grid", "hardware=h100-sxm",
                            "--workers", "1"], env={"COLUMNS": str(width)})
    assert r.exit_code == 0, r.output
    text = r.stdout
    assert "parallelism.pp=16" in text and "hardware=h100-sxm" in text and "…" not in text
    # cost_usd as money, each configuration's own simulated cost
    for pp in (8, 16):
        job = simulate_training(load_scenario(TRAIN, [f"parallelism.pp={pp}", "hardware=h100-sxm"])).job
        assert job is not None and usd(job.cost_usd) in text
    assert "e+06" not in text
