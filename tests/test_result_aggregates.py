"""Aggregates the results compute once for the TUI and the report, against hand computations from
the frames: fleet GPU busy and KV use per time bin, each replica's utilization, pipeline-busy
shares, and the training run's cost split."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import parse_scenario, simulate_serving, simulate_training

STATIC = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "name": "static",
          "workload": {"arrival": {"process": "poisson", "rate_rps": 12, "requests": 1200},
                       "prompt_tokens": {"dist": "lognormal", "mean": 800}, "output_tokens": {"dist": "fixed", "value": 120}},
          "cluster": {"replicas": 2}}
SCALED = {**STATIC, "name": "scaled",
          "workload": {"arrival": {"process": "gamma", "rate_rps": 6, "cv": 2, "requests": 900},
                       "prompt_tokens": {"dist": "lognormal", "mean": 600}, "output_tokens": {"dist": "fixed", "value": 100}},
          "autoscaling": {"policy": "hpa", "target": 2, "min_replicas": 1, "max_replicas": 4, "node_provision_s": 20,
                          "model_load_s": 10, "scale_down_stabilization_s": 30}}
CHAIN = {"kind": "serving", "name": "chain", "model": "llama-3.1-8b", "hardware": "h100-sxm",
         "workload": {"arrival": {"process": "poisson", "rate_rps": 10, "requests": 400},
                      "prompt_tokens": {"dist": "fixed", "value": 600}, "output_tokens": {"dist": "fixed", "value": 50}},
         "services": [
             {"name": "embed", "model": "bert-large", "hardware": "l4",
              "replica": {"batching": "dynamic", "max_batch_size": 16, "latency_table": [[1, 0.004], [16, 0.02]]},
              "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 1}},
             {"name": "llm", "cluster": {"replicas": 2}}]}


def test_fleet_busy_of_a_static_fleet_is_summed_utilization_over_the_ready_replicas() -> None:
    r = simulate_serving(parse_scenario(STATIC))
    fleet, ts, sf = r.fleet_frame(), r.timeseries_frame(), r.scaling_frame()
    assert len(fleet) == len(sf) and (fleet.t_s.to_numpy() == sf.t_s.to_numpy()).all()
    np.testing.assert_allclose(fleet.replicas_up, sf.replicas_ready)          # no replica starts or drains
    per_bin = ts.groupby("t_s")[["utilization", "queue", "running", "kv_cache_utilization"]].sum()
    np.testing.assert_allclose(fleet.gpu_busy, (per_bin.utilization.to_numpy() / 2).clip(0, 1))
    np.testing.assert_allclose(fleet.kv_cache_utilization, (per_bin.kv_cache_utilization.to_numpy() / 2).clip(0, 1))
    np.testing.assert_allclose(fleet.queue, per_bin.queue)
    np.testing.assert_allclose(fleet.running, per_bin.running)
    assert fleet.gpu_busy.between(0, 1).all()
    # bins weighted by the replicas up give back the headline utilization
    assert np.average(fleet.gpu_busy, weights=fleet.replicas_up) == pytest.approx(r.gpu_utilization, abs=2e-4)
    assert np.average(fleet.kv_cache_utilization, weights=fleet.replicas_up) == pytest.approx(
        r.kv_cache_utilization, abs=2e-4)


def test_fleet_and_replica_numbers_of_an_autoscaled_run_match_the_headline() -> None:
    r = simulate_serving(parse_scenario(SCALED))
    fleet, ts, reps = r.fleet_frame(), r.timeseries_frame(), r.replica_frame()
    assert len(reps) > 1 and (reps.ready_s < reps.ready_s.max() - 1).any()     # replicas came and went
    width = r.time_bin_s
    # replicas up per bin add up to each replica's ready seconds, busy seconds to the time series
    assert (fleet.replicas_up * width).sum() == pytest.approx(reps.ready_s.sum(), rel=1e-9)
    busy_from_ts = (ts.groupby("replica").utilization.sum() * width).reindex(reps.replica)
    np.testing.assert_allclose(reps.busy_s, busy_from_ts, rtol=1e-9, atol=1e-9)
    up_any = reps.ready_s > 0            # a replica ready only after the last request finished was never up
    np.testing.assert_allclose(reps.gpu_utilization[up_any], (reps.busy_s / reps.ready_s)[up_any])
    assert (reps.gpu_utilization[~up_any] == 0).all() and (reps.busy_s[~up_any] == 0).all()
    assert reps.busy_s.sum() / reps.ready_s.sum() == pytest.approx(r.gpu_utilization, abs=1e-4)
    up = fleet.replicas_up.to_numpy()
    summed = ts.groupby("t_s").utilization.sum().to_numpy()
    np.testing.assert_allclose(fleet.gpu_busy, np.where(up > 1e-9, summed / np.maximum(up, 1e-300), 0.0).clip(0, 1))
    assert np.average(fleet.gpu_busy, weights=up) == pytest.approx(r.gpu_utilization, abs=2e-4)


def test_multi_service_fleet_kv_is_the_answering_services_and_services_match_their_replicas() -> None:
    r = simulate_serving(parse_scenario(CHAIN))
    assert r.services is not None
    fleet, ts, reps = r.fleet_frame(), r.timeseries_frame(), r.replica_frame()
    assert list(reps.service.unique()) == ["embed", "llm"]
    llm_kv = ts[ts.service == "llm"].groupby("t_s").kv_cache_utilization.sum().to_numpy()
    llm_up = ts[ts.service == "llm"].groupby("t_s").replica.nunique().to_numpy()     # static: 2 from t = 0
    np.testing.assert_allclose(fleet.kv_cache_utilization, (llm_kv / llm_up).clip(0, 1))
    np.testing.assert_allclose(fleet.replicas_up, 3.0)
    for name, svc in r.services.items():
        mine = reps[reps.service == name]
        assert mine.busy_s.sum() / mine.ready_s.sum() == pytest.approx(svc.gpu_utilization, abs=1e-4)


def test_pipeline_busy_and_the_runs_cost_split_by_hand() -> None:
    r = simulate_training(parse_scenario({
        "kind": "training", "model": "megatron-1.7b", "hardware": "a100-sxm-80gb", "name": "agg",
        "cluster": {"nodes": 1, "gpus_per_node": 8}, "parallelism": {"tp": 2, "pp": 4},
        "training": {"seq_len": 2048, "global_batch": 16, "micro_batch": 2, "total_tokens": 1e9},
        "reliability": {"node_mtbf_hours": 200, "runs": 20}}))
    tl = r.timeline_frame()
    one = r.pipeline_busy(bins=1)
    assert one == pytest.approx([(tl.end_s - tl.start_s).sum() / (tl.end_s.max() * tl.stage.nunique())])
    shares = r.pipeline_busy()
    assert len(shares) == 60 and np.mean(shares) == pytest.approx(one[0])
    assert shares[0] < max(shares) and shares[-1] < max(shares)        # the pipeline fills and drains
    assert r.job is not None
    work, lost = r.job.cost_split_usd()
    assert work + lost == pytest.approx(r.job.cost_usd) and lost > 0
    assert work == pytest.approx(r.job.cost_usd * r.job.compute_days_without_failures / r.job.time_to_train_days)
