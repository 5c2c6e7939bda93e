"""``capsim plan budget``: months of GPU-hours and dollars, checked against the simulations they are
made of and by hand; the strict schema names a bad key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from capsim.cli import app
from simulator.errors import CapsimError
from simulator.plan.budget import (
    HOURS_PER_MONTH,
    _spread,
    load_budget,
    plan_budget,
    replica_capacity_rps,
    reserved_usd_per_gpu_hour,
)
from simulator.plan.capacity import meets_slo, search_requests, with_rate
from simulator.scenario import load_scenario
from simulator.training import simulate_training

runner = CliRunner()
TRAIN = {"kind": "training", "name": "tiny", "model": "gpt-tiny", "hardware": "a100-sxm-80gb",
         "cluster": {"nodes": 1, "gpus_per_node": 8}, "parallelism": {"tp": 1, "pp": 1},
         "training": {"seq_len": 256, "global_batch": 64, "micro_batch": 8},
         "reliability": {"node_mtbf_hours": 6335}, "pricing": {"provider": "aws"}}
SERVE = {"kind": "serving", "name": "chat", "model": "llama-3.1-8b", "hardware": "h100-sxm",
         "replica": {"tp": 1, "batching": "continuous"},
         "workload": {"duration_s": 60, "arrival": {"process": "poisson", "rate_rps": 1},
                      "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 128}},
         "slo": {"ttft_p99_s": 0.5}, "pricing": {"provider": "aws"}, "seed": 3}


def test_hours_spread_over_months_by_hand() -> None:
    assert HOURS_PER_MONTH == 730
    # 8 GPUs from hour 700 for 100 h: 30 h in month 1, 70 h in month 2
    assert _spread(700, 100, 8, 3) == [240.0, 560.0, 0.0]
    assert _spread(0, 2000, 1, 2) == [730.0, 730.0]          # past the horizon: cut there


def test_reserved_only_where_the_catalog_prices_it() -> None:
    assert reserved_usd_per_gpu_hour("h100-sxm") == pytest.approx(14.8 / 8)   # lambda 8xH100 reserved, $1.85
    assert reserved_usd_per_gpu_hour("a100-sxm-80gb") is None


def _write(tmp: Path, budget: dict) -> Path:
    (tmp / "train.yaml").write_text(yaml.safe_dump(TRAIN))
    (tmp / "serve.yaml").write_text(yaml.safe_dump(SERVE))
    p = tmp / "budget.yaml"
    p.write_text(yaml.safe_dump(budget))
    return p


def test_training_months_are_the_simulated_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "t", "months": 2,
                             "pretraining": {"scenario": "train.yaml", "tokens": 2e9},
                             "retraining": {"scenario": "train.yaml", "tokens": 1e8, "every_weeks": 1}})
    b = plan_budget(load_budget(path), base_dir=tmp_path)
    pre = simulate_training(load_scenario(tmp_path / "train.yaml", ["training.total_tokens=2e9"]))
    ret = simulate_training(load_scenario(tmp_path / "train.yaml", ["training.total_tokens=1e8"]))
    assert pre.job is not None and ret.job is not None
    # 2 months = 1,460 h; a run every 168 h from hour 0: ceil(1460 / 168) = 9 runs, each well inside
    runs = math.ceil(1460 / 168)
    assert runs == 9
    gh = [m.gpu_hours["on_demand"] for m in b.months]
    assert sum(g["retraining"] for g in gh) == pytest.approx(runs * ret.job.time_to_train_days * 24 * 8, rel=1e-9)
    assert sum(g["pretraining"] for g in gh) == pytest.approx(pre.job.time_to_train_days * 24 * 8, rel=1e-9)
    # 5 run starts in month 1 (0, 168, ..., 672 < 730), 4 in month 2
    assert gh[0]["retraining"] == pytest.approx(5 * ret.job.time_to_train_days * 24 * 8, rel=1e-6)
    od = pre.job.usd_per_gpu_hour
    assert b.months[0].cost_usd["on_demand"] == pytest.approx((gh[0]["pretraining"] + gh[0]["retraining"]) * od)
    assert b.total("spot") < b.total("on_demand")
    assert "reserved" not in b.months[0].cost_usd          # no reserved A100 price in the catalog


def test_serving_replicas_cover_each_months_peak(tmp_path: Path) -> None:
    path = _write(tmp_path, {"months": 3, "serving": {"scenario": "serve.yaml", "peak_rps": 30,
                                                      "monthly_growth": 0.5}})
    b = plan_budget(load_budget(path), base_dir=tmp_path)
    cap = b.capacity_rps
    assert cap is not None and cap > 0
    for k, m in enumerate(b.months):
        peak = 30 * 1.5 ** k                                # 30, 45, 67.5 req/s
        assert m.serving_peak_rps == pytest.approx(peak)
        assert m.serving_replicas == math.ceil(peak / cap)
        assert m.serving_replicas * cap >= peak > (m.serving_replicas - 1) * cap
        assert m.gpu_hours["on_demand"]["serving"] == m.serving_replicas * 730
    # priced from the 1-GPU-replica's catalog row, and the reserved H100 price exists
    assert "reserved" in b.months[0].cost_usd


def test_replica_capacity_meets_the_slo_and_a_little_more_does_not() -> None:
    """The budget sizes serving from the planner's capacity search: met at the rate found, missed 25%
    above it, each at the search's own run length (arrivals spanning 10x the SLO's bound)."""
    cap = replica_capacity_rps(SERVE)

    def met(rate: float) -> bool:
        return meets_slo(with_rate(SERVE, rate, requests=search_requests(SERVE, rate)))

    assert met(cap)
    assert not met(cap * 1.25)


def test_strict_schema_names_the_bad_key(tmp_path: Path) -> None:
    path = _write(tmp_path, {"retraning": {"scenario": "train.yaml", "tokens": 1e9, "every_weeks": 2}})
    with pytest.raises(CapsimError, match="unknown key 'retraning'"):
        load_budget(path)
    path.write_text(yaml.safe_dump({"retraining": {"scenario": "train.yaml", "tokens": 1e9, "every_weks": 2}}))
    with pytest.raises(CapsimError, match="unknown key 'retraining.every_weks'"):
        load_budget(path)
    path.write_text(yaml.safe_dump({"months": 0}))
    r = runner.invoke(app, ["plan", "budget", str(path)])
    assert r.exit_code == 2 and "months" in r.output and "Traceback" not in r.output


def test_cli_table_json_and_html(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "cli", "months": 2, "pretraining": {"scenario": "train.yaml", "tokens": 1e9}})
    r = runner.invoke(app, ["plan", "budget", str(path), "--json", "--html", str(tmp_path / "b.html")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["kind"] == "plan_budget" and len(d["months"]) == 2
    assert d["total_cost_usd"]["on_demand"] == pytest.approx(sum(m["cost_usd"]["on_demand"] for m in d["months"]))
    text = (tmp_path / "b.html").read_text()
    assert 'id="chart-gpu-hours"' in text and 'id="chart-cost"' in text
    r = runner.invoke(app, ["plan", "budget", str(path)])
    assert r.exit_code == 0 and "budget cli" in r.output and "total" in r.output
