"""The prefill-first engine (SGLang's scheduler; vLLM 0.6 without chunked prefill): a timeline worked
by hand against decode-first, SGLang's admission estimate, retraction, and fast-forward exactness."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from simulator import CapsimError, parse_scenario, simulate_serving
from simulator.serving.engines import ENGINES, PrefillFirstEngine
from simulator.serving.engines.presets import LengthStats
from simulator.serving.simulate import build_replica_model

COLS = ["arrival_s", "queue_s", "ttft_s", "e2e_s", "tpot_s", "replica", "status", "preemptions"]


def doc(replica: dict, workload: dict, **top: object) -> dict:
    return {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm", "precision": "bf16",
            "replica": {"batching": "continuous", **replica}, "workload": workload, "seed": 5, **top}


def run(d: dict, **kw: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate_serving(parse_scenario(d), **kw)


def test_sglang_runs_the_prefill_first_engine() -> None:
    assert ENGINES.impl("prefill_first") is PrefillFirstEngine
    r = run(doc({"engine": "sglang"}, {"arrival": {"process": "poisson", "rate_rps": 2, "requests": 20}}))
    assert r.engine_settings["schedule_order"] == "prefill_first" and r.completed == 20


# ---- the two orders, worked by hand ----------------------------------------------------------------------------
def test_a_prompt_arriving_mid_decode_pauses_decoding_under_prefill_first(tmp_path: Path) -> None:
    """A (100-token prompt, 6 tokens out) runs alone; B (3000, 3) arrives halfway through A's first
    decode step. Both orders finish that step (T2) and then:

    decode-first: one mixed iteration M (B's 3000 prompt tokens + A's decode token), then two decode
    steps of A and B, then one of A alone: B's TTFT = T2 + M − t_B.
    prefill-first: a prefill-only iteration P (B's prompt; A waits), then two steps of both, then two
    of A: B's TTFT = T2 + P − t_B < the above, and A pays P plus one more step.
    Step costs are the cost model's: a decode step of n sequences over c cached tokens is
    decode_base(n) + decode_coef·(c + n)."""
    replica = {"engine": "vllm", "max_num_seqs": 8, "max_batched_tokens": 8192, "chunked_prefill": True,
               "kv_block_tokens": 16, "kv_cache_fraction": 0.5, "scheduler_policy": "max_utilization"}
    base = doc(replica, {"arrival": {"process": "offline", "requests": 1},
                         "prompt_tokens": {"dist": "fixed", "value": 100}, "output_tokens": {"dist": "fixed", "value": 6}})
    # the replica model of the traced workload below (prompts of 100 and 3,000 tokens, outputs of 6 and 3):
    # its prompt attention is charged at the mean prompt's rate
    perf, _ = build_replica_model(parse_scenario(base), LengthStats(1550.0, 4.5, 3000))
    C = perf.decode_coef_per_step

    def step(n: int, ctx: int) -> float:
        return perf.decode_base(n) + C * (ctx + n)

    def it(q: int, *, n: int = 0, ctx: int = 0, sampled: int) -> float:
        return perf.iteration_time(tokens=q + n, sampled=sampled, prefill_work=q * (q + 1) / 2, decode_seqs=n,
                                   decode_ctx=ctx + n if n else 0)

    T1 = it(100, sampled=1)                 # A's prompt: its first token
    t_b = T1 + step(1, 100) / 2
    T2 = T1 + step(1, 100)                  # A: 2 tokens, 101 cached
    trace = tmp_path / "trace.csv"
    trace.write_text(f"timestamp,prompt_tokens,output_tokens\n0,100,6\n{t_b!r},3000,3\n")
    wl = {"arrival": {"process": "trace", "path": str(trace)}}
    first = run(doc({**replica, "schedule_order": "decode_first"}, wl)).requests
    pfirst = run(doc({**replica, "schedule_order": "prefill_first"}, wl)).requests

    M = it(3000, n=1, ctx=101, sampled=2)   # B's prompt with A's third token
    T3 = T2 + M
    df_b_done = T3 + step(2, 102 + 3000) + step(2, 103 + 3001)      # B's 2nd and 3rd tokens
    df_a_done = df_b_done + step(1, 104)                             # A's 6th
    P = it(3000, sampled=1)                 # B's prompt alone
    T3p = T2 + P
    pf_b_done = T3p + step(2, 101 + 3000) + step(2, 102 + 3001)
    pf_a_done = pf_b_done + step(1, 103) + step(1, 104)              # A's 5th and 6th
    assert first.ttft_s[1] == pytest.approx(T3 - t_b, rel=1e-9)
    assert pfirst.ttft_s[1] == pytest.approx(T3p - t_b, rel=1e-9)
    assert (first.e2e_s[1], first.e2e_s[0]) == (pytest.approx(df_b_done - t_b, rel=1e-9),
                                                pytest.approx(df_a_done, rel=1e-9))
    assert (pfirst.e2e_s[1], pfirst.e2e_s[0]) == (pytest.approx(pf_b_done - t_b, rel=1e-9),
                                                  pytest.approx(pf_a_done, rel=1e-9))
    assert pfirst.ttft_s[1] < first.ttft_s[1]       # the newcomer's first token comes sooner...
    assert pfirst.tpot_s[0] > first.tpot_s[0]       # ...and the running request's tokens slower
    assert first.tpot_s[0] == pytest.approx((df_a_done - T1) / 5, rel=1e-9)
    assert pfirst.tpot_s[0] == pytest.approx((pf_a_done - T1) / 5, rel=1e-9)
    # SGLang's --enable-mixed-chunk: A decodes inside B's prefill batch (budget 8192 - 1 running), so
    # the timeline is decode-first's: the mixed iteration M, then the same decode steps
    mixed = run(doc({**replica, "schedule_order": "prefill_first", "mixed_chunk": True}, wl)).requests
    assert mixed.ttft_s[1] == pytest.approx(T3 - t_b, rel=1e-9)
    assert (mixed.e2e_s[1], mixed.e2e_s[0]) == (pytest.approx(df_b_done - t_b, rel=1e-9),
                                                pytest.approx(df_a_done, rel=1e-9))


def test_mixed_chunk_belongs_to_the_prefill_first_order() -> None:
    d = doc({"engine": "vllm", "mixed_chunk": True}, {"arrival": {"process": "poisson", "rate_rps": 2, "requests": 5}})
    with pytest.raises(CapsimError, match="mixed_chunk"):
        run(d)


# ---- SGLang's admission estimate --------------------------------------------------------------------------------
def test_sglang_admits_only_what_fits_beside_the_estimated_outputs() -> None:
    """A KV pool of K tokens, two requests of K/3 prompt and K/3 output queued at once. SGLang admits
    A (K/3 + K/3 < K) and charges both halves, leaving K/3: B's 2K/3 does not fit, batch_is_full holds,
    and B starts the moment A finishes. vLLM V0's rule (blocks free now) runs both prompts in the
    first prefill batch."""
    replica = {"engine": "sglang", "kv_cache_fraction": 0.006}
    _, plan = build_replica_model(parse_scenario(doc(replica, {})))
    K = plan.kv_cache_tokens
    assert 2500 < K < 4000 and plan.kv_block_tokens == 1
    third = K // 3
    wl = {"arrival": {"process": "offline", "requests": 2}, "prompt_tokens": {"dist": "fixed", "value": third},
          "output_tokens": {"dist": "fixed", "value": third}}
    sg = run(doc(replica, wl))
    r = sg.requests
    assert sg.preemptions == 0 and r.queue_s[0] == 0
    assert r.queue_s[1] == pytest.approx(r.e2e_s[0], rel=1e-12)        # admitted when A finished
    v0 = run(doc({**replica, "scheduler_policy": "max_utilization"}, wl)).requests
    assert v0.queue_s.tolist() == [0.0, 0.0] and v0.ttft_s[0] == v0.ttft_s[1]   # one prefill batch


def test_sglang_retracts_when_its_estimate_overcommits() -> None:
    """Many requests on a small pool: the ratio decays, admissions outrun the pool, decoding retracts
    (the fewest-output request first, to the back of the queue) and every request still completes."""
    d = doc({"engine": "sglang", "kv_cache_fraction": 0.02},
            {"arrival": {"process": "poisson", "rate_rps": 40, "requests": 300},
             "prompt_tokens": {"dist": "lognormal", "mean": 600, "sigma": 0.6},
             "output_tokens": {"dist": "lognormal", "mean": 400, "sigma": 0.6}})
    r = run(d)
    assert r.preemptions > 0 and r.completed == 300 and r.rejected == 0


# ---- fast-forward stays exact -------------------------------------------------------------------------------------
LOGNORMAL = {"prompt_tokens": {"dist": "lognormal", "mean": 900, "sigma": 0.8},
             "output_tokens": {"dist": "lognormal", "mean": 250, "sigma": 0.6}}


@pytest.mark.parametrize("name,d", [
    ("sglang", doc({"engine": "sglang"}, {"arrival": {"process": "poisson", "rate_rps": 8, "requests": 300},
                                          **LOGNORMAL})),
    ("sglang_retract", doc({"engine": "sglang", "kv_cache_fraction": 0.02},
                           {"arrival": {"process": "poisson", "rate_rps": 30, "requests": 300}, **LOGNORMAL})),
    ("sglang_closed_loop", doc({"engine": "sglang", "engine_version": "0.3"},
                               {"arrival": {"process": "closed_loop", "concurrency": 32, "requests": 300,
                                            "think_time_s": 0.2}, **LOGNORMAL})),
    ("sglang_mixed_chunk", doc({"engine": "sglang", "mixed_chunk": True, "max_prefill_tokens": 3000,
                                "kv_cache_fraction": 0.05},
                               {"arrival": {"process": "closed_loop", "concurrency": 48, "requests": 300}, **LOGNORMAL})),
    ("sglang_long_prompts", doc({"engine": "sglang"}, {"arrival": {"process": "poisson", "rate_rps": 1, "requests": 40},
                                                       "prompt_tokens": {"dist": "uniform", "low": 9000, "high": 24000},
                                                       "output_tokens": {"dist": "fixed", "value": 200}})),
    ("vllm06_preempt", {**doc({"engine": "vllm", "engine_version": "0.6", "kv_cache_fraction": 0.03},
                              {"arrival": {"process": "poisson", "rate_rps": 20, "requests": 300},
                               "prompt_tokens": {"dist": "lognormal", "mean": 700, "sigma": 0.6, "max": 4000},
                               "output_tokens": {"dist": "lognormal", "mean": 300, "sigma": 0.6}}),
                        "model": "llama-2-7b"}),
    ("gne_unchunked", doc({"batching": "prefill_first", "engine": "trtllm", "scheduler_policy": "guaranteed_no_evict",
                           "chunked_prefill": False, "max_batched_tokens": 16384, "kv_cache_fraction": 0.05},
                          {"arrival": {"process": "poisson", "rate_rps": 12, "requests": 300}, **LOGNORMAL})),
    ("priorities_kv_aware", doc({"engine": "sglang", "kv_cache_fraction": 0.05},
                                {"arrival": {"process": "gamma", "rate_rps": 14, "cv": 3, "requests": 400},
                                 "classes": [{"name": "gold", "weight": 1, "priority": 2},
                                             {"name": "bulk", "weight": 3, "priority": 0}],
                                 "prefix_cache_hit_rate": 0.3, **LOGNORMAL},
                                cluster={"replicas": 2, "router": "kv_aware"})),
])
def test_fast_forward_gives_identical_per_request_results(name: str, d: dict) -> None:
    fast, slow = run(d), run(d, fast_forward=False)
    a, b = fast.requests[COLS], slow.requests[COLS]
    assert a.equals(b), name
    if name in ("sglang_retract", "vllm06_preempt"):
        assert fast.preemptions > 0, name            # the retraction / preemption paths ran


@pytest.mark.parametrize("seed", range(10))
def test_random_prefill_first_scenarios_conserve_requests_and_fast_forward_is_exact(seed: int) -> None:
    """The random scenarios of test_serving_properties (limits, KV pressure, arrivals, classes, routers,
    faults, autoscaling) on the prefill-first engine, with each of its three capacity policies."""
    from test_serving_properties import random_scenario

    d = random_scenario(1000 + seed)
    d["replica"].update(engine="sglang", schedule_order="prefill_first",
                        scheduler_policy=("new_token_ratio", "max_utilization", "guaranteed_no_evict")[seed % 3])
    try:
        fast = run(d)
    except CapsimError as e:               # weights + workspace leave no KV at this fraction
        assert "does not fit" in str(e) or "no room for a KV cache" in str(e)
        return
    slow = run(d, fast_forward=False)
    s = fast.summary
    assert s["completed"] + s["rejected"] + s["failed"] + s["in_flight"] == s["arrived"]
    assert fast.requests[COLS].equals(slow.requests[COLS]), seed
