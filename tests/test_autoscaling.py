"""Autoscaling controllers against hand-computed sequences; cold starts, scale to zero, faults, spot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from simulator import CapsimError, ServingResult, ServingScenario, parse_scenario, simulate_serving
from simulator.scenario import scenario_yaml
from simulator.serving.autoscalers import (
    AUTOSCALERS,
    HPA,
    KPA,
    Observation,
    Predictive,
    QueueConfig,
    QueueScaler,
    RayServe,
    Scheduled,
)


def obs(metric: float, ready: int, conc: float | None = None) -> Observation:
    return Observation(metric=metric, concurrency=metric * ready if conc is None else conc, ready=ready)


def test_hpa_formula_tolerance_and_scale_up_limit() -> None:
    h = HPA(target=10, min_replicas=1, max_replicas=50, down_window_s=0.0)
    assert h.step(15, 4, obs(10.9, 4)) == 4          # 9% over target: inside the 0.1 tolerance
    assert h.step(30, 4, obs(15.0, 4)) == 6          # ceil(4 · 15/10)
    assert h.step(45, 6, obs(100.0, 6)) == 12        # ceil(6 · 10) = 60, limited to max(2·6, 6+4)
    assert h.step(60, 2, obs(100.0, 2)) == 6         # limited to max(2·2, 2+4) = 6
    assert h.step(75, 10, obs(2.5, 10)) == 3         # ceil(10 · 0.25), no stabilization window
    assert h.step(90, 3, obs(1000.0, 3)) == 7        # max(6, 7)
    assert h.step(105, 40, obs(30.0, 40)) == 50      # clamped to max_replicas


def test_hpa_scale_down_stabilization_takes_the_max_of_the_window() -> None:
    h = HPA(target=10, min_replicas=1, max_replicas=20)   # 300 s down window
    seq = [(0, 10, 20.0), (15, 20, 5.0), (30, 20, 2.0), (300, 20, 2.0), (316, 10, 2.0)]
    out = [h.step(t, cur, obs(m, cur)) for t, cur, m in seq]
    # raw recommendations ceil(cur · m / 10): 20, 10, 4, 4, 2. Scale-down takes the max of the
    # recommendations in the last 300 s: 20 holds until t=0 leaves the window; at 300 the window
    # (0, 300] holds 10, 4, 4 → 10; at 316, (16, 316] holds 4, 4, 2 → 4.
    assert out == [20, 20, 20, 10, 4]


def test_kpa_panics_on_a_burst_and_never_scales_down_while_panicking() -> None:
    k = KPA(target=10, target_utilization=1.0, min_replicas=0, max_replicas=100)
    t = 0.0
    for _ in range(30):                                     # 60 s at 10 concurrent → 1 replica
        t += 2
        n = k.step(t, 1, Observation(concurrency=10, ready=1))
    assert n == 1
    t += 2
    n = k.step(t, 1, Observation(concurrency=100, ready=1))  # 6 s window mean (10+10+100)/3 = 40 → 4 ≥ 2×1
    assert n == 4 and k.panic_until == t + 60
    t += 2
    n = k.step(t, 4, Observation(concurrency=0, ready=4))   # load gone, but panicking: keep 4
    assert n == 4
    for _ in range(40):                                      # after a quiet stable window: back down
        t += 2
        n = k.step(t, 4, Observation(concurrency=0, ready=4))
    assert n == 0


def test_ray_serve_delays() -> None:
    r = RayServe(target=2, min_replicas=1, max_replicas=10)
    assert r.step(10, 1, Observation(concurrency=8)) == 1    # wants 4, must persist 30 s
    assert r.step(20, 1, Observation(concurrency=8)) == 1
    assert r.step(40, 1, Observation(concurrency=8)) == 4    # 30 s since it first wanted more
    for t in range(50, 640, 10):
        n = r.step(t, 4, Observation(concurrency=0))
        assert n == (4 if t < 70 + 600 else 1)                 # look-back clears at 70, then 600 s delay


def test_scheduled_and_predictive_by_hand() -> None:
    s = Scheduled([(0, 2), (3600, 5), (7200, 3)], period_s=86400, min_replicas=0, max_replicas=10)
    assert [s.at(t) for t in (0, 3599, 3600, 9000, 86400 + 4000)] == [2, 2, 5, 3, 5]
    p = Predictive(target=4.0, lead_s=300, rate_at=lambda t: 10 if t < 1000 else 30, min_replicas=1, max_replicas=20)
    assert p.step(0, 1, Observation()) == 3                # ceil(10/4)
    assert p.step(750, 3, Observation()) == 8              # the 30 req/s at t=1000 is within the 300 s lead


def test_queue_scaler_scales_on_queued_requests_and_to_zero_only_after_the_cooldown() -> None:
    cfg = QueueConfig(min_replicas=0)
    assert cfg.per_replica_metric() == "queue" and cfg.sync_period_s == 30 and cfg.cooldown_s == 300
    q = QueueScaler.from_config(cfg, cold_start_s=60, rate_at=None)
    assert q.period == 30
    # 15 queued per replica against a target of 5: ceil(2 · 15/5) = 6, within max(2·2, 2+4)
    assert q.step(30, 2, Observation(metric=15, concurrency=40, queued=30, ready=2)) == 6
    idle = Observation(ready=6)
    assert q.step(60, 6, idle) == 1                    # nothing queued: HPA says 0, held at 1 until the cooldown
    assert q.step(330, 1, idle) == 1                   # idle for 270 s
    assert q.step(360, 1, idle) == 0                   # idle for 300 s: KEDA's cooldown, scale to zero
    assert q.step(390, 0, Observation(concurrency=12, queued=12)) == 3      # from zero: ceil(12 / 5)


# ---- the tagged union on autoscaling.policy ---------------------------------------------------------
BASE = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm"}


def test_a_knob_of_another_policy_is_an_error_naming_key_policy_and_allowed_keys() -> None:
    with pytest.raises(CapsimError) as e:
        parse_scenario({**BASE, "autoscaling": {"policy": "hpa", "panic_window_s": 6}})
    msg = str(e.value)
    assert "unknown key 'autoscaling.panic_window_s'" in msg and "under policy 'hpa'" in msg
    assert "allowed keys: policy, node_provision_s, model_load_s, min_replicas, max_replicas, sync_period_s, metric, " \
           "target, tolerance, scale_down_stabilization_s, scale_up_stabilization_s" in msg
    assert "(panic_window_s is a key of policy kpa)" in msg
    with pytest.raises(CapsimError, match=r"unknown key 'autoscaling.max_replicas'; allowed keys: policy, "
                                          r"node_provision_s, model_load_s under policy 'none'"):
        parse_scenario({**BASE, "autoscaling": {"max_replicas": 4}})      # a fixed fleet has no bounds
    with pytest.raises(CapsimError, match=r"unknown key 'services.0.autoscaling.tolerance'.* under policy 'ray'"):
        parse_scenario({**BASE, "services": [{"name": "a", "autoscaling": {"policy": "ray", "tolerance": 0.2}}]})
    with pytest.raises(CapsimError, match="policy must be one of none, hpa, kpa, ray, queue, scheduled, predictive"):
        parse_scenario({**BASE, "autoscaling": {"policy": "hap"}})


def test_each_policy_checks_its_own_requirements() -> None:
    for doc, why in [({"policy": "scheduled"}, "policy scheduled needs schedule"),
                     ({"policy": "predictive"}, "policy predictive needs target"),
                     ({"policy": "kpa", "min_replicas": 5, "max_replicas": 2}, r"min_replicas \(5\) exceeds max_replicas")]:
        with pytest.raises(CapsimError, match=rf"autoscaling: Value error, {why}"):
            parse_scenario({**BASE, "autoscaling": doc})


def test_policy_defaults_are_the_configs_own_and_show_in_the_scenario() -> None:
    """The effective sync period, target and windows of each policy, as ``scenario_yaml`` writes them."""
    want: dict[str, dict[str, Any]] = {
        "none": {},
        "hpa": {"sync_period_s": 15.0, "target": 8.0, "scale_down_stabilization_s": 300.0,
                "scale_up_stabilization_s": 0.0, "tolerance": 0.1, "metric": "concurrency"},
        "kpa": {"sync_period_s": 2.0, "target": 100.0, "target_utilization": 0.7, "stable_window_s": 60.0,
                "panic_window_s": 6.0, "panic_threshold": 2.0},
        "ray": {"sync_period_s": 10.0, "target": 2.0, "look_back_s": 30.0, "scale_up_stabilization_s": 30.0,
                "scale_down_stabilization_s": 600.0},
        "queue": {"sync_period_s": 30.0, "target": 5.0, "tolerance": 0.1, "cooldown_s": 300.0},
        "scheduled": {"sync_period_s": 15.0},
        "predictive": {"sync_period_s": 30.0, "forecast": "pattern", "forecast_period_s": 86400.0, "headroom": 1.0}}
    extra: dict[str, dict[str, Any]] = {"scheduled": {"schedule": [[0, 2]]}, "predictive": {"target": 3.0}}
    assert list(want) == AUTOSCALERS.names()
    for policy, keys in want.items():
        sc = parse_scenario({**BASE, "autoscaling": {"policy": policy, **extra.get(policy, {})}})
        shown = yaml.safe_load(scenario_yaml(sc))["autoscaling"]
        assert shown == {"policy": policy, "node_provision_s": 120.0, **({} if policy == "none" else
                         {"min_replicas": 1, "max_replicas": 10}), **keys, **extra.get(policy, {})}, policy


def test_every_autoscaling_key_says_what_it_does_and_where_its_default_comes_from() -> None:
    for policy, cfg in AUTOSCALERS.members.items():
        for key, f in cfg.model_fields.items():
            assert f.description, f"{policy}.{key} has no description"
            if key != "policy" and f.default is not None:
                assert "default" in f.description, f"{policy}.{key}: no default source in {f.description!r}"


def test_a_failed_replica_of_a_fixed_fleet_is_replaced_after_the_cold_start() -> None:
    r = serve(workload={"arrival": {"process": "poisson", "rate_rps": 4, "requests": 2000}},
              cluster={"replicas": 2}, faults={"replica_mtbf_hours": 0.02},
              autoscaling={"node_provision_s": 30, "model_load_s": 45})
    assert r["cold_start_s"] == 75 and r["replica_failures"] > 0
    sf = r.scaling_frame()
    assert sf.replicas_requested.round(6).max() == 2            # each loss is replaced at once ...
    assert sf.replicas_ready.min() < 2                           # ... and serves a cold start later


SERVE: dict[str, Any] = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "replica": {"max_num_seqs": 64},
         "workload": {"prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 128}},
         "seed": 2}


def run(doc: dict[str, Any]) -> ServingResult:
    sc = parse_scenario(doc)
    assert isinstance(sc, ServingScenario)
    return simulate_serving(sc)


def serve(**over: Any) -> ServingResult:
    d = {**SERVE, **over}
    d["workload"] = {**SERVE["workload"], **over.get("workload", {})}
    return run(d)


def test_step_load_waits_for_the_cold_start() -> None:
    r = serve(workload={"duration_s": 1800.0,
                        "arrival": {"process": "diurnal", "schedule": [[0, 2], [600, 40]]}},
              autoscaling={"policy": "hpa", "target": 8, "min_replicas": 1, "max_replicas": 12,
                           "node_provision_s": 60, "model_load_s": 120},
              cluster={"replicas": 1})
    sf = r.scaling_frame()
    cold = r["cold_start_s"]
    assert cold == 180
    # replicas are requested at the step, and become ready only a cold start later
    asked = sf.loc[sf.replicas_requested > 1.5, "t_s"].min()
    ready = sf.loc[sf.replicas_ready > 1.5, "t_s"].min()
    assert 600 - 15 <= asked <= 600 + 30 and ready >= asked + cold - 15
    # latency rises while the new replicas start, then recovers
    before = sf[(sf.t_s > 300) & (sf.t_s < 580)].e2e_p99_s.max()
    during = sf[(sf.t_s > 600) & (sf.t_s < asked + cold)].e2e_p99_s.max()
    after = sf[sf.t_s > 1500].e2e_p99_s.max()
    assert during > 3 * before and after < during
    assert r["replicas"]["max"] > 4 and r["completed"] == r["arrived"]


def test_scale_to_zero_buffers_requests_until_a_replica_is_ready() -> None:
    r = serve(workload={"duration_s": 2400.0, "arrival": {"process": "diurnal", "schedule": [[0, 1], [300, 0], [1500, 1]]}},
              autoscaling={"policy": "kpa", "target": 4, "min_replicas": 0, "max_replicas": 4, "node_provision_s": 30,
                           "model_load_s": 30},
              cluster={"replicas": 1})
    sf = r.scaling_frame()
    assert (sf[(sf.t_s > 900) & (sf.t_s < 1450)].replicas_requested == 0).all()     # scaled to zero when idle
    q = r.requests
    first_back = q[q.arrival_s >= 1500].iloc[0]
    assert first_back.e2e_s > 60                     # waited for a 60 s cold start from zero
    assert r["completed"] == r["arrived"]


def test_nothing_is_lost_under_failures_and_spot_preemptions() -> None:
    r = serve(workload={"arrival": {"process": "poisson", "rate_rps": 8, "requests": 6000}},
              cluster={"replicas": 3},
              faults={"replica_mtbf_hours": 0.05, "spot_fraction": 0.5, "spot_preemptions_per_hour": 20,
                      "spot_notice_s": 30, "max_retries": 1},
              autoscaling={"node_provision_s": 20, "model_load_s": 20})
    assert r["replica_failures"] > 0 and r["spot_preemptions"] > 0 and r["retries"] > 0
    assert r["completed"] + r["rejected"] + r["failed"] + r["in_flight"] == r["arrived"] == 6000
    assert r["in_flight"] == 0
    q = r.requests
    assert set(q.status) <= {"completed", "failed", "rejected"}
    assert (q.status == "failed").sum() == r["failed"]


def test_predictive_meets_the_slo_with_fewer_replica_hours_than_static_peak() -> None:
    day = {"duration_s": 7200.0, "arrival": {"process": "diurnal", "mean_rps": 6, "peak_to_trough": 4,
                                             "period_s": 7200, "peak_at_s": 3600}}
    slo = {"ttft_p99_s": 1.0, "tpot_p99_s": 0.05}
    static = serve(workload=day, slo=slo, cluster={"replicas": 3})
    pred = serve(workload=day, slo=slo, cluster={"replicas": 1},
                 autoscaling={"policy": "predictive", "target": 3.5, "min_replicas": 1, "max_replicas": 6})
    assert static["slo_met"] and pred["slo_met"]
    assert pred["replica_hours"] < 0.8 * static["replica_hours"]
    assert pred["cost_usd"] < static["cost_usd"]


def test_static_fleet_cost_is_replicas_times_span() -> None:
    r = serve(workload={"arrival": {"process": "poisson", "rate_rps": 2, "requests": 200}},
              cluster={"replicas": 2}, pricing={"usd_per_gpu_hour": 3.0})
    assert r["replica_hours"] == pytest.approx(2 * r["simulated_s"] / 3600, rel=1e-4)
    assert r["cost_usd"] == pytest.approx(r["replica_hours"] * 3.0, rel=1e-4)
    assert np.isclose(r.scaling_frame().cost_usd_accrued.iloc[-1], r["cost_usd"], rtol=1e-4)


CHAIN = {"kind": "serving", "name": "chain", "model": "llama-3.1-8b", "hardware": "h100-sxm",
         "workload": {"arrival": {"process": "poisson", "rate_rps": 20, "requests": 1500},
                      "prompt_tokens": {"dist": "fixed", "value": 600}, "output_tokens": {"dist": "fixed", "value": 50}},
         "services": [
             {"name": "embed", "model": "bert-large", "hardware": "l4", "cache_hit_rate": 0.4,
              "replica": {"batching": "dynamic", "max_batch_size": 16, "latency_table": [[1, 0.004], [16, 0.02]]},
              "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 1}},
             {"name": "llm", "replica": {"max_queue": 3, "max_num_seqs": 4}, "cluster": {"replicas": 1}}],
         "network_hop_ms": 5, "pricing": {"usd_per_gpu_hour": 1.0}, "seed": 5}


def test_multi_stage_chain_conserves_requests_and_adds_latency() -> None:
    r = run(CHAIN)
    svc = r["services"]
    assert svc["embed"]["reached"] == 1500
    assert svc["embed"]["cache_hits"] == pytest.approx(600, abs=60)          # 40% from the cache
    # the LLM sees what the embedder passed on; its small queue rejects some, which end the chain
    assert svc["llm"]["reached"] == 1500
    assert r["rejected"] > 0 and r["rejected_by_reason"] == {"queue_full": r["rejected"]}
    assert r["completed"] + r["rejected"] + r["failed"] + r["in_flight"] == r["arrived"] == 1500
    # end-to-end includes the embedding (>= 4 ms unless cached) and the 5 ms hop
    q = r.requests
    assert (q.loc[q.status == "completed", "e2e_s"] >= 0.005).all()
    assert r["cost_usd"] == pytest.approx(svc["embed"]["cost_usd"] + svc["llm"]["cost_usd"], rel=1e-4)
    assert r["replica_hours"] == pytest.approx(svc["embed"]["replica_hours"] + svc["llm"]["replica_hours"], rel=1e-4)


def test_chain_service_keys_are_validated() -> None:
    bad = {**CHAIN, "services": [{"name": "x", "replica": {"tpp": 2}}]}
    with pytest.raises(CapsimError, match=r"unknown key 'services\.0\.replica\.tpp'; allowed keys: batching, tp, pp"):
        parse_scenario(bad)
    dup = {**CHAIN, "services": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(CapsimError, match=r"services: names must be unique \(got a, a\)"):
        run(dup)
