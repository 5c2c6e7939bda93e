"""``capsim plan train`` and ``simulator.plan.plan_training``: the 70B question in one command, checked
by hand arithmetic; pruning that never changes the answer; scenarios that reproduce; the GPT-3 example's
layouts as the README gives them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from simulator.catalog import get_model
from simulator.errors import CapsimError
from simulator.hardware import get_profile
from simulator.plan import plan_training
from simulator.plan.training import DEFAULT_COUNTS, LLAMA3_NODE_MTBF_HOURS
from simulator.scenario import load_scenario, parse_scenario
from simulator.sweep import sweep
from simulator.sweep.evaluate import training_layouts
from simulator.training import simulate_training
from simulator.training.schedules import OneFOneBConfig, make_schedule

ROOT = Path(__file__).resolve().parents[1]
GPT3 = ROOT / "examples" / "train_gpt3_175b.yaml"
runner = CliRunner()
ROUNDING = 1e-5          # results carry 6 significant digits


@pytest.fixture(scope="module")
def run70b(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """70B on 2T tokens in 30 days on H100s: one command (restricted to 1,024 GPUs to stay fast), with
    its HTML report and its scenarios."""
    d = tmp_path_factory.mktemp("plan")
    r = runner.invoke(app, ["plan", "train", "--model", "llama-3.1-70b", "--tokens", "2e12", "--days", "30",
                            "--gpu", "h100-sxm", "--gpus", "1024", "--workers", "1", "--json",
                            "--html", str(d / "p.html"), "--emit-scenario", str(d / "scenarios")])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), d


@pytest.fixture(scope="module")
def plan70b(run70b: tuple[dict, Path]) -> dict:
    return run70b[0]


def test_count_set_is_8_and_24_times_powers_of_two() -> None:
    assert DEFAULT_COUNTS == (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
    # 419 unexpected interruptions in 54 days on 16,384 GPUs = 2,048 nodes: 3.093 h per cluster, x 2,048
    assert LLAMA3_NODE_MTBF_HOURS == pytest.approx(3.0931 * 2048, rel=1e-4)


def test_70b_in_30_days_by_hand(plan70b: dict) -> None:
    best = plan70b["best"]
    for key in ("hardware", "gpus", "layout", "time_to_train_days", "compute_days_without_failures", "gpu_hours",
                "cost_usd", "mfu"):
        assert key in best
    assert {"tp", "pp", "dp", "cp", "ep", "micro_batch", "zero_stage", "recompute"} <= set(best["layout"])
    lay = best["layout"]
    assert lay["tp"] * lay["pp"] * lay["dp"] * lay["cp"] == best["gpus"] == 1024
    assert best["hardware"] == "h100-sxm" and best["time_to_train_days"] <= 30
    # the model FLOPs as capsim counts them: 6 x the matmul parameters (all but the 128,256 x 8,192
    # embedding) per token, plus causal attention 6·L·h·s (12·L·h·s halved), per token
    m = get_model("llama-3.1-70b")
    per_token = 6 * (m.total_params() - m.vocab * m.hidden) + 6 * m.layers * m.hidden * 2048
    tokens_per_step = 1536 * 2048
    assert plan70b["model_flops_per_step"] == pytest.approx(per_token * tokens_per_step, rel=1e-4)
    iterations = math.ceil(2e12 / tokens_per_step)     # 635,782.88 -> 635,783 steps
    assert plan70b["iterations"] == iterations == 635_783
    peak = get_profile("h100-sxm").peak_flops("bf16")   # 989 TFLOP/s dense bf16
    days = iterations * plan70b["model_flops_per_step"] / (1024 * peak * best["mfu"]) / 86400
    assert best["compute_days_without_failures"] == pytest.approx(days, rel=0.01)
    assert best["time_to_train_days"] >= best["compute_days_without_failures"]
    # GPU-hours are GPUs x wall-clock hours; cost is GPU-hours x the catalog's $/GPU-hour
    assert best["gpu_hours"] == pytest.approx(1024 * 24 * best["time_to_train_days"], rel=ROUNDING)
    assert best["cost_usd"] == pytest.approx(best["gpu_hours"] * best["usd_per_gpu_hour"], rel=ROUNDING)
    # the cheapest meeting the deadline: no other row meets it for less
    ok = [c for c in plan70b["candidates"] if c["meets_deadline"]]
    assert best["cost_usd"] == min(c["cost_usd"] for c in ok)


def test_every_bound_is_below_the_simulation(plan70b: dict) -> None:
    rows = plan70b["candidates"]
    assert len(rows) == plan70b["search"]["simulated"] > 0
    for c in rows:
        assert c["lower_bound_days"] <= c["compute_days_without_failures"] * (1 + ROUNDING)
        assert c["compute_days_without_failures"] <= c["time_to_train_days"]
    s = plan70b["search"]
    assert s["enumerated"] == s["pruned_by_bound"] + s["invalid"] + s["out_of_memory"] + s["simulated"]
    assert s["pruned_by_bound"] > s["simulated"]          # the bounds do the work


def test_pruning_never_changes_the_answer() -> None:
    """gpt-tiny on 4 and 8 A100s: the plan's frontier equals the frontier of simulating every layout."""
    kw = {"model": "gpt-tiny", "tokens": 1e9, "gpus": ["a100-sxm-80gb"], "seq_len": 256, "global_batch": 8,
          "workers": 1}
    plan = plan_training(gpu_counts=[4, 8], **kw)
    brute = []
    for n in (4, 8):
        doc = {"kind": "training", "model": "gpt-tiny", "hardware": "a100-sxm-80gb",
               "cluster": {"nodes": 1, "gpus_per_node": n},
               "training": {"seq_len": 256, "global_batch": 8, "micro_batch": 1, "total_tokens": 1e9},
               "reliability": {"node_mtbf_hours": LLAMA3_NODE_MTBF_HOURS, "restart_minutes": 10.0}}
        f = sweep(parse_scenario(doc), layouts="full", workers=1).frame
        brute += [(float(t), float(c)) for t, c in zip(f.loc[f.feasible, "time_to_train_days"],
                                                      f.loc[f.feasible, "cost_usd"], strict=True)]
    cheapest = min(brute, key=lambda x: (x[1], x[0]))
    fastest = min(brute, key=lambda x: (x[0], x[1]))
    assert plan.best is not None
    assert (plan.best.time_to_train_days, plan.best.cost_usd) == pytest.approx(cheapest)
    assert min(r.time_to_train_days for r in plan.rows) == pytest.approx(fastest[0])
    assert plan.counts.simulated < len(brute)


def test_emitted_scenario_reproduces_with_capsim_train(run70b: tuple[dict, Path]) -> None:
    plan, d = run70b
    best = plan["best"]
    files = sorted((d / "scenarios").glob("*.yaml"))
    assert files and files[0].name.startswith("plan-01-h100-sxm-1024-")
    t = runner.invoke(app, ["train", str(files[0]), "--json"])
    assert t.exit_code == 0, t.output
    again = json.loads(t.stdout)
    assert again["time_to_train_days"] == best["time_to_train_days"]
    assert again["cost_usd"] == best["cost_usd"] and again["mfu"] == best["mfu"]
    assert {k: again["layout"][k] for k in ("tp", "pp", "dp", "cp", "micro_batch", "zero_stage", "recompute")} == {
        k: best["layout"][k] for k in ("tp", "pp", "dp", "cp", "micro_batch", "zero_stage", "recompute")}


def test_nothing_meets_the_deadline_exits_2_with_the_closest() -> None:
    r = runner.invoke(app, ["plan", "train", "--model", "llama-3.1-70b", "--tokens", "2e12", "--days", "5",
                            "--gpu", "h100-sxm", "--gpus", "1024", "--workers", "1"])
    assert r.exit_code == 2
    assert "no plan of llama-3.1-70b meets 5 days; closest: h100-sxm × 1024" in r.output
    assert "days > 5" in r.output and "Traceback" not in r.output


def test_bad_inputs_name_what_is_wrong() -> None:
    with pytest.raises(CapsimError, match="--tokens"):
        plan_training(model="llama-3.1-8b", tokens=-1)
    with pytest.raises(CapsimError, match="multiple of 8"):
        plan_training(model="llama-3.1-8b", tokens=1e9, gpus=["h100-sxm"], gpu_counts=[12])
    with pytest.raises(CapsimError, match="unknown hardware profile"):
        plan_training(model="llama-3.1-8b", tokens=1e9, gpus=["h100-sxn"], gpu_counts=[8])
    r = runner.invoke(app, ["plan", "train", "--model", "llama-3-8b", "--tokens", "1e9", "--gpus", "8"])
    assert r.exit_code == 2 and "unknown model" in r.output


def test_html_report_has_the_plot_and_table(run70b: tuple[dict, Path]) -> None:
    text = (run70b[1] / "p.html").read_text()
    assert 'id="chart-plan"' in text and "Pareto frontier" in text and "deadline 30 days" in text
    assert "<th>GiB/GPU</th>" in text and "<th>MFU</th>" in text


# ---- the GPT-3 example's layouts (README "Reports and sweeps") -----------------------------------
def test_gpt3_example_layouts_keep_a_valid_interleaving() -> None:
    """96 layers, 1,024 GPUs, batch 1,536, v = 3: kept where PP > 1, PP·3 divides 96 (PP | 32) and the
    micro-batches are a multiple of PP; else the largest valid v below 3, else plain 1F1B. ZeRO-2 is not
    listed with PP > 1 (ZeRO-1 there)."""
    sc = load_scenario(GPT3)
    lay = training_layouts(sc)
    assert len(lay) == 1113
    by = {(c["parallelism.tp"], c["parallelism.pp"], c["training.micro_batch"]): c for c in lay}
    # TP8 PP8 DP16: 96 sequences per rank; micro-batch 1..6 gives 96..16 micro-batches (multiples of 8),
    # micro-batch 8 gives 12 (not a multiple of 8): plain 1F1B
    for mb in (1, 2, 3, 4, 6):
        assert by[(8, 8, mb)]["parallelism.virtual_stages"] == 3
    assert by[(8, 8, 8)]["parallelism.virtual_stages"] == 1 and by[(8, 8, 8)]["parallelism.schedule"] == "1f1b"
    # PP3 (TP8, DP 1024/24 is not whole; TP1: DP 1024/3 no) -> PP 1 and PP 3 never interleave 3;
    # PP 1: 1F1B
    assert all(c["parallelism.virtual_stages"] == 1 for c in lay if c["parallelism.pp"] == 1)
    assert sum(c["parallelism.virtual_stages"] == 3 for c in lay) == 495     # 660 with ZeRO-2
    for c in lay:
        v = c["parallelism.virtual_stages"]
        m = 1536 // (c["parallelism.dp"] * c["training.micro_batch"])
        assert not make_schedule(OneFOneBConfig(pp=c["parallelism.pp"], virtual_stages=v), m).problems()


def test_gpt3_readme_layouts() -> None:
    """The README's fastest layout (ZeRO-3 and ZeRO-1), and the example's own (ZeRO-1, no recompute), simulated."""
    for zero, mfu, days in ((3, 0.558, 21.5), (1, 0.555, 21.6)):
        fastest = simulate_training(load_scenario(GPT3, [
            "parallelism.tp=4", "parallelism.pp=8", "parallelism.dp=32", f"parallelism.zero_stage={zero}",
            "training.recompute=selective"]))
        assert fastest.mfu == pytest.approx(mfu, abs=5e-4) and fastest.job is not None
        assert fastest.job.time_to_train_days == pytest.approx(days, abs=0.05)
    own = simulate_training(load_scenario(GPT3, ["parallelism.zero_stage=1", "training.recompute=none"]))
    assert own.mfu == pytest.approx(0.523, abs=5e-4) and own.job is not None
    assert own.job.time_to_train_days == pytest.approx(22.9, abs=0.05)


def test_a_plan_runs_every_candidate_with_the_framework_preset() -> None:
    from simulator.plan.training import plan_training

    kw = dict(model="llama-3.1-8b", tokens=1e11, gpus=["h100-sxm"], gpu_counts=[64], workers=1)
    nemo = plan_training(**kw, framework="nemo")
    best = nemo.best
    assert best is not None and best.scenario["training"]["framework"] == "nemo"
    assert nemo.counts.invalid == 0                      # the preset's rules read each candidate's own layout
    again = simulate_training(parse_scenario(best.scenario))
    assert again.iteration_time_s == pytest.approx(best.iteration_time_s, rel=1e-5)
    assert again.scenario.training.grad_precision == "bf16"          # the preset's, not the default fp32
    with pytest.raises(CapsimError, match="unknown --framework 'megatron'"):
        plan_training(**kw, framework="megatron")
