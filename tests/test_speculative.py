"""Speculative decoding (simulator/serving/engines/speculative.py): properties from first principles."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.scenario import ServingScenario, load_scenario, parse_scenario
from simulator.serving import simulate_serving
from simulator.serving.engines.speculative import Acceptance, SpeculativeBatching, mean_tokens_per_step
from simulator.serving.simulate import Cluster, build_replica_model, stage_scenarios
from simulator.serving.workload import generate

ROOT = Path(__file__).resolve().parents[1]
P, O = 1024, 101
# meta-llama/Llama-3.2-1B config.json: 16 layers, hidden 2048, 32 heads, 8 KV heads of 64, MLP 8192
LLAMA_1B = {"name": "llama-3.2-1b", "architecture": "decoder", "layers": 16, "hidden": 2048, "heads": 32,
            "kv_heads": 8, "head_dim": 64, "ffn_hidden": 8192, "vocab": 128256, "activation": "swiglu",
            "norm": "rmsnorm", "position": "rope", "tie_embeddings": True}


def doc(batching: str = "speculative", *, requests: int = 1, seqs: int = 256, alpha: float = 0.7, k: int = 3,
        method: str = "eagle", **rep: Any) -> dict[str, Any]:
    replica: dict[str, Any] = {"tp": 1, "batching": batching, "max_num_seqs": seqs, "max_batched_tokens": 8192, **rep}
    if batching == "speculative":
        replica |= {"method": method, "num_speculative_tokens": k, "acceptance_rate": alpha}
        if method == "draft_model":
            replica["draft_model"] = LLAMA_1B
    return {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "replica": replica, "seed": 5,
            "workload": {"arrival": {"process": "offline", "requests": requests},
                         "prompt_tokens": {"dist": "fixed", "value": P}, "output_tokens": {"dist": "fixed", "value": O}}}


def run(d: dict[str, Any], **kw: Any):
    sc = parse_scenario(d)
    assert isinstance(sc, ServingScenario)
    return simulate_serving(sc, **kw)


def iterations(d: dict[str, Any]) -> int:
    """Iterations the one replica ran (its busy log: one row per iteration without fast-forward)."""
    sc = parse_scenario(d)
    assert isinstance(sc, ServingScenario)
    stages = [(n, s, *build_replica_model(s)) for n, s in stage_scenarios(sc)]
    reqs, _ = generate(sc.workload, sc.seed)
    cl = Cluster(sc, reqs, stages, fast_forward=False)
    cl.run()
    (rep,) = cl.replicas
    return len(rep.busy_start)


def test_mean_tokens_per_step() -> None:
    # Leviathan et al. 2023: E[1 + a] = (1 - α^{k+1}) / (1 - α); α = 0.5, k = 3: 1 + 1/2 + 1/4 + 1/8
    assert mean_tokens_per_step(0.5, 3) == 1.875
    assert mean_tokens_per_step(0.0, 4) == 1.0 and mean_tokens_per_step(1.0, 4) == 5.0
    cfg = SpeculativeBatching(batching="speculative", method="eagle", num_speculative_tokens=3, acceptance_rate=0.5)
    acc = Acceptance(cfg, seed=1)
    draws = np.array([acc.tokens(r) for r in range(20_000)])
    assert draws.min() == 1 and draws.max() == 4
    # P(1 + a = j): 1/2, 1/4, 1/8, 1/8; mean 1.875, binomial standard error ~0.007
    assert abs(draws.mean() - 1.875) < 0.03
    assert abs(np.mean(draws == 4) - 0.125) < 0.01


def test_acceptance_one_takes_ceil_steps() -> None:
    """α = 1: the prefill samples the first token, then every step keeps all k drafts and its own token,
    k + 1 tokens, the last step what is left: 1 prefill iteration + ceil((O − 1)/(k + 1)) decode steps."""
    for k in (1, 3, 4):
        assert iterations(doc(alpha=1.0, k=k)) == 1 + math.ceil((O - 1) / (k + 1))
    # α = 0: one token per step, as without speculation: 1 + (O − 1)
    assert iterations(doc(alpha=0.0, k=3)) == 1 + (O - 1)
    assert iterations(doc("continuous")) == 1 + (O - 1)


@pytest.mark.parametrize("method", ["eagle", "mtp", "draft_model"])
def test_acceptance_zero_is_strictly_slower(method: str) -> None:
    """α = 0 gains one token per step, as plain decoding does, but each step also drafts k tokens and
    verifies k + 1: every step is longer, so TPOT and E2E are strictly longer; the TTFT is the same."""
    plain = run(doc("continuous")).requests_frame().iloc[0]
    spec = run(doc(alpha=0.0, method=method)).requests_frame().iloc[0]
    assert spec["tpot_s"] > plain["tpot_s"] and spec["e2e_s"] > plain["e2e_s"]
    assert spec["ttft_s"] == pytest.approx(plain["ttft_s"], abs=1e-12)


def test_helps_at_low_batch_and_hurts_at_high_batch() -> None:
    """k = 5 drafts at α = 0.5 (1.97 tokens per step): alone, a step is memory-bound, so verifying 6
    tokens costs little more than 1 and TPOT falls; at 256 sequences the 1,536-token verification is
    compute-bound and most of it is rejected, so output throughput falls below plain decoding."""
    low_p, low_s = run(doc("continuous", seqs=1, requests=2)), run(doc(seqs=1, requests=2, alpha=0.5, k=5))
    assert low_s.tpot_s.mean < 0.9 * low_p.tpot_s.mean
    assert low_s.output_tokens_per_s > low_p.output_tokens_per_s
    hi_p = run(doc("continuous", seqs=256, requests=512))
    hi_s = run(doc(seqs=256, requests=512, alpha=0.5, k=5))
    assert hi_s.output_tokens_per_s < 0.95 * hi_p.output_tokens_per_s
    assert hi_s.tpot_s.mean > hi_p.tpot_s.mean


def test_conservation_and_determinism() -> None:
    d = doc(requests=1, alpha=0.6, acceptance_concentration=10)
    d["workload"] = {"duration_s": 30, "horizon_s": 10, "arrival": {"process": "poisson", "rate_rps": 8},
                     "prompt_tokens": {"dist": "lognormal", "mean": 1500, "sigma": 0.6, "max": 6000},
                     "output_tokens": {"dist": "lognormal", "mean": 300, "sigma": 0.6}}
    d["replica"]["max_num_seqs"] = 16
    d["replica"]["kv_cache_fraction"] = 0.05        # preemptions: tokens left survive a recompute
    a = run(d)
    assert a.in_flight > 0 and a.completed > 0
    assert a.completed + a.rejected + a.failed + a.in_flight == a.arrived
    assert a.requests_frame().equals(run(d).requests_frame())
    # fast-forward is off in this engine: asking for event-by-event changes nothing
    assert a.requests_frame().equals(run(d, fast_forward=False).requests_frame())
    # another seed, other acceptances
    d2 = {**d, "seed": 6}
    assert not run(d2).requests_frame()["tpot_s"].equals(a.requests_frame()["tpot_s"])


def test_keys_and_errors() -> None:
    with pytest.raises(ValueError, match="draft_model"):
        run(doc(method="draft_model") | {"replica": {**doc()["replica"], "method": "draft_model"}})
    with pytest.raises(ValueError, match="decode_first"):
        run(doc(engine="sglang"))
    with pytest.raises(ValueError, match="acceptance_rate"):
        parse_scenario(doc(alpha=1.5))


def test_example_runs_and_shows_the_trade_off() -> None:
    sc = load_scenario(ROOT / "examples" / "serve_speculative.yaml", ["workload.duration_s=20"])
    r = simulate_serving(sc)
    assert r.completed + r.rejected + r.failed + r.in_flight == r.arrived and r.completed > 0
    out = subprocess.run([sys.executable, "-m", "capsim", "sweep", "examples/serve_speculative.yaml", "--grid",
                          "replica.num_speculative_tokens=0,5", "--grid", "workload.arrival.rate_rps=1,30",
                          "--set", "workload.duration_s=30", "--json", "--workers", "1"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = {(r["replica.num_speculative_tokens"], r["workload.arrival.rate_rps"]): r
            for r in json.loads(out.stdout)["rows"]}
    # at 1 req/s every request is served either way; at 30 req/s speculation serves fewer tokens per second
    assert rows[5, 30]["output_tokens_per_s"] < 0.95 * rows[0, 30]["output_tokens_per_s"]
    low = [simulate_serving(load_scenario(ROOT / "examples" / "serve_speculative.yaml", [
        f"replica.num_speculative_tokens={k}", "workload.arrival.rate_rps=1", "workload.duration_s=30"]))
        for k in (0, 5)]
    assert low[1].tpot_s.p50 < 0.9 * low[0].tpot_s.p50


def test_no_drafts_is_plain_decoding() -> None:
    """k = 0: no draft, one token verified per step: the continuous engine's times, step by step."""
    d = doc(requests=40, seqs=16, k=0)
    d["workload"]["output_tokens"] = {"dist": "lognormal", "mean": 200, "sigma": 0.5}
    cols = ["ttft_s", "tpot_s", "e2e_s", "queue_s"]
    spec = run(d).requests_frame()[cols].to_numpy()
    plain = run({**d, "replica": doc("continuous", seqs=16)["replica"]}).requests_frame()[cols].to_numpy()
    # the continuous engine keeps its per-token read time in whole femtoseconds (fastforward.Window), this
    # engine rounds each step's total: a relative difference of ~1e-9
    np.testing.assert_allclose(spec, plain, rtol=1e-8, atol=1e-12)
