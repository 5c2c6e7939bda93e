"""Sweeps: configurations, ranking, Pareto frontier, errors as rows, determinism across executors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import CapsimError, load_scenario, parse_scenario
from simulator.sweep import pareto_mask, parse_grid, sweep
from simulator.sweep.evaluate import _meets, training_layouts

ROOT = Path(__file__).resolve().parents[1]

SERVE = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "name": "s",
         "workload": {"arrival": {"process": "poisson", "rate_rps": 6, "requests": 300},
                      "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 64}},
         "slo": {"ttft_p99_s": 0.3}}
TRAIN = {"kind": "training", "model": "gpt-tiny", "hardware": "a100-sxm-80gb", "name": "t",
         "cluster": {"nodes": 1, "gpus_per_node": 4}, "training": {"seq_len": 256, "global_batch": 8, "micro_batch": 1}}


def test_parse_grid_values_are_yaml() -> None:
    assert parse_grid(["replica.tp=1,2", "hardware=h100-sxm,l40s", "replica.chunked_prefill=true,false"]) == {
        "replica.tp": [1, 2], "hardware": ["h100-sxm", "l40s"], "replica.chunked_prefill": [True, False]}
    with pytest.raises(CapsimError, match="expected KEY=V1,V2"):
        parse_grid(["replica.tp"])


def test_training_layouts_counted_by_hand() -> None:
    """gpt-tiny (2 layers, 4 heads) on 4 GPUs, global batch 8: (tp,pp,dp) ∈ (1,1,4) (1,2,2) (2,1,2) (2,2,1)
    (4,1,1); micro-batches dividing 8/dp (2, 3, 3, 4, 4 choices); 3 recompute modes; ZeRO 0-3 when dp > 1,
    but not 2 with pp > 1 (it is ZeRO-1 there): 24 + 27 + 36 + 12 + 12 = 111."""
    lay = training_layouts(parse_scenario(TRAIN))
    assert len(lay) == 111
    combos = {(c["parallelism.tp"], c["parallelism.pp"], c["parallelism.dp"]) for c in lay}
    assert combos == {(1, 1, 4), (1, 2, 2), (2, 1, 2), (2, 2, 1), (4, 1, 1)}
    # full: context parallelism 2 and 4 (TP·CP within the node) adds (tp,cp,pp,dp) = (1,2,1,2) 36,
    # (1,2,2,1) 12, (1,4,1,1) 12, (2,2,1,1) 12 = 72 more; 2 layers allow no interleaving
    full = training_layouts(parse_scenario(TRAIN), full=True)
    assert len(full) == 183 and {c["parallelism.virtual_stages"] for c in full} == {1}


def test_pareto_mask_by_hand() -> None:
    x = np.array([1.0, 2.0, 3.0, 2.5, 1.5])
    y = np.array([5.0, 3.0, 1.0, 3.5, 6.0])
    # (2.5, 3.5) is dominated by (2, 3); (1.5, 6) by (1, 5)
    assert pareto_mask(x, y).tolist() == [True, True, True, False, False]


def test_training_sweep_ranks_every_layout() -> None:
    r = sweep(parse_scenario(TRAIN), layouts=True, workers=1)
    f = r.frame
    assert len(f) == 111
    # every layout of the tiny model runs, ZeRO-3 under a pipeline too (refused before issue 17)
    assert f.feasible.all() and f.error.isna().all()
    assert len(f[(f["parallelism.pp"] == 2) & (f["parallelism.zero_stage"] == 3)]) == 9
    ok = f[f.feasible]
    best = f.loc[r.best]
    assert best["iteration_time_s"] == ok["iteration_time_s"].min() and best["rank"] == 1
    assert f.loc[f.pareto, "feasible"].all()


def test_serving_sweep_cheapest_meeting_the_slo_and_errors_as_rows(tmp_path: Path) -> None:
    r = sweep(parse_scenario(SERVE), grid={"cluster.replicas": [1, 2], "replica.tp": [1, 3]}, workers=2)
    f = r.frame
    assert list(f.config) == ["cluster.replicas=1, replica.tp=1", "cluster.replicas=1, replica.tp=3",
                              "cluster.replicas=2, replica.tp=1", "cluster.replicas=2, replica.tp=3"]
    assert f.loc[f["replica.tp"] == 3, "error"].str.contains("must divide").all()
    best = f.loc[r.best]
    assert best["slo_met"] and best["usd_per_hour"] == f.loc[f.meets_constraints, "usd_per_hour"].min()
    r.save(str(tmp_path / "s.csv"))
    assert len(pd.read_csv(tmp_path / "s.csv")) == 4
    with pytest.raises(CapsimError, match=r"\.parquet or \.csv"):
        r.save(str(tmp_path / "s.xlsx"))


def test_same_results_whatever_the_worker_count() -> None:
    sc = parse_scenario(SERVE)
    grid = {"cluster.replicas": [1, 2, 3], "replica.max_num_seqs": [8, 64]}
    a = sweep(sc, grid=grid, workers=1).frame
    b = sweep(sc, grid=grid, workers=2).frame
    pd.testing.assert_frame_equal(a, b)


def test_random_subset_is_seeded() -> None:
    sc = parse_scenario(SERVE)
    grid = {"cluster.replicas": [1, 2, 3, 4], "replica.max_num_seqs": [8, 16, 64]}
    a = sweep(sc, grid=grid, random=4, seed=1, workers=1).frame.config.tolist()
    b = sweep(sc, grid=grid, random=4, seed=1, workers=1).frame.config.tolist()
    assert a == b and len(a) == 4 and len(set(a)) == 4


def test_constraints_and_objective_errors() -> None:
    sc = parse_scenario(SERVE)
    with pytest.raises(CapsimError, match="unknown column 'nope'"):
        sweep(sc, grid={"cluster.replicas": [1]}, constraints=["nope<=1"], workers=1)
    with pytest.raises(CapsimError, match="expected COLUMN OP VALUE"):
        sweep(sc, grid={"cluster.replicas": [1]}, constraints=["ttft is small"], workers=1)
    r = sweep(sc, grid={"cluster.replicas": [1, 2]}, objective="max:throughput_rps",
              constraints=["ttft_p99_s<=10"], workers=1)
    assert r.maximize and r.frame.loc[r.best, "throughput_rps"] == r.frame.throughput_rps.max()


def test_max_sustainable_rate_meets_the_slo_just_below_and_not_above() -> None:
    sc = parse_scenario(SERVE)
    r = sweep(sc, grid={"cluster.replicas": [1]}, max_rate=True, workers=1)
    rate = r.frame.loc[0, "max_rate_rps"]
    doc = sc.model_dump(mode="json", exclude_none=True)
    assert rate > 6 and _meets(doc, rate) and not _meets(doc, rate * 1.1)
    assert r.frame.loc[0, "handles_2x"] == (rate >= 12)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install 'capsim[ray]')")
def test_ray_executor_matches_local() -> None:
    sc = parse_scenario(SERVE)
    grid = {"cluster.replicas": [1, 2], "replica.tp": [1, 2]}
    local = sweep(sc, grid=grid, workers=1).frame
    ray_ = sweep(sc, grid=grid, executor="ray").frame
    pd.testing.assert_frame_equal(local, ray_)


def test_a_grid_may_switch_a_variant_when_the_user_wrote_no_key_of_the_old_one() -> None:
    """The sweep starts from the keys the user wrote, not every default: switching autoscaling.policy
    from none (whose defaults the base scenario filled in) to hpa is valid, while a key the user
    wrote that the new variant lacks is an error row naming it."""
    base = parse_scenario({"kind": "serving", "model": "gpt2", "hardware": "h100-sxm",
                           "workload": {"arrival": {"process": "offline", "requests": 4}}})
    r = sweep(base, grid={"autoscaling.policy": ["none", "hpa"]}, workers=1)
    assert list(r.frame["feasible"]) == [True, True]
    r = sweep(load_scenario(ROOT / "examples/train_gpt3_175b.yaml"), grid={"parallelism.schedule": ["gpipe"]},
              workers=1)
    assert not r.frame["feasible"][0]
    assert "unknown key 'parallelism.virtual_stages'" in r.frame["error"][0]
    assert "under schedule 'gpipe'" in r.frame["error"][0]
