"""The engine's host time per sampled request (``replica.host_us_per_request``): TensorRT-LLM's TorchSampler walks
the sampled requests in Python after every step while the GPU waits (NVIDIA/TensorRT-LLM PR #16564), at the
3.4 µs per request PR #15920 measured; vLLM and SGLang carry none. Checked by hand: a decode step grows by exactly
the host time of its requests, and an offline run's simulated time by the host time of every token it sampled."""

from __future__ import annotations

import warnings

import pytest

from simulator import parse_scenario, simulate_serving
from simulator.serving.simulate import build_replica_model


def scenario(replica: dict, *, requests: int = 40, prompt: int = 256, output: int = 32, model: str = "llama-3.1-8b",
             hardware: str = "h100-sxm", precision: str = "fp8") -> dict:
    return {"kind": "serving", "model": model, "hardware": hardware, "precision": precision,
            "replica": {"batching": "continuous", **replica},
            "workload": {"arrival": {"process": "offline", "requests": requests},
                         "prompt_tokens": {"dist": "fixed", "value": prompt},
                         "output_tokens": {"dist": "fixed", "value": output}}, "seed": 3}


def built(replica: dict, **kw: object):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # tables measured for another engine version
        return build_replica_model(parse_scenario(scenario(replica, **kw)))  # type: ignore[arg-type]


@pytest.mark.parametrize(("engine", "host_us"), [("trtllm", 3.4), ("trtllm-bench", 3.4), ("vllm", 0.0),
                                                 ("sglang", 0.0)])
def test_the_preset_sets_the_host_time_and_says_where_it_comes_from(engine: str, host_us: float) -> None:
    _, plan = built({"engine": engine})
    assert plan.engine is not None
    assert plan.engine.host_us_per_request == host_us
    src = plan.engine.sources["host_us_per_request"]
    assert ("PR #15920" in src and "216 µs for 64 requests" in src) if host_us else src.startswith("0: not modelled")


def test_the_explicit_key_wins_and_is_reported() -> None:
    perf, plan = built({"engine": "vllm", "host_us_per_request": 10.0})
    assert plan.engine is not None and plan.engine.host_us_per_request == 10.0
    assert plan.engine.sources["host_us_per_request"] == "set in the scenario"
    assert perf.host_per_request == pytest.approx(10e-6)
    assert "host 10 µs per request per step" in plan.engine.line()


def test_a_decode_step_grows_by_the_host_time_of_its_requests() -> None:
    with_host, _ = built({"engine": "trtllm"})
    without, _ = built({"engine": "trtllm", "host_us_per_request": 0.0})
    for n in (1, 7, 256):
        assert with_host.decode_base(n) - without.decode_base(n) == pytest.approx(n * 3.4e-6, rel=1e-9)
        assert with_host.decode_gpu_base(n) == without.decode_gpu_base(n)
    step = {"tokens": 300, "sampled": 45, "prefill_work": 256 * 257 / 2, "decode_seqs": 44, "decode_ctx": 44 * 300}
    assert with_host.iteration_time(**step) - without.iteration_time(**step) == pytest.approx(45 * 3.4e-6, rel=1e-9)


def test_each_attention_dp_rank_walks_its_own_requests() -> None:
    moe = {"model": "qwen3-30b-a3b", "hardware": "b200", "precision": "nvfp4"}
    dep, _ = built({"engine": "trtllm", "attention_dp": 4, "ep": 4}, **moe)
    none, _ = built({"engine": "trtllm", "attention_dp": 4, "ep": 4, "host_us_per_request": 0.0}, **moe)
    # 10 requests over 4 ranks: the busiest holds ceil(10/4) = 3
    assert dep.decode_base(10) - none.decode_base(10) == pytest.approx(3 * 3.4e-6, rel=1e-9)


def test_an_offline_run_takes_the_host_time_of_every_sampled_token() -> None:
    """All requests queued at once: the same iterations run in the same order with and without the host time
    (admission reads the KV cache, not the clock), and each sampled token adds its 3.4 µs: the run is
    requests × output tokens × 3.4 µs longer."""
    runs = [simulate_serving(parse_scenario(scenario({"engine": "trtllm", "host_us_per_request": h})))
            for h in (3.4, 0.0)]
    assert runs[0].completed == runs[1].completed == 40
    assert runs[0].simulated_s - runs[1].simulated_s == pytest.approx(40 * 32 * 3.4e-6, rel=1e-6)


def test_fast_forward_stays_exact_with_the_host_time() -> None:
    """Decode windows priced in one piece (fast-forward) and step by step give the same requests, with the host
    time on (TensorRT-LLM), attention DP splitting it, and Poisson arrivals mixing prefills into the steps."""
    sc = parse_scenario({
        "kind": "serving", "model": "qwen3-30b-a3b", "hardware": "b200", "precision": "nvfp4",
        "replica": {"tp": 1, "attention_dp": 2, "ep": 2, "batching": "continuous", "engine": "trtllm",
                    "max_num_seqs": 24},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 40.0, "requests": 120},
                     "prompt_tokens": {"dist": "fixed", "value": 300}, "output_tokens": {"dist": "fixed", "value": 50}},
        "seed": 5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, slow = simulate_serving(sc), simulate_serving(sc, fast_forward=False)
    cols = ["arrival_s", "ttft_s", "e2e_s", "tpot_s", "status"]
    assert fast.completed == 120 and fast.requests[cols].equals(slow.requests[cols])
    r = fast
    assert r.completed + r.rejected + r.failed + r.in_flight == r.arrived
