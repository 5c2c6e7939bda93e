"""The serving result's frames, built on first read from the arrays the run keeps
(simulator.serving.result_frames), against values derived by hand: one replica answering each
request in exactly 1.5 s (a measured latency table), two closed-loop users, six requests.

By hand: the users send at 0 and 0; the replica serves [0, 1.5], [1.5, 3], [3, 4.5], ..., [7.5, 9]
back to back, and each user sends again when its request is done, so the arrivals are 0, 0, 1.5,
3, 4.5, 6 and the completions 1.5, 3, 4.5, 6, 7.5, 9. One request waits from 0 to 7.5 (every start
is another's arrival), none after. The run ends at 9 s: nine bins of 1 s."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import parse_scenario, simulate_serving
from simulator.serving.scale_events import scale_activity

DOC = {"kind": "serving", "model": "bert-large", "hardware": "l4", "name": "by-hand",
       "replica": {"batching": "none", "latency_table": [[1, 1.5]]},
       "workload": {"arrival": {"process": "closed_loop", "concurrency": 2, "requests": 6},
                    "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 1}}}
NAN = np.nan


@pytest.fixture(scope="module")
def result():
    return simulate_serving(parse_scenario(DOC))


def test_the_frames_are_built_once_when_first_read(result) -> None:
    assert "timeseries" not in vars(result.frames) and "fleet" not in vars(result.frames)
    assert result.timeseries is result.timeseries_frame() is result.frames.timeseries
    assert result.fleet is result.fleet_frame() and result.scaling is result.scaling_frame()


def test_per_request_records_by_hand(result) -> None:
    f = result.requests_frame()
    assert f.arrival_s.tolist() == [0, 0, 1.5, 3, 4.5, 6]
    assert f.e2e_s.tolist() == [1.5, 3, 3, 3, 3, 3]
    assert f.queue_s.tolist() == [0, 1.5, 1.5, 1.5, 1.5, 1.5]
    assert f.status.tolist() == ["completed"] * 6 and f.replica.tolist() == [0] * 6


def test_time_series_by_hand(result) -> None:
    ts = result.timeseries_frame()
    assert result.simulated_s == 9.0 and result.time_bin_s == 1.0
    assert ts.t_s.tolist() == [float(t) for t in range(9)]
    assert ts.service.tolist() == ["by-hand"] * 9 and ts.replica.tolist() == [0] * 9
    assert ts.queue.tolist() == [1, 1, 1, 1, 1, 1, 1, 0.5, 0]      # one waits until the last starts at 7.5
    assert ts.running.tolist() == [1.0] * 9 and ts.utilization.tolist() == [1.0] * 9
    assert ts.batch_tokens.tolist() == [1.0] * 9                    # one request per forward
    assert ts.kv_cache_utilization.tolist() == [0.0] * 9            # an encoder keeps no KV cache
    # the arrays the summary reads are the frame's columns, row for row
    np.testing.assert_array_equal(result.frames.column("running", "by-hand"), ts.running.to_numpy())
    assert len(result.frames.column("running", "another service")) == 0


def test_scaling_series_by_hand(result) -> None:
    sf = result.scaling_frame()
    assert sf.arrival_rps.tolist() == [2, 1, 0, 1, 1, 0, 1, 0, 0]
    assert sf.replicas_requested.tolist() == [1.0] * 9 and sf.replicas_ready.tolist() == [1.0] * 9
    # completions at 1.5 (e2e 1.5), 3, 4.5, 6, 7.5 and at the end, 9 (the last bin): e2e 3 each
    np.testing.assert_array_equal(sf.e2e_p50_s, [NAN, 1.5, NAN, 3, 3, NAN, 3, 3, 3])
    np.testing.assert_array_equal(sf.e2e_p99_s, [NAN, 1.5, NAN, 3, 3, NAN, 3, 3, 3])
    # one L4 paid from 0 at its price per GPU-hour, accrued at each bin's end
    np.testing.assert_allclose(sf.cost_usd_accrued, np.arange(1, 10) / 3600 * result.usd_per_gpu_hour, rtol=1e-12)
    assert scale_activity(sf) == scale_activity(result.frames.scaling_columns)
    assert scale_activity(result.frames.scaling_columns).events == 0


def test_fleet_and_replica_totals_by_hand(result) -> None:
    fleet = result.fleet_frame()
    assert fleet.replicas_up.tolist() == [1.0] * 9 and fleet.gpu_busy.tolist() == [1.0] * 9
    assert fleet.queue.tolist() == [1, 1, 1, 1, 1, 1, 1, 0.5, 0] and fleet.running.tolist() == [1.0] * 9
    reps = result.replica_frame()
    assert reps.to_dict("records") == [{"service": "by-hand", "replica": 0, "busy_s": 9.0, "ready_s": 9.0,
                                        "gpu_utilization": 1.0}]
    assert result.gpu_utilization == 1.0


def test_flaps_from_arrays_and_from_a_frame_agree() -> None:
    pd = pytest.importorskip("pandas")
    # 1 -> 2 at 100 s, back to 1 at 400 s (a flap), 2 at 700 s (a flap), 3 at 2000 s
    cols = {"t_s": np.array([0.0, 100, 400, 700, 2000]), "replicas_requested": np.array([1.0, 2, 1, 2, 3])}
    a = scale_activity(cols)
    assert (a.events, a.ups, a.downs, a.flaps, a.oscillating) == (4, 3, 1, 2, True)
    assert scale_activity(pd.DataFrame(cols)) == a
    assert scale_activity({"t_s": np.zeros(0), "replicas_requested": np.zeros(0)}).events == 0
