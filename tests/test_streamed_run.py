"""A streamed serving run (issue 21 item 3: above 10M requests per-request state is freed at completion
and statistics stream): its replicas' logs folded into time bins as it runs (serving.binned), each
request's in-flight state dropped at completion, and numbers that agree with the exact mode's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator import parse_scenario, simulate_serving
from simulator.serving.binned import FIRST_WIDTH_S, FineBins
from simulator.serving.replica import Replica
from simulator.serving.simulate import Cluster, finish, prepare
from simulator.sketch import RELATIVE_ACCURACY, Sketch

ROUNDING = 2e-6      # results are rounded to 6 significant digits


def doc(n: int, **workload) -> dict:
    return {"kind": "serving", "model": "gpt2", "hardware": "h100-sxm", "precision": "bf16",
            "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 64, "max_batched_tokens": 4096},
            "workload": {"arrival": {"process": "poisson", "rate_rps": 400, "requests": n},
                         "prompt_tokens": {"dist": "lognormal", "mean": 200, "sigma": 0.6, "max": 900},
                         "output_tokens": {"dist": "lognormal", "mean": 20, "sigma": 0.5, "max": 100},
                         **workload},
            "slo": {"ttft_p99_s": 0.05, "e2e_p99_s": 0.5},
            "cluster": {"replicas": 2, "router": "least_outstanding"}, "seed": 5}


@pytest.fixture
def small_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fold every 64 rows, so a test-sized run folds hundreds of times (a 10M run: every 16,384)."""
    monkeypatch.setattr(Replica, "fold_rows", 64)


# ---- the bins ------------------------------------------------------------------------------------------
def test_fine_bins_integrate_exactly_by_hand() -> None:
    b = FineBins()
    b.add_intervals("busy", np.array([0.0, 2.0]), np.array([1.0, 3.5]), np.array([1.0, 1.0]))
    b.add_step("queue", np.array([0.5, 1.5]), np.array([4.0, 2.0]), 3.0)    # 4 on [0.5, 1.5), 2 on [1.5, 3)
    assert b.total[2] == 2.5 and b.total[0] == 4 * 1.0 + 2 * 1.5
    assert b.per_bin("busy", np.array([0.0, 2.0, 4.0])).tolist() == [0.5, 0.75]
    assert b.per_bin("queue", np.array([0.0, 1.0, 3.0])).tolist() == [2.0, 2.5]     # (4·0.5)/1, (4·0.5+2·1.5)/2
    # an interval at 100 s: 2,048 bins of 1/64 s cover 32 s, so the width doubles twice (to 1/16 s)
    b.add_intervals("busy", np.array([100.0]), np.array([101.0]), np.array([1.0]))
    assert b.width == 4 * FIRST_WIDTH_S
    assert b.per_bin("busy", np.array([0.0, 2.0, 4.0, 100.0, 102.0])).tolist() == [0.5, 0.75, 0.0, 0.5]
    assert float(b.integral_at("busy", 200.0)) == 3.5


def test_weighted_sketch_equals_repeated_values() -> None:
    a, b = Sketch(), Sketch()
    a.add(np.array([1e-3, 2e-3, np.nan, 5e-3]), np.array([3, 1, 7, 0]))
    b.add(np.array([1e-3, 1e-3, 1e-3, 2e-3]))
    assert (a.counts, a.n, a.zeros, a.total, a.low, a.high) == (b.counts, b.n, b.zeros, b.total, b.low, b.high)


# ---- exact vs streamed ----------------------------------------------------------------------------------
def test_streamed_agrees_with_exact_within_the_sketch_bound(small_folds: None) -> None:
    sc = parse_scenario(doc(4000))
    exact, streamed = simulate_serving(sc), simulate_serving(sc, exact_below=1000)
    for key in ("arrived", "completed", "rejected", "failed", "in_flight", "preemptions", "throughput_rps",
                "output_tokens_per_s", "gpu_utilization", "kv_cache_utilization", "mfu", "cost_usd",
                "energy_kwh", "slo_attainment", "saturation"):
        assert exact[key] == streamed[key], key            # counts and whole-run integrals are exact sums
    for name in ("ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s"):
        e, s = getattr(exact, name), getattr(streamed, name)
        for q in ("p50", "p90", "p99"):
            assert abs(getattr(s, q) / getattr(e, q) - 1) <= RELATIVE_ACCURACY + ROUNDING, (name, q)
        assert s.mean == pytest.approx(e.mean, rel=ROUNDING)     # the same values: exact means
    # the time series: each replica's busy seconds over the bins sum to the exact total; per bin, the
    # folded integrals differ only within the fine bins (1/64 s here) at the result bins' edges
    te, ts = exact.timeseries, streamed.timeseries
    width = exact.time_bin_s
    for rep in te.replica.unique():
        e, s = te[te.replica == rep], ts[ts.replica == rep]
        assert (s.utilization.sum() * width) == pytest.approx(e.utilization.sum() * width, rel=1e-9)
        assert np.abs(s.utilization.to_numpy() - e.utilization.to_numpy()).max() <= 2 * FIRST_WIDTH_S / width
    assert streamed.mbu == pytest.approx(exact.mbu, rel=0.01)
    assert streamed.scaling.equals(exact.scaling)


def test_streamed_counts_are_conserved_from_request_states(small_folds: None) -> None:
    """Cut by a horizon while requests are still running: in flight is counted from their states."""
    sc = parse_scenario(doc(4000, horizon_s=6.0))
    r = simulate_serving(sc, exact_below=1000)
    assert r.in_flight > 0 and r.arrived < 4000
    assert r.completed + r.rejected + r.failed + r.in_flight == r.arrived
    st = r.requests.status[r.requests.arrival_s <= 6.0]
    assert (st == "in_flight").sum() == r.in_flight and (st == "completed").sum() == r.completed
    exact = simulate_serving(sc)
    assert (exact.arrived, exact.completed, exact.in_flight) == (r.arrived, r.completed, r.in_flight)


def test_streamed_run_frees_each_request_at_completion(small_folds: None) -> None:
    """After a streamed run only the requests still in flight have in-flight state, and each replica
    holds fewer log rows than a fold takes (its bins hold the rest)."""
    prep = prepare(parse_scenario(doc(3000, horizon_s=5.0)))
    cluster = Cluster(prep.scenario, prep.reqs, prep.stages, streamed=True)
    end = cluster.run()
    led = cluster.ledger
    pending = set(np.flatnonzero((led.status == 0) & (prep.reqs.arrival <= end)).tolist())
    assert 0 < len(pending) < 200
    assert set(led.first_sched) <= pending and set(led.first_token) <= pending and set(led.generated) <= pending
    for rep in cluster.replicas:
        assert len(rep.busy_start) <= Replica.fold_rows + 1 and len(rep.log_t) < Replica.fold_rows
    r = finish(prep, cluster, end, exact_below=1)
    assert r.requests.ttft_s.isna().all() and r.requests.e2e_s.notna().sum() == r.completed


def test_streamed_run_is_deterministic(small_folds: None) -> None:
    sc = parse_scenario(doc(2000))
    a, b = (json.dumps(simulate_serving(sc, exact_below=1).to_dict(), sort_keys=True) for _ in range(2))
    assert a == b


# ---- the estimate --------------------------------------------------------------------------------------
def test_memory_estimate_uses_the_measured_bytes_of_each_mode() -> None:
    """bench/serving_memory.py measured 524 B a request at 1M (exact) and 103 B at 10M (streamed); the
    estimate rounds them up: 9,999,999 requests are ~4.9 GiB, 10M (streamed) ~1.0 GiB."""
    from simulator import workbound
    from simulator.serving.streamed import EXACT_BELOW

    assert workbound.bytes_per_request(EXACT_BELOW - 1) == 530
    assert workbound.bytes_per_request(EXACT_BELOW) == 110
    assert (EXACT_BELOW - 1) * 530 / 2**30 == pytest.approx(4.936, abs=1e-3)
    assert EXACT_BELOW * 110 / 2**30 == pytest.approx(1.024, abs=1e-3)
