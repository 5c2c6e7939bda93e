"""Engine presets: each framework's defaults per version, an explicit key winning, the version choice,
the KV memory rules and KV dtype semantics, and trtllm-bench's sizing heuristic worked by hand."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from simulator import CapsimError, parse_scenario, simulate_serving
from simulator.costmodel.inference import GIB, RUNTIME_RESERVE_GIB
from simulator.serving.engines.presets import PRESETS, PresetWarning, engine_line, preset_for, trtllm_bench_sizing
from simulator.serving.simulate import build_replica_model

ROOT = Path(__file__).resolve().parents[1]


def scenario(replica: dict, *, hardware: str = "h100-sxm", model: str = "llama-3.1-8b", precision: str = "bf16",
             prompt: int = 512, output: int = 128, **top: object) -> dict:
    return {"kind": "serving", "model": model, "hardware": hardware, "precision": precision,
            "replica": {"batching": "continuous", **replica},
            "workload": {"arrival": {"process": "poisson", "rate_rps": 1.0, "requests": 20},
                         "prompt_tokens": {"dist": "fixed", "value": prompt},
                         "output_tokens": {"dist": "fixed", "value": output}}, **top}


def settings(replica: dict, **kw: object):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # tables of an older version than measured
        perf, plan = build_replica_model(parse_scenario(scenario(replica, **kw)))  # type: ignore[arg-type]
    assert plan.engine is not None
    return perf, plan, plan.engine


# ---- the resolved values, engine by engine -----------------------------------------------------------------
@pytest.mark.parametrize("hardware,version,seqs,tokens", [
    ("h100-sxm", None, 1024, 8192),        # vLLM >= 0.9: >= 70 GiB and not an A100
    ("h200", "0.24.0", 1024, 8192),
    ("a100-sxm-80gb", None, 256, 2048),    # 80 GiB, but an A100 (PR #17885)
    ("l40s", None, 256, 2048),             # 48 GiB
    ("h100-sxm", "0.8.0", 1024, 8192),     # 0.8.0: 1024 sequences everywhere, 8192 tokens on H100/H200 by name
    ("a100-sxm-80gb", "0.8.0", 1024, 2048),
    ("a100-sxm-80gb", "0.8.4", 256, 2048),  # PR #16158: 256 again except on H100/H200
    ("h200", "0.8.5", 1024, 8192),
])
def test_vllm_v1_sizes_by_gpu_and_version(hardware: str, version: str | None, seqs: int, tokens: int) -> None:
    _, plan, s = settings({"engine": "vllm", "engine_version": version}, hardware=hardware)
    assert (s.max_num_seqs, s.max_batched_tokens) == (plan.max_num_seqs, plan.max_batched_tokens) == (seqs, tokens)
    assert (s.chunked_prefill, s.scheduler_policy, s.schedule_order) == (True, "max_utilization", "decode_first")
    assert (s.kv_block_tokens, s.prefix_caching, s.kv_memory, s.kv_memory_fraction) == (16, True, "total", 0.9)


def test_vllm_06_v0_follows_the_models_context() -> None:
    """vLLM 0.6 switches chunked prefill on for a context over 32K (then a 512-token budget, decodes
    first); Llama-2-7B's 4,096 positions keep it off: the budget is max(4096, 2048) and prompts run
    as prefill-only batches (V0's _schedule_default); 256 sequences; no prefix caching."""
    _, _, long = settings({"engine": "vllm", "engine_version": "0.6.0"})                # Llama-3.1: 131,072
    assert (long.max_num_seqs, long.max_batched_tokens, long.chunked_prefill, long.schedule_order) == \
        (256, 512, True, "decode_first")
    _, plan, short = settings({"engine": "vllm", "engine_version": "0.6.0"}, model="llama-2-7b")
    assert (short.max_num_seqs, short.max_batched_tokens, short.chunked_prefill, short.schedule_order) == \
        (256, 4096, False, "prefill_first")
    assert short.max_prefill_tokens == 4096 and not short.prefix_caching and not plan.prefix_caching


@pytest.mark.parametrize("engine", ["trtllm", "trtllm-bench"])
@pytest.mark.parametrize("version", ["1.0.0", "1.3.0rc20"])
def test_tensorrt_llm_defaults(engine: str, version: str) -> None:
    _, plan, s = settings({"engine": engine, "engine_version": version}, precision="fp8")
    assert s.preset == ("1.3" if version.startswith("1.3") else "1.0")        # an rc takes its release's preset
    assert (s.chunked_prefill, s.scheduler_policy, s.schedule_order) == (False, "guaranteed_no_evict", "decode_first")
    assert (s.kv_block_tokens, s.prefix_caching, s.kv_memory, s.kv_memory_fraction) == (32, True, "free", 0.9)
    assert s.kv_cache_precision == plan.kv_cache_precision == "fp8"            # the ModelOpt checkpoint's KV
    if engine == "trtllm":
        assert (s.max_num_seqs, s.max_batched_tokens) == (2048, 8192)


@pytest.mark.parametrize("hardware,tp,chunk,fraction", [
    # server_args.py 0.5: reserved = 512 + 1.5·max(chunk, 2048) + 2·cuda_graph_max_bs + tp·pp/8·1024 MiB
    ("h200", 1, 8192, round((141 * 1024 - (512 + 12288 + 512 + 128)) / (141 * 1024), 3)),   # 0.907
    ("h100-sxm", 1, 8192, round((80 * 1024 - 13440) / (80 * 1024), 3)),                     # 0.836
    ("h100-sxm", 4, 8192, round((80 * 1024 - (512 + 12288 + 1024 + 512)) / (80 * 1024), 3)),  # TP4: graph bs 512
    ("b200", 1, 16384, round((180 * 1024 - (512 + 24576 + 1024 + 128)) / (180 * 1024), 3)),  # 16k chunk, bs 512
    ("l40s", 1, 4096, round((48 * 1024 - (512 + 6144 + 64 + 128)) / (48 * 1024), 3)),         # no 10 GiB floor
])
def test_sglang_05_sizes_its_chunk_and_memory_by_gpu(hardware: str, tp: int, chunk: int, fraction: float) -> None:
    _, plan, s = settings({"engine": "sglang", "engine_version": "0.5.6", "tp": tp}, hardware=hardware)
    assert (s.max_batched_tokens, s.kv_memory, s.kv_memory_fraction) == (chunk, "static", fraction)
    assert (s.chunked_prefill, s.scheduler_policy, s.schedule_order) == (True, "new_token_ratio", "prefill_first")
    assert (s.kv_block_tokens, s.max_prefill_tokens, s.prefix_caching) == (1, 16384, True)
    r = s.new_token_ratio
    assert r is not None and (r.init, r.min, r.retract_steps, r.clip_tokens) == (0.7, 0.7 * 0.14, 20, 4096)
    assert r.decay == pytest.approx((0.7 - 0.098) / 600)
    # max_running_requests = min(tokens // 2, clamp(tokens / context_len · 512, 2048, 4096))
    pool = min(max(int(plan.kv_cache_tokens / 131072 * 512), 2048), 4096)
    assert s.max_num_seqs == plan.max_num_seqs == min(plan.kv_cache_tokens // 2, pool)


@pytest.mark.parametrize("tp,fraction", [(1, 0.88), (2, 0.87), (4, 0.85), (8, 0.83)])
def test_sglang_03_memory_share_by_tp(tp: int, fraction: float) -> None:
    _, _, s = settings({"engine": "sglang", "engine_version": "0.3.0", "tp": tp}, hardware="h100-sxm")
    assert (s.preset, s.max_batched_tokens, s.kv_memory_fraction) == ("0.3", 8192, fraction)
    assert s.new_token_ratio is not None and (s.new_token_ratio.min, s.new_token_ratio.decay) == (0.1, 0.001)


# ---- what kv_cache_precision: auto means per engine ---------------------------------------------------------
@pytest.mark.parametrize("engine,precision,hardware,kv", [
    ("vllm", "fp8", "h100-sxm", "bf16"), ("sglang", "fp8", "h100-sxm", "bf16"),
    ("trtllm", "fp8", "h100-sxm", "fp8"), ("trtllm-bench", "nvfp4", "b200", "fp8"),
    ("trtllm", "bf16", "h100-sxm", "bf16"), ("trtllm", "fp8-block", "h100-sxm", "bf16"),
    ("vllm", "fp16", "h100-sxm", "fp16"),
])
def test_kv_dtype_auto_per_engine(engine: str, precision: str, hardware: str, kv: str) -> None:
    _, plan, s = settings({"engine": engine}, precision=precision, hardware=hardware)
    assert s.kv_cache_precision == plan.kv_cache_precision == kv


# ---- the KV memory rules, by hand -------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["vllm", "trtllm", "sglang"])
def test_kv_memory_share_by_engine(engine: str) -> None:
    """vLLM: 0.9 × capacity − weights − workspace − runtime; TensorRT-LLM: 0.9 × what is left;
    SGLang: mem_fraction_static × capacity − weights (its activations sit outside the share)."""
    perf, plan, s = settings({"engine": engine}, hardware="h200")
    mem = plan.memory_per_gpu_gib
    cap, w, ws, rsv = mem["capacity_gib"], mem["weights_gib"], mem["workspace_gib"], mem["runtime_gib"]
    assert cap == 141 and rsv == RUNTIME_RESERVE_GIB and w == pytest.approx(perf.weight_bytes_per_gpu() / GIB)
    free = cap - w - ws - rsv
    expect = {"vllm": 0.9 * cap - (cap - free), "trtllm": 0.9 * free, "sglang": s.kv_memory_fraction * cap - w}[engine]
    assert mem["kv_cache_gib"] == pytest.approx(expect, rel=1e-9)
    assert plan.kv_cache_tokens == int(mem["kv_cache_gib"] * GIB // perf.kv_bytes_per_token_per_gpu())


def test_a_share_too_small_for_the_model_is_an_error() -> None:
    """Llama-3.1-70B bf16 (~131 GiB of weights) on one H200: vLLM's 0.9 × 141 GiB leaves nothing."""
    with pytest.raises(CapsimError, match=r"vllm's memory share \(0.9 of GPU memory.*no room for a KV cache"):
        settings({"engine": "vllm"}, hardware="h200", model="llama-3.1-70b")


# ---- an explicit key wins ---------------------------------------------------------------------------------------
def test_every_explicit_key_wins_and_says_so() -> None:
    keys = {"max_num_seqs": 12, "max_batched_tokens": 3000, "chunked_prefill": False,
            "scheduler_policy": "max_utilization", "schedule_order": "decode_first", "kv_block_tokens": 64,
            "prefix_caching": False, "kv_cache_precision": "fp8", "kv_cache_fraction": 0.5}
    _, plan, s = settings({"engine": "sglang", **keys})
    assert (s.max_num_seqs, s.max_batched_tokens, s.chunked_prefill, s.scheduler_policy, s.schedule_order,
            s.kv_block_tokens, s.prefix_caching, s.kv_cache_precision) == (12, 3000, False, "max_utilization",
                                                                           "decode_first", 64, False, "fp8")
    assert (s.kv_memory, s.kv_memory_fraction, s.new_token_ratio) == ("free", 0.5, None)
    assert (plan.max_num_seqs, plan.max_batched_tokens, plan.kv_block_tokens, plan.scheduler_policy) == \
        (12, 3000, 64, "max_utilization")
    assert all(s.sources[k].startswith("set in the scenario") for k in
               ("max_num_seqs", "max_batched_tokens", "chunked_prefill", "scheduler_policy", "schedule_order",
                "kv_block_tokens", "prefix_caching", "kv_cache_precision", "kv_memory"))
    _, _, default = settings({"engine": "sglang"})
    assert "get_next_batch_to_run" in default.sources["schedule_order"]


def test_sglangs_admission_needs_the_prefill_first_order() -> None:
    with pytest.raises(CapsimError, match="new_token_ratio .* runs with the prefill-first scheduler"):
        settings({"engine": "vllm", "scheduler_policy": "new_token_ratio"})
    _, _, s = settings({"engine": "vllm", "scheduler_policy": "new_token_ratio", "schedule_order": "prefill_first"})
    assert s.new_token_ratio == PRESETS["sglang"]["0.5"].new_token_ratio


def test_a_prefix_hit_rate_without_a_prefix_cache_is_an_error() -> None:
    d = scenario({"engine": "vllm", "engine_version": "0.6"}, model="llama-2-7b")
    d["workload"]["prefix_cache_hit_rate"] = 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CapsimError, match="prefix_cache_hit_rate is 0.3 but replica.prefix_caching is false"):
            build_replica_model(parse_scenario(d))


# ---- the version choice -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine,version,preset", [
    ("vllm", None, "0.9"), ("vllm", "0.24.0", "0.9"), ("vllm", "0.9", "0.9"), ("vllm", "0.8.5", "0.8.4"),
    ("vllm", "0.8.3", "0.8"), ("vllm", "0.7.3", "0.6"), ("vllm", "0.10.1.dev3", "0.9"),
    ("trtllm", "1.2.0rc5", "1.0"), ("trtllm", "1.3.0rc20", "1.3"), ("trtllm-bench", None, "1.3"),
    ("sglang", "0.4.9", "0.3"), ("sglang", "0.5.6.post2", "0.5"), ("sglang", None, "0.5"),
])
def test_the_newest_preset_at_or_below_the_version(engine: str, version: str | None, preset: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PresetWarning)
        assert preset_for(engine, version) == (PRESETS[engine][preset], None)


def test_a_version_older_than_every_preset_takes_the_oldest_and_warns() -> None:
    with pytest.warns(PresetWarning, match="no vllm preset that old; using vllm 0.6's defaults"):
        p, w = preset_for("vllm", "0.5.4")
    assert p.version == "0.6" and w is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = simulate_serving(parse_scenario(scenario({"engine": "vllm", "engine_version": "0.5.4"}, model="llama-2-7b")))
    assert w in r.warnings


# ---- trtllm-bench's sizing, by hand -----------------------------------------------------------------------------
def test_trtllm_bench_sizing_by_hand() -> None:
    """Llama-3.1-8B FP8 (8,030,261,248 parameters, FP8 KV) on one 141 GiB H200, fraction 0.9:
    KV per token = 2·32 layers·8 heads·128·1 B = 65,536 B = 2⁻¹⁴ GiB; engine 8.0303e9 B = 7.4787 GiB;
    cache = (141 − 7.4787) × 0.9 = 120.169 GiB.
    - 20000/2000: 120.169 / (22000 · 2⁻¹⁴) = 89.49 requests -> batch max(64, 32·⌈89.49/32⌉) = 96;
      tokens 89.49 · (1 + 10) = 984 -> max(2048, 256·⌈3.85⌉) = 2048.
    - 128/128: 7,690.8 requests, capped at 4096 -> 256·16 = 4096; tokens 4096·2 = 8192 -> 1024·8 = 8192.
    - 2048/128: 904.8 -> 128·⌈7.07⌉ = 1024; tokens 904.8·17 = 15,381 -> 1024·⌈15.02⌉ = 16384."""
    common = dict(param_count=8_030_261_248, layers=32, kv_heads=8, head_dim=128, precision="fp8", kv_precision="fp8",
                  device_memory_gib=141.0, tp=1, pp=1, kv_fraction=0.9)
    s = trtllm_bench_sizing(isl=20000, osl=2000, **common)  # type: ignore[arg-type]
    engine = 8_030_261_248 / 2**30
    cache = (141 - engine) * 0.9
    assert s.engine_size_gib == pytest.approx(7.4787, abs=1e-4) and s.cache_memory_gib == pytest.approx(cache)
    assert s.kv_cache_max_requests == pytest.approx(cache / (22000 * 2**-14)) and 89.4 < s.kv_cache_max_requests < 89.6
    assert (s.max_batch_size, s.max_num_tokens) == (96, 2048)
    assert (trtllm_bench_sizing(isl=128, osl=128, **common).max_batch_size,  # type: ignore[arg-type]
            trtllm_bench_sizing(isl=128, osl=128, **common).max_num_tokens) == (4096, 8192)  # type: ignore[arg-type]
    s2 = trtllm_bench_sizing(isl=2048, osl=128, **common)  # type: ignore[arg-type]
    assert (s2.max_batch_size, s2.max_num_tokens) == (1024, 16384)
    # bf16 weights and KV: twice the bytes per token and per parameter
    s3 = trtllm_bench_sizing(isl=20000, osl=2000, **{**common, "precision": "bf16", "kv_precision": "bf16"})  # type: ignore[arg-type]
    assert s3.kv_cache_max_requests == pytest.approx((141 - 2 * engine) * 0.9 / (22000 * 2**-13))
    # a quantization outside TUNED_QUANTS gets the BuildConfig defaults
    s4 = trtllm_bench_sizing(isl=128, osl=128, **{**common, "precision": "w4a16"})  # type: ignore[arg-type]
    assert (s4.max_batch_size, s4.max_num_tokens) == (2048, 8192) and math.isnan(s4.kv_cache_max_requests)


def test_the_trtllm_bench_preset_sizes_from_the_workload_and_lifts_tokens_to_the_longest_prompt() -> None:
    """Chunked context off: max_num_tokens = max(2048, 20000 + 96) = 20096 (get_settings)."""
    _, plan, s = settings({"engine": "trtllm-bench"}, hardware="h200", precision="fp8", prompt=20000, output=2000)
    assert (s.max_num_seqs, s.max_batched_tokens) == (plan.max_num_seqs, plan.max_batched_tokens) == (96, 20096)
    _, _, chunked = settings({"engine": "trtllm-bench", "chunked_prefill": True}, hardware="h200", precision="fp8",
                             prompt=20000, output=2000)
    assert (chunked.max_num_seqs, chunked.max_batched_tokens) == (96, 2048)
    _, _, frac = settings({"engine": "trtllm-bench", "kv_cache_fraction": 0.45}, hardware="h200", precision="fp8",
                          prompt=20000, output=2000)
    assert frac.max_num_seqs == 64          # 44.7 requests at half the KV fraction: the floor of 64


# ---- what the run reports -------------------------------------------------------------------------------------
def test_the_result_carries_the_resolved_settings_and_the_cli_prints_one_line() -> None:
    r = simulate_serving(parse_scenario(scenario({"engine": "vllm", "engine_version": "0.24.0"})))
    assert r.engine_settings["preset"] == "vllm 0.9" and r.engine_settings["max_num_seqs"] == 1024
    line = "vllm 0.24.0 preset (max_num_seqs 1024, max_batched_tokens 8192, chunked prefill on, max_utilization)"
    assert engine_line(r.engine_settings) == line
    out = subprocess.run([sys.executable, "-m", "capsim", "serve", "examples/serve_llama3_8b.yaml", "--set",
                          "workload.duration_s=20", "--set", "replica.engine=sglang"], capture_output=True, text=True,
                         cwd=ROOT, check=True, env={**os.environ, "COLUMNS": "250"}).stdout
    row = next(x for x in out.splitlines() if x.startswith("engine "))
    assert "sglang 0.5+ preset (max_num_seqs 256, max_batched_tokens 8192, chunked prefill on, new_token_ratio, " \
           "prefill first)" in row
    batch = simulate_serving(parse_scenario(scenario({"batching": "static"})))
    assert batch.engine_settings == {}
