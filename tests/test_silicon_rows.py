"""The measured serving rows as bench/serving_silicon.py configures them: aiconfigurator's generator
settings and aiperf's protocol, derived by hand from their sources."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving_silicon import Row, dense_rows, repeated_prompt_share, scenario  # noqa: E402
from simulator import parse_scenario  # noqa: E402


def test_the_dense_aggregated_rows_and_their_engines() -> None:
    rows = dense_rows()
    assert len(rows) == 1063
    by = {e: sum(r.engine == e for r in rows) for e in ("trtllm", "vllm", "sglang")}
    assert by == {"trtllm": 594, "vllm": 339, "sglang": 130}
    assert sum(not r.precision_given for r in rows) == 366      # simulated in bf16, flagged


def row(engine: str, **kw: object) -> Row:
    base = dict(id="x", checkpoint="meta-llama/Llama-3.1-70B", engine=engine, version="1.0.0rc3",
                model="llama-3.1-70b", hardware="h200", precision="fp8", precision_given=True, tp=4,
                concurrency=16, isl=4096, osl=512, ttft_ms=1.0, tpot_ms=1.0)
    return Row(**{**base, **kw})  # type: ignore[arg-type]


def test_trtllm_rows_run_the_generators_token_budget_and_memory() -> None:
    d = scenario(row("trtllm"))
    rep, arr = d["replica"], d["workload"]["arrival"]
    assert rep["max_num_seqs"] == 16 and rep["max_batched_tokens"] == 16 + 4096 + 1500
    assert rep["chunked_prefill"] is False and rep["prefix_caching"] is False and rep["kv_cache_fraction"] == 0.80
    assert rep["kv_cache_precision"] == "fp8"                  # aiconfigurator's fp8 profile: fp8 KV
    assert (arr["concurrency"], arr["warmup_requests"], arr["requests"]) == (16, 32, 320)
    parse_scenario(d)                                          # a valid scenario


def test_sglang_and_vllm_rows() -> None:
    s = scenario(row("sglang", version="0.5.6.post2"))["replica"]
    assert s["max_prefill_tokens"] == 4096 + 1500 and s["mixed_chunk"] is True
    v = scenario(row("vllm", version="0.12.0", checkpoint="nvidia/Llama-3.1-8B-Instruct-FP8"))["replica"]
    assert v["fp8_scales"] == "static" and "max_batched_tokens" not in v    # ModelOpt scales; vLLM's budget
    assert scenario(row("vllm", precision="bf16", precision_given=False))["replica"]["kv_cache_precision"] == "bf16"


@pytest.mark.parametrize(("c", "share"), [(4, 0.0), (8, 1 - 84 / 160), (40, 1 - 20 / 800), (64, 1.0)])
def test_repeated_prompts_of_aiperfs_100_entry_dataset(c: int, share: float) -> None:
    # 2c warm-up requests come first; of the 20c measured ones, those among the run's first 100 are new
    assert repeated_prompt_share(c) == pytest.approx(share)


def test_attention_dp_rows_run_the_sources_concurrency_with_the_batch_per_rank() -> None:
    from bench.serving_silicon import moe_rows

    rows, _ = moe_rows()
    # Kimi-K2.5 on 16 B200 (tp 4 x attention DP 4): batch_size 8 per rank, silicon_concurrency 32 ("c32" in the id)
    r = next(x for x in rows if x.id == "kimik2_5_b200_vllm_fp4_agg_1024x1024_c32_cfg635")
    assert (r.concurrency, r.max_batch, r.attention_dp) == (32, 8, 4)
    d = scenario(r)
    assert d["workload"]["arrival"]["concurrency"] == 32 and d["replica"]["max_num_seqs"] == 8   # per DP group
    assert (d["workload"]["arrival"]["warmup_requests"], d["workload"]["arrival"]["requests"]) == (64, 640)
    assert sum(x.max_batch is not None for x in rows) == 168


def test_a_concurrency_label_no_queue_could_match_is_noted_and_not_run() -> None:
    # TRT-LLM 1.3.0rc5 on 2 B200: batch 13, source concurrency 416 at 15000/500; 416 users' KV (~845 GB at fp8)
    # cannot be resident on 2 GPUs, so a harness at 416 would queue for minutes, yet TTFT is 0.72 s
    r = next(x for x in dense_rows() if x.id.endswith("b200_sxm_trtllm_agg_15000x500_c416_tp2_0_epnone_2"))
    assert r.concurrency == 13 and r.max_batch is None and "silicon_concurrency 416" in r.note
    assert sum(bool(x.note) for x in dense_rows()) == 16
