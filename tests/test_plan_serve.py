"""``capsim plan serve`` / ``plan_serving`` (issue 18 item 2): capacity per replica under the SLO, the
replicas at peak checked as a fleet, prices by hand from hardware_profiles/prices.yaml, the new SLO
percentile keys. Candidates are restricted so each test runs a handful of simulations."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from simulator.errors import CapsimError
from simulator.plan.capacity import analytic_capacity, max_rate_per_replica, with_rate
from simulator.plan.serving import candidate_doc, plan_serving
from simulator.scenario import parse_scenario
from simulator.serving import simulate_serving

runner = CliRunner()
P5_PER_GPU = 55.04 / 8          # aws p5.48xlarge on demand, $/GPU-hour (prices.yaml)
HOURS_PER_MONTH = 730           # 8,760 / 12


def _fleet_meets(doc: dict, replicas: int, rate: float) -> bool:
    d = with_rate(doc, rate, requests=max(600 * replicas, math.ceil(rate * 10 * doc["slo"].get("ttft_p99_s", 0))))
    d = {**d, "cluster": {**d["cluster"], "replicas": replicas}, "autoscaling": {"policy": "none"}}
    return bool(simulate_serving(parse_scenario(d)).slo_met)


@pytest.fixture(scope="module")
def llama70b() -> dict:
    r = runner.invoke(app, ["plan", "serve", "--model", "llama-3.1-70b", "--rate", "30", "--slo", "ttft_p99_s=2",
                            "--gpu", "h100-sxm", "--tp", "8", "--prompt-tokens", "800", "--output-tokens", "250",
                            "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_the_70b_question_in_one_command(llama70b: dict) -> None:
    best = llama70b["best"]
    for key in ("hardware", "tp", "engine", "replicas", "max_rate_per_replica_rps", "usd_per_hour", "usd_per_month",
                "cost_per_million_tokens_usd"):
        assert key in best
    assert (best["hardware"], best["tp"], best["engine"]) == ("h100-sxm", 8, "vllm")
    assert len(llama70b["candidates"]) == 1 and llama70b["candidates"][0] == best
    n = best["replicas"]
    # by hand: n replicas x 8 GPUs x $6.88; a month of 730 hours; output tokens at the peak: 30 x 250 per second
    assert best["usd_per_hour"] == pytest.approx(n * 8 * P5_PER_GPU, rel=1e-6)
    assert best["usd_per_month"] == pytest.approx(n * 8 * P5_PER_GPU * HOURS_PER_MONTH, rel=1e-4)
    assert best["cost_per_million_tokens_usd"] == pytest.approx(n * 8 * P5_PER_GPU / (30 * 250 * 3600) * 1e6, rel=1e-4)
    assert best["replicas_at_2x"] >= n and best["replicas_at_3x"] >= best["replicas_at_2x"]


def test_replicas_meet_the_peak_and_one_fewer_does_not(llama70b: dict) -> None:
    best = llama70b["best"]
    n, cap = best["replicas"], best["max_rate_per_replica_rps"]
    assert best["replicas_verified"]
    assert n * cap >= 30
    doc = candidate_doc(model="llama-3.1-70b", hardware="h100-sxm", tp=8, engine="vllm", precision="bf16",
                        slo={"ttft_p99_s": 2.0}, prompt={"dist": "fixed", "value": 800},
                        output={"dist": "fixed", "value": 250}, pricing={"market": "on_demand"}, generative=True, seed=7)
    assert _fleet_meets(doc, n, 30.0)
    assert n == 1 or not _fleet_meets(doc, n - 1, 30.0)


def test_capacity_search_brackets_the_boundary() -> None:
    # Llama-3.1-8B on one H100: the rate found meets the SLO, the bracket's top (within 5%) does not
    doc = candidate_doc(model="llama-3.1-8b", hardware="h100-sxm", tp=1, engine="vllm", precision="bf16",
                        slo={"ttft_p99_s": 0.5}, prompt={"dist": "fixed", "value": 1024},
                        output={"dist": "fixed", "value": 128}, pricing={}, generative=True, seed=7)
    r = max_rate_per_replica(doc)
    lo, hi = r.bracket_rps
    assert r.max_rate_rps == lo > 0 and hi > lo and (hi - lo) <= 0.05 * hi
    assert dict(r.probes)[lo] is True and dict(r.probes)[hi] is False
    assert simulate_serving(parse_scenario(with_rate(doc, lo))).slo_met
    assert r.simulations <= 12


def test_vit_on_l4_and_t4_priced_from_one_gpu_instances() -> None:
    plan = plan_serving(model="vit-b-16", peak_rps=2000, slo={"e2e_p99_s": 0.1}, gpus=["l4", "t4"], tps=[1], verify=2)
    assert not plan.generative
    by = {c.hardware: c for c in plan.candidates}
    # g6.xlarge (1 L4) $0.8048/h and g4dn.xlarge (1 T4) $0.526/h, not the 4-GPU g6.12xlarge ($1.1504/GPU-h)
    assert by["l4"].usd_per_gpu_hour == pytest.approx(0.8048) and "g6.xlarge" in (by["l4"].price_source or "")
    assert by["t4"].usd_per_gpu_hour == pytest.approx(0.526) and "g4dn.xlarge" in (by["t4"].price_source or "")
    for c in by.values():
        assert c.meets_slo and c.replicas is not None
        assert c.replicas * c.max_rate_per_replica_rps >= 2000
        assert c.usd_per_hour == pytest.approx(c.replicas * c.usd_per_gpu_hour, rel=1e-4)
        # per million images at 2,000/s
        assert c.cost_per_million_tokens_usd == pytest.approx(c.usd_per_hour / (2000 * 3600) * 1e6, rel=1e-3)
    assert plan.best is not None and plan.best.usd_per_hour == min(c.usd_per_hour for c in by.values())


def test_nothing_meets_shows_the_closest_misses_and_their_limit() -> None:
    # a 70B model on one L4 (24 GiB): the weights do not fit; TTFT 1 ms is below any prefill
    plan = plan_serving(model="llama-3.1-70b", peak_rps=1, slo={"ttft_p99_s": 0.001}, gpus=["l4", "h100-sxm"],
                        tps=[1, 8])
    assert plan.best is None and plan.closest_misses
    limits = {(c.hardware, c.tp): c.limit for c in plan.candidates}
    assert limits[("l4", 1)] == "memory" and limits[("h100-sxm", 8)] == "latency_floor"
    assert plan.closest_misses[0].limit == "latency_floor"


def test_analytic_latency_floor_by_hand() -> None:
    # the floor is the iteration time of one prompt alone: a 2-token budget below it cannot be met
    doc = candidate_doc(model="llama-3.1-8b", hardware="h100-sxm", tp=1, engine="vllm", precision="bf16",
                        slo={"tpot_p99_s": 1e-4}, prompt={"dist": "fixed", "value": 512},
                        output={"dist": "fixed", "value": 128}, pricing={}, generative=True, seed=7)
    e = analytic_capacity(doc)
    assert e.rate_rps == 0 and e.limit == "latency_floor"
    # one decode step reads the 8B model's 16 GB of bf16 weights at most at 3.35 TB/s: >= 4.8 ms
    assert e.tpot_floor_s is not None and e.tpot_floor_s > 16.06e9 / 3.35e12


def test_slo_percentile_keys() -> None:
    base = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
            "workload": {"duration_s": 30, "arrival": {"process": "poisson", "rate_rps": 4},
                         "prompt_tokens": {"dist": "fixed", "value": 512}, "output_tokens": {"dist": "fixed", "value": 128}},
            "seed": 7}
    r = simulate_serving(parse_scenario(base))
    assert r.ttft_s is not None and r.ttft_s.p50 is not None and r.e2e_s.p90 is not None
    assert r.itl_s is not None and r.itl_s.p90 is not None
    met = lambda slo: simulate_serving(parse_scenario({**base, "slo": slo}))  # noqa: E731
    assert met({"ttft_p50_s": r.ttft_s.p50 * 1.01}).slo_met is True
    below = met({"ttft_p50_s": r.ttft_s.p50 * 0.99})
    assert below.slo_met is False
    # attainment: the share of requests within the bound; a bound just under the median leaves about half
    assert below.slo_attainment is not None and 0.4 < below.slo_attainment <= 0.5
    assert met({"itl_p90_s": r.itl_s.p90 * 0.99}).slo_met is False
    assert met({"e2e_p90_s": r.e2e_s.p90 * 1.01}).slo_met is True


def test_bad_input_is_a_clear_error() -> None:
    r = runner.invoke(app, ["plan", "serve", "--model", "llama-3.1-8b", "--rate", "1", "--slo", "ttft_p97_s=2"])
    assert r.exit_code == 2 and "ttft_p97_s" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["plan", "serve", "--model", "llama-3.1-8b", "--slo", "ttft_p99_s=2"])
    assert r.exit_code == 2 and "--rate R" in r.output
    r = runner.invoke(app, ["plan", "serve", "--model", "llama-3.1-8b", "--rate", "1", "--pattern", "diurnal",
                            "--slo", "ttft_p99_s=2"])
    assert r.exit_code == 2


# ---- honest utilization and the shipped HPA example (issue 18 item 5) ----------------------------------
def test_scale_activity_counts_flaps_by_hand() -> None:
    import pandas as pd

    from simulator.serving.scale_events import scale_activity

    # 1 -> 2 at 100 s, 2 -> 1 at 400 s (a flap: reversed within 600 s), 1 -> 2 at 700 s (a flap), 2 -> 3 at 2000 s
    f = pd.DataFrame({"t_s": [0, 100, 400, 700, 2000], "replicas_requested": [1, 2, 1, 2, 3]})
    a = scale_activity(f)
    assert (a.events, a.ups, a.downs, a.flaps, a.oscillating) == (4, 3, 1, 2, True)
    slow = pd.DataFrame({"t_s": [0, 100, 1000, 2000], "replicas_requested": [1, 2, 1, 1]})
    assert scale_activity(slow).flaps == 0 and not scale_activity(slow).oscillating


def test_shipped_hpa_example_does_not_flap() -> None:
    # the example's day compressed to 2 hours (the same shape, 12x faster ramps: harder for an autoscaler)
    from simulator.scenario import load_scenario
    from simulator.serving.scale_events import scale_activity

    day = ["workload.arrival.period_s=7200", "workload.duration_s=7200", "workload.arrival.peak_at_s=4200"]
    r = simulate_serving(load_scenario("examples/serve_diurnal_hpa.yaml", day))
    a = scale_activity(r.scaling)
    assert not a.oscillating and a.flaps <= 1
    assert r.slo_met and not any("oscillates" in w for w in r.warnings)
    # the HPA's defaults on the same day flap (what the example used to ship)
    old = simulate_serving(load_scenario("examples/serve_diurnal_hpa.yaml", [
        *day, "autoscaling.tolerance=0.1", "autoscaling.scale_up_stabilization_s=0",
        "autoscaling.scale_down_stabilization_s=300"]))
    assert scale_activity(old.scaling).oscillating and any("oscillates" in w for w in old.warnings)


def test_utilization_metric_warns_under_continuous_batching() -> None:
    d = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
         "workload": {"duration_s": 60, "arrival": {"process": "poisson", "rate_rps": 1}},
         "autoscaling": {"policy": "hpa", "metric": "utilization", "target": 0.7}, "seed": 1}
    r = simulate_serving(parse_scenario(d))
    assert any("saturates" in w for w in r.warnings)
    # the reason: at 1 req/s (of a ~20 req/s replica) a kernel runs most of the time
    assert r.gpu_utilization > 0.5


def test_html_report_and_autoscaling_day(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Llama-3.1-8B on one H100 (one candidate) at a 20 req/s diurnal peak over a 20-minute day
    out = tmp_path / "plan.html"
    r = runner.invoke(app, ["plan", "serve", "--model", "llama-3.1-8b", "--pattern", "diurnal", "--peak", "20",
                            "--slo", "ttft_p99_s=1", "--gpu", "h100-sxm", "--tp", "1", "--autoscale", "--day-s", "1200",
                            "--json", "--html", str(out)])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    policies = [a["policy"] for a in plan["autoscaling"]]
    assert policies == ["none", "hpa", "kpa", "queue", "predictive"]
    static = plan["autoscaling"][0]
    best = plan["best"]
    assert static["replicas_max"] == best["replicas"] and static["saving_vs_static"] == 0
    rec = plan["recommended_autoscaler"]["autoscaling"]
    assert rec["policy"] == "hpa" and rec["metric"] == "concurrency" and rec["scale_down_stabilization_s"] == 900
    assert plan["best_scenario"]["cluster"]["replicas"] == best["replicas"]
    page = out.read_text()
    for s in ("chart-pareto", "chart-latency", "chart-autoscaling", "Candidates, cheapest first", "SLO ttft_p99_s"):
        assert s in page


def test_trace_sets_the_peak_and_lengths() -> None:
    from pathlib import Path

    from capsim.plan_serve_cmd import _trace_stats

    # tests/data/traces/capsim.csv: 40 arrivals within its first minute -> 40/60 req/s at the busiest minute
    peak, prompt, output = _trace_stats(Path("tests/data/traces/capsim.csv"))
    assert peak == pytest.approx(40 / 60)
    import csv

    rows = list(csv.DictReader(open("tests/data/traces/capsim.csv")))
    assert prompt == round(sum(int(r["prompt_tokens"]) for r in rows) / len(rows))
    assert output == round(sum(int(r["output_tokens"]) for r in rows) / len(rows))
    r = runner.invoke(app, ["plan", "serve", "--model", "llama-3.1-8b", "--trace", "nowhere.csv", "--slo",
                            "ttft_p99_s=1"])
    assert r.exit_code == 2 and "nowhere.csv" in r.output


def test_worker_processes_give_the_same_plan() -> None:
    kw = {"model": "vit-b-16", "peak_rps": 2000, "slo": {"e2e_p99_s": 0.1}, "gpus": ["l4", "t4"], "tps": [1],
          "verify": 0}
    one, two = plan_serving(**kw), plan_serving(**kw, workers=2)   # type: ignore[arg-type]
    assert [c.to_dict() for c in one.candidates] == [c.to_dict() for c in two.candidates]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install 'capsim[ray]')")
def test_the_ray_executor_gives_the_same_plan() -> None:
    kw = {"model": "vit-b-16", "peak_rps": 2000, "slo": {"e2e_p99_s": 0.1}, "gpus": ["l4", "t4"], "tps": [1],
          "verify": 0}
    one, ray_ = plan_serving(**kw), plan_serving(**kw, executor="ray")   # type: ignore[arg-type]
    assert [c.to_dict() for c in one.candidates] == [c.to_dict() for c in ray_.candidates]
    with pytest.raises(CapsimError, match="unknown executor 'dask'"):
        plan_serving(**kw, executor="dask")   # type: ignore[arg-type]


def test_saturation_is_load_over_capacity_and_gpu_busy_is_not() -> None:
    from simulator.plan.capacity import steady_state
    from simulator.serving.simulate import build_replica_model

    doc = candidate_doc(model="llama-3.1-8b", hardware="h100-sxm", tp=1, engine="vllm", precision="bf16",
                        slo={"ttft_p99_s": 5.0}, prompt={"dist": "fixed", "value": 512},
                        output={"dist": "fixed", "value": 128}, pricing={}, generative=True, seed=7)
    low, double = (simulate_serving(parse_scenario(with_rate(doc, r, requests=400))) for r in (2.0, 4.0))
    perf, plan = build_replica_model(parse_scenario(doc))
    cap = steady_state(perf, plan, 512, 128)[0]
    # saturation = measured arrival rate / the steady-state capacity of the one ready replica
    span = float(low.requests.loc[~low.requests.warmup, "arrival_s"].max())
    assert low.saturation == pytest.approx(low.arrived / span / cap, rel=1e-3)
    assert double.saturation == pytest.approx(2 * low.saturation, rel=0.1)
    # at ~2 req/s of a ~54 req/s replica: a few percent saturated, while a kernel runs most of the time
    assert low.saturation < 0.05 and low.gpu_utilization > 0.5
    # decode at a small batch reads the 16 GB of weights per step: bandwidth-bound, MBU high
    assert low.mbu is not None and 0.3 < low.mbu <= 1.0
