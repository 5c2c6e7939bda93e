"""Bounded serving memory (issue 21 item 3): the per-request record, the streamed mode's sketches,
and the request-count bound of traces."""

from __future__ import annotations

import gc
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from simulator import parse_scenario, simulate_serving, workbound
from simulator.serving.frames import RequestRecord
from simulator.serving.streamed import sketch_of
from simulator.sketch import RELATIVE_ACCURACY, Sketch
from simulator.workbound import WorkTooLarge, allow_large


def doc(n: int) -> dict:
    return {"kind": "serving", "model": "gpt2", "hardware": "h100-sxm", "precision": "bf16",
            "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 64, "max_batched_tokens": 4096},
            "workload": {"arrival": {"process": "poisson", "rate_rps": 400, "requests": n},
                         "prompt_tokens": {"dist": "lognormal", "mean": 200, "sigma": 0.6, "max": 900},
                         "output_tokens": {"dist": "lognormal", "mean": 20, "sigma": 0.5, "max": 100}},
            "cluster": {"replicas": 2, "router": "least_outstanding"}, "seed": 5}


def record(r) -> RequestRecord:
    return next(c.cell_contents for c in r.request_table.__closure__ if isinstance(c.cell_contents, RequestRecord))


# ---- the sketch ------------------------------------------------------------------------------------
def test_sketch_percentiles_within_half_a_percent_of_numpy() -> None:
    rng = np.random.default_rng(1)
    for x in (rng.lognormal(-3, 1.5, 200_000), rng.exponential(0.02, 50_001), rng.uniform(1e-6, 1.0, 777)):
        sk = sketch_of(x)
        qs = [0.01, 0.25, 0.5, 0.9, 0.99, 0.999]
        exact = np.percentile(x, [q * 100 for q in qs])
        got = np.array(sk.quantiles(qs))
        assert np.all(np.abs(got / exact - 1) <= RELATIVE_ACCURACY + 1e-12)
        assert sk.mean == pytest.approx(float(x.mean()), rel=1e-12)    # the mean is exact
        assert sk.n == len(x)


def test_sketch_buckets_by_hand() -> None:
    """α = 0.005: γ = 1.005/0.995; 1.0 falls in bucket ceil(ln 1 / ln γ) = 0, read as 2γ⁰/(γ+1) = 0.995;
    estimates are clipped to the known extremes, so a sketch of one value reads it back exactly."""
    sk = Sketch()
    sk.add(np.array([1.0, 1.0, 0.0, np.nan]))
    assert (sk.n, sk.zeros, sk.counts) == (3, 1, {0: 2})
    assert sk.quantiles([0.0, 1.0]) == pytest.approx([0.0, 0.995], rel=1e-12)
    one = sketch_of(np.full(5, 1.0))
    assert one.quantiles([0.5, 0.99]) == [1.0, 1.0]
    g = 1.005 / 0.995
    sk2 = Sketch()
    sk2.add(np.array([0.5, 1.0, 2.0]))                  # the median is 1.0: bucket 0, read 2/(γ+1)
    assert sk2.quantiles([0.5])[0] == pytest.approx(2 / (g + 1), rel=1e-12)
    assert abs(2 / (g + 1) - 1) <= RELATIVE_ACCURACY
    # 1 µs to 1 h at α = 0.5%: ln(3.6e9) / ln γ ≈ 2,200 buckets, whatever the count
    sk3 = sketch_of(np.geomspace(1e-6, 3600, 1_000_000))
    assert sk3.buckets == pytest.approx(math.log(3.6e9) / math.log(g), abs=2)


def test_sketch_merge_equals_one_sketch() -> None:
    x = np.random.default_rng(2).lognormal(0, 1, 10_000)
    a, b = sketch_of(x[:3000]), sketch_of(x[3000:])
    a.merge(b)
    assert a.counts == sketch_of(x).counts and a.n == 10_000


# ---- streamed vs exact -------------------------------------------------------------------------------
def test_streamed_percentiles_within_the_sketch_bound_and_counts_conserved() -> None:
    sc = parse_scenario(doc(3000))
    exact, streamed = simulate_serving(sc), simulate_serving(sc, exact_below=1)
    for r in (exact, streamed):          # conservation, counted from the requests' states
        assert r.arrived == 3000
        assert r.completed + r.rejected + r.failed + r.in_flight == r.arrived
        assert min(r.completed, r.rejected, r.failed, r.in_flight) >= 0
        st = r.requests.status
        assert (st == "completed").sum() == r.completed and (st == "in_flight").sum() == r.in_flight
    for key in ("completed", "rejected", "throughput_rps", "cost_usd", "slo_attainment"):
        assert exact[key] == streamed[key]
    for name in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
        e, s = getattr(exact, name), getattr(streamed, name)
        for q in ("p50", "p90", "p99"):
            assert abs(getattr(s, q) / getattr(e, q) - 1) <= RELATIVE_ACCURACY + 2e-6   # + 6-digit rounding
        assert s.mean == pytest.approx(e.mean, rel=2e-6)
    for q in ("p50", "p90", "p99"):                      # ITL: the same pooled gaps, streamed into a sketch
        assert abs(getattr(streamed.itl_s, q) / getattr(exact.itl_s, q) - 1) <= RELATIVE_ACCURACY + 2e-6
    assert streamed.itl_s.mean == exact.itl_s.mean
    assert not any("streamed statistics" in w for w in exact.warnings)
    assert any("streamed statistics: 3,000 requests" in w and "±0.5%" in w for w in streamed.warnings)
    assert set(exact.summary) == set(streamed.summary)   # the JSON keeps its shape


# ---- bytes per request -------------------------------------------------------------------------------
def test_request_record_is_60_bytes_a_request() -> None:
    """arrival, prompt, output 8 B each, class 2, three times 24, replica and preemptions 4 each, status and
    reason 1 each: 60 B; under the issue's ~100 B a retained record."""
    r = simulate_serving(parse_scenario(doc(500)))
    rec = record(r)
    assert rec.nbytes == 60 * 500


def test_result_retains_about_a_record_per_request() -> None:
    """Measured with tracemalloc: what a finished run keeps alive per request (the record, its largest
    token gap, and the replicas' small frames) — the replicas, their per-iteration logs and the engines'
    state are freed. Generous bound: 100 B a request (~68 measured, fixed costs included)."""
    simulate_serving(parse_scenario(doc(200)))          # tables and profiles loaded and cached first
    n = 20_000
    sc = parse_scenario(doc(n))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        r = simulate_serving(sc)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert r.completed + r.rejected == n
    assert kept / n <= 100, f"{kept / n:.0f} B per request retained"


# ---- bounds ------------------------------------------------------------------------------------------
def test_trace_request_count_is_bounded_unless_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "t.csv"
    p.write_text("timestamp,prompt_tokens,output_tokens\n" + "".join(f"{i * 0.1:.1f},100,4\n" for i in range(20)))
    monkeypatch.setattr(workbound, "MAX_REQUESTS", 10)
    sc = parse_scenario({"kind": "serving", "model": "gpt2", "hardware": "h100-sxm",
                         "workload": {"arrival": {"process": "trace", "path": str(p)}}})
    with pytest.raises(WorkTooLarge, match=r"the trace has 20 requests .* the bound is 10 requests: cut the trace "
                                           r".*or pass --force to run it anyway"):
        simulate_serving(sc)
    with allow_large():
        assert simulate_serving(sc).completed == 20


def test_drawn_workload_beyond_ten_million_is_refused() -> None:
    sc = parse_scenario({**doc(10_000_001), "workload": {**doc(1)["workload"],
                         "arrival": {"process": "poisson", "rate_rps": 400, "requests": 10_000_001}}})
    with pytest.raises(WorkTooLarge, match=r"about 10,000,001 requests .*bound is 10,000,000 requests.*--force"):
        simulate_serving(sc)
