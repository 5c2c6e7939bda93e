"""Prefill/decode disaggregation (simulator/serving/disaggregation.py): properties from first principles."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.catalog import get_model
from simulator.costmodel.inference import InferenceModel
from simulator.hardware import get_profile
from simulator.scenario import ServingScenario, load_scenario, parse_scenario
from simulator.serving import simulate_serving
from simulator.serving.disaggregation import expand, kv_bytes, transfer_s
from simulator.serving.simulate import build_replica_model, stage_scenarios

ROOT = Path(__file__).resolve().parents[1]
P, O = 1000, 50

BASE: dict[str, Any] = {
    "kind": "serving", "name": "pd", "model": "llama-3.1-8b", "hardware": "h100-sxm",
    "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 64, "max_batched_tokens": 8192},
    "cluster": {"replicas": 2},
    "disaggregation": {"prefill": {"cluster": {"replicas": 1}}, "decode": {"cluster": {"replicas": 1}},
                       "kv_link": "inter_node"},
    "workload": {"duration_s": 20, "arrival": {"process": "poisson", "rate_rps": 4},
                 "prompt_tokens": {"dist": "fixed", "value": P}, "output_tokens": {"dist": "fixed", "value": O}},
    "slo": {"ttft_p99_s": 1.0, "tpot_p99_s": 0.05}, "seed": 3,
}


def scenario(**over: Any) -> ServingScenario:
    doc = copy.deepcopy(BASE)
    for key, v in over.items():
        d = doc
        *path, last = key.split("__")
        for k in path:
            d = d.setdefault(k, {})
        d[last] = v
    sc = parse_scenario(doc)
    assert isinstance(sc, ServingScenario)
    return sc


def one_request(**over: Any) -> ServingScenario:
    return scenario(workload__arrival={"process": "offline", "requests": 1}, **over)


def perf(tp: int = 1) -> InferenceModel:
    return InferenceModel(model=get_model("llama-3.1-8b"), hw=get_profile("h100-sxm").with_engine("vllm", None),
                          tp=tp, precision="bf16", kv_precision="bf16")


def test_kv_bytes_are_prompt_times_bytes_per_token() -> None:
    # Llama-3.1-8B: 32 layers, 8 KV heads of 128, K and V, bf16 = 32·2·8·128·2 = 131,072 bytes per token;
    # at TP2 each GPU holds 4 of the 8 KV heads and sends half of them
    assert kv_bytes(perf(1), P) == P * 131_072
    assert kv_bytes(perf(2), P) == P * 65_536
    # over InfiniBand NDR (46 GB/s measured bus bandwidth per GPU, 6 µs latency): 131.072 MB / 46 GB/s + 6 µs
    assert transfer_s(perf(1), P, intra_node=False) == pytest.approx(P * 131_072 / 46e9 + 6e-6, rel=1e-12)
    # NVLink: 80% of 450 GB/s per direction
    assert transfer_s(perf(1), P, intra_node=True) == pytest.approx(P * 131_072 / 360e9 + 6e-6, rel=1e-12)


def test_one_request_ttft_is_prefill_transfer_and_first_decode_iteration() -> None:
    """Alone in the system: TTFT = the prefill pool's iteration over the prompt (one token sampled) + the
    KV transfer + the decode pool's first iteration, which computes the last prompt position (KV of the
    prompt from the prefill) and samples the first token the user sees."""
    sc = one_request()
    r = simulate_serving(sc)
    m, _ = build_replica_model(stage_scenarios(expand(sc))[0][1])     # the prefill pool's cost model
    pre = m.iteration_time(tokens=P, sampled=1, prefill_work=P * (P + 1) / 2, decode_seqs=0, decode_ctx=0)
    first = m.iteration_time(tokens=1, sampled=1, prefill_work=1 * (P - 1 + 1), decode_seqs=0, decode_ctx=0)
    ttft = r.requests_frame()["ttft_s"].iloc[0]
    expect = pre + transfer_s(m, P, intra_node=False) + first
    assert ttft == pytest.approx(expect, abs=1e-12)
    # aggregated, the same request's TTFT is the prefill alone: disaggregation adds the transfer and a step
    agg = simulate_serving(one_request(disaggregation__enabled=False)).requests_frame()["ttft_s"].iloc[0]
    assert agg == pytest.approx(pre, abs=1e-12)
    assert r.completed == 1 and r.services is not None and set(r.services) == {"prefill", "decode"}


def test_link_changes_ttft_by_the_transfer_difference() -> None:
    sc = one_request()
    ib = simulate_serving(sc).requests_frame()
    nv = simulate_serving(one_request(disaggregation__kv_link="intra_node")).requests_frame()
    m, _ = build_replica_model(stage_scenarios(expand(sc))[0][1])
    gap = transfer_s(m, P, intra_node=False) - transfer_s(m, P, intra_node=True)
    assert (ib["ttft_s"] - nv["ttft_s"]).iloc[0] == pytest.approx(gap, abs=1e-9)
    # decoding does not see the link: the same TPOT
    assert ib["tpot_s"].iloc[0] == pytest.approx(nv["tpot_s"].iloc[0], abs=1e-12)


def test_decode_admission_waits_for_room() -> None:
    """Two requests at once, a decode pool that runs one sequence: the second's first token comes after
    the first has finished decoding (it waited in the decode queue with its KV transferred)."""
    sc = scenario(workload__arrival={"process": "offline", "requests": 2},
                  disaggregation__decode__replica={"tp": 1, "batching": "continuous", "max_num_seqs": 1})
    f = simulate_serving(sc).requests_frame().sort_values("ttft_s")
    first_done = f["e2e_s"].iloc[0]
    assert f["ttft_s"].iloc[1] > first_done
    # a request whose KV can never fit the decode pool is rejected there, by its KV capacity
    big = scenario(workload__arrival={"process": "offline", "requests": 1},
                   disaggregation__decode__replica={"tp": 1, "batching": "continuous", "max_num_seqs": 1,
                                                    "kv_cache_fraction": 0.0001})
    r = simulate_serving(big)
    assert r.rejected == 1 and r.rejected_by_reason == {"exceeds_kv_capacity": 1}


@pytest.mark.parametrize("order", ["decode_first", "prefill_first"])
def test_conservation_fast_forward_and_determinism(order: str) -> None:
    """Cut by a horizon mid-run: every arrived request is completed, rejected, failed or in flight;
    event-by-event decoding gives the same per-request times; the same seed, the same frame."""
    eng = {"tp": 1, "batching": "continuous", "max_num_seqs": 16, "schedule_order": order}
    sc = scenario(workload={"duration_s": 30, "horizon_s": 12, "arrival": {"process": "poisson", "rate_rps": 6},
                            "prompt_tokens": {"dist": "lognormal", "mean": 1500, "sigma": 0.6, "max": 6000},
                            "output_tokens": {"dist": "lognormal", "mean": 200, "sigma": 0.6}},
                  disaggregation__decode__replica=eng, disaggregation__prefill__replica=eng)
    a = simulate_serving(sc)
    assert a.in_flight > 0 and a.completed > 0
    assert a.completed + a.rejected + a.failed + a.in_flight == a.arrived
    b = simulate_serving(sc, fast_forward=False)
    cols = ["ttft_s", "tpot_s", "e2e_s", "queue_s"]
    fa, fb = a.requests_frame()[cols].to_numpy(), b.requests_frame()[cols].to_numpy()
    np.testing.assert_allclose(fa, fb, rtol=0, atol=1e-9)
    c = simulate_serving(sc)
    assert c.requests_frame().equals(a.requests_frame())


def test_disaggregated_decodes_without_prefill_stalls() -> None:
    """Long prompts on the same 4 GPUs: aggregated (vLLM 0.6, prefill-first), each prefill pauses the running
    decodes, so TPOT carries the stalls; disaggregated (1 prefill, 3 decode) decodes never wait on a
    prefill, so TPOT is lower and TTFT higher (the transfer, the decode pool's first step). The trade-off
    DistServe (OSDI'24) and Splitwise (ISCA'24) build on."""
    eng = {"tp": 1, "batching": "continuous", "max_num_seqs": 128, "engine": "vllm", "engine_version": "0.6"}
    sc = scenario(replica=eng, cluster={"replicas": 4},
                  disaggregation={"prefill": {"cluster": {"replicas": 1}}, "decode": {"cluster": {"replicas": 3}},
                                  "kv_link": "intra_node"},
                  workload={"duration_s": 40, "arrival": {"process": "poisson", "rate_rps": 16},
                            "prompt_tokens": {"dist": "fixed", "value": 2048},
                            "output_tokens": {"dist": "fixed", "value": 128}})
    dis = simulate_serving(sc)
    assert sc.disaggregation is not None
    agg = simulate_serving(sc.model_copy(update={"disaggregation": sc.disaggregation.model_copy(
        update={"enabled": False})}))
    assert dis.gpus == agg.gpus == 4
    assert dis.tpot_s.p50 < agg.tpot_s.p50 and dis.tpot_s.p99 < agg.tpot_s.p99
    assert dis.ttft_s.p50 > agg.ttft_s.p50


def test_keys_and_errors() -> None:
    with pytest.raises(ValueError, match="disaggregation and services cannot be combined"):
        parse_scenario({**BASE, "services": [{"name": "a"}]})
    with pytest.raises(ValueError, match="kv_link"):
        scenario(disaggregation__kv_link="pcie")


def test_example_runs_and_sweep_compares_on_the_same_gpus(tmp_path: Path) -> None:
    sc = load_scenario(ROOT / "examples" / "serve_disaggregated.yaml", ["workload.duration_s=20"])
    r = simulate_serving(sc)
    assert r.services is not None and list(r.services) == ["prefill", "decode"]
    assert r.completed + r.rejected + r.failed + r.in_flight == r.arrived
    out = subprocess.run([sys.executable, "-m", "capsim", "sweep", "examples/serve_disaggregated.yaml", "--grid",
                          "disaggregation.enabled=false,true", "--set", "workload.duration_s=20", "--json",
                          "--workers", "1"], cwd=ROOT, capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)["rows"]
    assert [row["disaggregation.enabled"] for row in rows] == [False, True]
    assert rows[0]["gpus"] == rows[1]["gpus"] == 4
    html = tmp_path / "r.html"
    subprocess.run([sys.executable, "-m", "capsim", "serve", "examples/serve_disaggregated.yaml", "--set",
                    "workload.duration_s=20", "--html", str(html)], cwd=ROOT, capture_output=True, check=True)
    text = html.read_text()
    assert "prefill" in text and "decode" in text


def test_distserve_goodput_ratio() -> None:
    """DistServe §2.3 (13B on A100, 512/64 tokens, P90 TTFT ≤ 0.4 s and TPOT ≤ 0.04 s): the best disaggregated
    placement serves 2.1× the colocated goodput per GPU. capsim's best (1P1D) within a factor 1.5 of it, in
    its direction (bench/disaggregation_goodput.py; README 'Prefill/decode disaggregation')."""
    from bench import disaggregation_goodput as g

    agg = g.goodput(g.aggregated())
    dis = g.goodput(g.disaggregated(1, 1)) / 2
    assert g.PAPER_RATIO / 1.5 <= dis / agg <= g.PAPER_RATIO * 1.5
    assert dis / agg > 1.4


def test_pools_have_their_own_hardware_and_autoscaling() -> None:
    sc = scenario(workload={"duration_s": 60, "arrival": {"process": "poisson", "rate_rps": 6},
                            "prompt_tokens": {"dist": "fixed", "value": P}, "output_tokens": {"dist": "fixed", "value": O}},
                  disaggregation={"prefill": {"cluster": {"replicas": 1},
                                              "autoscaling": {"policy": "hpa", "max_replicas": 3}},
                                  "decode": {"cluster": {"replicas": 2}, "hardware": "h200"}})
    r = simulate_serving(sc)
    assert r.services is not None
    assert (r.services["prefill"].hardware, r.services["decode"].hardware) == ("h100-sxm", "h200")
    assert r.completed + r.rejected + r.failed + r.in_flight == r.arrived
    assert r.services["decode"].replicas.max == 2
