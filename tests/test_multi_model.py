"""Several models on one GPU pool (kind: multi_model, issue 20 item 6): the pool's division by hand,
the checks that need no simulation, a pool never over-committed, each deployment's conservation,
policy static equal to each deployment alone bit for bit, fast-forward exactness and determinism
under policy proportional, and the example through the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from capsim.cli import app
from simulator import CapsimError, parse_scenario, simulate_multi_model, simulate_serving
from simulator.scenario import MultiModelScenario, load_scenario
from simulator.serving.deployments import divide

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "serve_multi_model.yaml"


def _deployment(name: str, rate: float, replicas: int, *, tp: int = 1, peak_at_s: float = 60.0,
                **extra: Any) -> dict[str, Any]:
    return {"name": name, "model": "llama-3.1-8b", "replica": {"tp": tp, "max_num_seqs": 32},
            "cluster": {"replicas": replicas},
            "autoscaling": {"policy": "none", "node_provision_s": 0, "model_load_s": 10},
            "workload": {"duration_s": 240, "arrival": {"process": "diurnal", "mean_rps": rate, "peak_to_trough": 6,
                                                        "period_s": 240, "peak_at_s": peak_at_s},
                         "prompt_tokens": {"dist": "fixed", "value": 512},
                         "output_tokens": {"dist": "fixed", "value": 64}},
            "slo": {"ttft_p99_s": 1.0}, **extra}


def _doc(policy: dict[str, Any] | None = None, gpus: int = 6) -> dict[str, Any]:
    """Two small deployments peaking half a cycle apart on ``gpus`` H100s."""
    return {"kind": "multi_model", "name": "pair", "pool": {"hardware": "h100-sxm", "gpus": gpus},
            "policy": policy or {"kind": "static"}, "seed": 3,
            "deployments": [_deployment("a", 30, 2, peak_at_s=60), _deployment("b", 30, 2, tp=2, peak_at_s=180)]}


MOVING = {"kind": "proportional", "period_s": 5, "window_s": 10, "cooldown_s": 20}


def _mm(doc: dict[str, Any]) -> MultiModelScenario:
    sc = parse_scenario(doc)
    assert isinstance(sc, MultiModelScenario)
    return sc


# ---- the division, by hand ----------------------------------------------------------------------------
def test_divide_gives_each_replica_to_the_most_loaded_per_gpu() -> None:
    # 16 GPUs; chat needs 6.2 GPUs (TP4 replicas), code 2.3 (TP2): both start at 1 (4 + 2 GPUs, 10 free);
    # chat 6.2/4 = 1.55 > code 2.3/2 = 1.15: chat 2 (6 free); code 1.15 > chat 0.775: code 2 (4 free);
    # chat 0.775 > code 0.575: chat 3 (0 free); nothing fits
    assert divide(16, [6.2, 2.3], [4, 2], [1, 1], [4, 8]) == [3, 2]
    # a maximum stops one: chat at most 2 (8 GPUs), code takes the 8 left (4 replicas)
    assert divide(16, [6.2, 2.3], [4, 2], [1, 1], [2, 8]) == [2, 4]
    # no load anywhere: each at its minimum, then the GPUs spread evenly (a tie goes to the one holding fewer)
    assert divide(4, [0.0, 0.0], [1, 1], [1, 1], [4, 4]) == [2, 2]
    # minimums hold even when the other has all the load
    assert divide(8, [10.0, 0.0], [2, 2], [1, 2], [8, 8]) == [2, 2]


# ---- checks without simulating ------------------------------------------------------------------------
def test_a_pool_too_small_is_a_clear_error() -> None:
    with pytest.raises(CapsimError) as e:
        _mm(_doc(gpus=5))
    msg = str(e.value)
    assert "pool.gpus is 5 but the deployments start with 6 GPUs" in msg
    assert "a 2 x 1 + b 2 x 2" in msg and "raise pool.gpus to 6" in msg and "Traceback" not in msg


def test_keys_the_pool_owns_and_misplaced_keys_are_errors() -> None:
    doc = _doc()
    doc["deployments"][0]["hardware"] = "a100-sxm-80gb"
    with pytest.raises(CapsimError, match="unknown key 'deployments.0.hardware'"):
        _mm(doc)
    doc = _doc(MOVING)
    doc["deployments"][1]["autoscaling"] = {"policy": "hpa", "target": 4}
    with pytest.raises(CapsimError, match=r"deployments.1.autoscaling.policy is 'hpa' \(b\): with policy proportional"):
        _mm(doc)
    doc = _doc()
    doc["deployments"][0]["min_replicas"] = 1
    with pytest.raises(CapsimError, match="deployments.0.min_replicas .a. is read by a policy that moves replicas"):
        _mm(doc)
    doc = _doc()
    doc["deployments"][1]["workload"]["horizon_s"] = 100
    with pytest.raises(CapsimError, match="horizon_s must be the same for every deployment"):
        _mm(doc)
    doc = _doc({"kind": "static", "period_s": 5})
    with pytest.raises(CapsimError, match="unknown key 'policy.period_s'"):
        _mm(doc)
    doc = _doc({"kind": "proportional", "window_s": 0.01})
    with pytest.raises(CapsimError, match="policy.window_s"):
        _mm(doc)
    doc = _doc()
    doc["deployments"][1]["name"] = "a"
    with pytest.raises(CapsimError, match="names must be unique"):
        _mm(doc)


# ---- the simulation ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moved() -> Any:
    return simulate_multi_model(_mm(_doc(MOVING)))


def test_static_is_each_deployment_alone_bit_for_bit() -> None:
    sc = _mm(_doc())
    r = simulate_multi_model(sc)
    assert r.pool.moves == 0
    for i, d in enumerate(sc.deployments):
        alone = simulate_serving(sc.serving_scenario(i))
        pooled = r.results[d.name]
        pd.testing.assert_frame_equal(pooled.requests_frame(), alone.requests_frame())
        assert pooled.to_json() == alone.to_json()
        assert r.deployments[d.name].slo_attainment == alone.slo_attainment


def test_proportional_moves_replicas_and_never_over_commits_the_pool(moved: Any) -> None:
    r = moved
    assert r.pool.moves > 0
    assert r.deployments["a"].replicas_given + r.deployments["b"].replicas_given == r.pool.moves
    held = r.allocation_frame()
    assert (held["a"] + held["b"] <= 6).all() and r.pool.peak_gpus_held <= 6
    assert held["b"].isin([2, 4, 6]).all()          # TP2 replicas hold GPUs two at a time
    assert (held["a"] >= 1).all() and (held["b"] >= 2).all()     # each keeps its one replica
    # the paid GPU-hours are the pool's whole span; held and idle add up to them
    p = r.pool
    assert p.gpu_hours == pytest.approx(6 * r.simulated_s / 3600, rel=1e-5)
    assert p.held_gpu_hours + p.idle_gpu_hours == pytest.approx(p.gpu_hours, rel=1e-4)
    assert p.cost_usd == pytest.approx(p.gpu_hours * p.usd_per_gpu_hour, rel=1e-4)
    assert sum(d.gpu_hours for d in r.deployments.values()) == pytest.approx(p.held_gpu_hours, rel=1e-4)


def test_a_static_autoscaler_grows_only_into_free_gpus() -> None:
    doc = _doc(gpus=7)
    doc["deployments"][0]["autoscaling"] = {"policy": "queue", "target": 1, "min_replicas": 1, "max_replicas": 8,
                                            "sync_period_s": 5, "node_provision_s": 0, "model_load_s": 10}
    r = simulate_multi_model(_mm(doc))
    held = r.allocation_frame()
    assert (held["a"] + held["b"] <= 7).all()
    assert held["a"].max() == 3                    # 7 GPUs - code's 4: a reaches 3 replicas, not its 8
    assert (held["b"] == 4).all()


@pytest.mark.parametrize("policy", [None, MOVING])
def test_conservation_in_each_deployment_with_requests_cut_by_the_horizon(policy: dict[str, Any] | None) -> None:
    doc = _doc(policy)
    for d in doc["deployments"]:
        d["workload"]["horizon_s"] = 150
    r = simulate_multi_model(_mm(doc))
    assert r.simulated_s == 150
    assert sum(d.in_flight for d in r.deployments.values()) > 0
    for d in r.deployments.values():
        assert d.arrived == d.completed + d.rejected + d.failed + d.in_flight
        assert min(d.arrived, d.completed, d.rejected, d.failed, d.in_flight) >= 0


def test_fast_forward_is_exact_and_runs_repeat_under_proportional(moved: Any) -> None:
    doc = _doc(MOVING)
    for d in doc["deployments"]:
        d["workload"]["duration_s"] = 120
    sc = _mm(doc)
    fast, slow = simulate_multi_model(sc), simulate_multi_model(sc, fast_forward=False)
    assert fast.pool.moves > 0
    for name in fast.results:
        pd.testing.assert_frame_equal(fast.results[name].requests_frame(), slow.results[name].requests_frame())
    pd.testing.assert_frame_equal(fast.allocation_frame(), slow.allocation_frame())
    assert simulate_multi_model(_mm(_doc(MOVING))).to_json() == moved.to_json()


def test_the_example_through_the_cli(tmp_path: Path) -> None:
    short = [f"deployments.{i}.workload.{k}={v}" for i in (0, 1)
             for k, v in (("duration_s", 600), ("arrival.period_s", 600), ("arrival.peak_at_s", 150 + 300 * i))]
    sc = load_scenario(EXAMPLE)
    assert isinstance(sc, MultiModelScenario) and sc.policy.kind == "proportional" and sc.pool.gpus == 16
    html = tmp_path / "pool.html"
    args = ["serve", str(EXAMPLE), "--json", "--html", str(html), "--out", str(tmp_path / "req.csv")]
    for s in short:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["kind"] == "multi_model" and set(out["deployments"]) == {"chat", "code"}
    assert out["pool"]["gpus"] == 16 and out["pool"]["peak_gpus_held"] <= 16
    for d in out["deployments"].values():
        assert d["arrived"] == d["completed"] + d["rejected"] + d["failed"] + d["in_flight"] > 0
    text = html.read_text()
    assert "GPUs held per deployment" in text and "chat SLO" in text
    rows = pd.read_csv(tmp_path / "req.csv")
    assert set(rows.deployment) == {"chat", "code"}
    assert len(rows) == sum(d["arrived"] for d in out["deployments"].values())
    table = CliRunner().invoke(app, ["serve", str(EXAMPLE), *[x for s in short for x in ("--set", s)]])
    assert table.exit_code == 0 and "policy proportional" in table.stdout
    cost = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--deployment", "code", "--json"])
    assert cost.exit_code == 0 and json.loads(cost.stdout)
    bad = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--deployment", "nope"])
    assert bad.exit_code == 2 and "has deployments chat, code" in " ".join(bad.stderr.split())


def test_a_multi_model_scenario_is_not_a_training_one() -> None:
    res = CliRunner().invoke(app, ["train", str(EXAMPLE)])
    assert res.exit_code == 2 and "is a multi_model scenario; use 'capsim serve'" in " ".join(res.stderr.split())
    doc = copy.deepcopy(_doc())
    doc["deployments"] = []
    with pytest.raises(CapsimError, match="deployments"):
        _mm(doc)


def test_progress_reports_change_nothing_and_a_closed_loop_runs(moved: Any) -> None:
    seen: list[tuple[float, float | None]] = []
    again = simulate_multi_model(_mm(_doc(MOVING)), progress=lambda now, total: seen.append((now, total)))
    assert again.to_json() == moved.to_json() and len(seen) >= 100 and seen[0][1] is not None
    doc = _doc(MOVING)
    doc["deployments"][0]["workload"]["arrival"] = {"process": "closed_loop", "concurrency": 8, "requests": 200}
    seen.clear()
    r = simulate_multi_model(_mm(doc), progress=lambda now, total: seen.append((now, total)))
    a = r.deployments["a"]
    assert (a.arrived, a.completed) == (200, 200) and seen


def test_the_tui_edits_a_pool_and_shows_its_result(moved: Any) -> None:
    from tui.present import Session, compare, headline

    s = Session.load(str(EXAMPLE))
    fields = {f.key: f for f in s.fields()}
    assert fields["pool.gpus"].value == "16" and fields["policy.kind"].choices == ("static", "proportional")
    assert fields["deployments.1.replica.tp"].label == "code · replica.tp" and fields["deployments.1.replica.tp"].value == "2"
    assert s.set("pool.gpus", "8") is not None and "pool.gpus is 8" in (s.error() or "")
    assert s.set("pool.gpus", "16") is None and s.status()[0] == "ok"
    rows = dict(headline(moved))
    assert rows["pool"].startswith("6 × h100-sxm, policy proportional") and "SLO" in rows["a"]
    header, table = compare([moved, moved])
    assert [r[0][0] for r in table] == ["pool $", "GPU busy", "worst SLO"] and len(header) == 3
