"""MoE serving fidelity (issue 20's 15% target): attention's own math format, GQA shapes the kernel tables
lack, GPT-OSS's experts-only MXFP4 checkpoint, trtllm-bench's sizing for it, and windowed layers whose
window exceeds the context. Values by hand from the sources the code cites."""

from __future__ import annotations

import pytest

from simulator import parse_scenario, simulate_serving
from simulator.catalog import get_model
from simulator.costmodel.inference import InferenceModel, layer_precisions, measured_attention
from simulator.hardware import get_profile
from simulator.serving.engines.presets import TRTLLM_BUILD_DEFAULTS


def test_attention_roofline_runs_at_bf16_whatever_the_gemm_format():
    # no FMHA runs on FP4 tensor cores: the roofline prefill coefficient of a shape without tables is
    # layers × 4·heads·head_dim FLOPs per pair at bf16's rate, the same at nvfp4 as at bf16
    m, hw = get_model("gpt-oss-20b"), get_profile("b200").spec_only()
    rate = hw.peak_flops("bf16") * hw.gemm_max("bf16") * hw.efficiency.attention_fwd
    for prec in ("bf16", "nvfp4"):
        im = InferenceModel(model=m, hw=hw, tp=1, precision=prec, kv_precision="fp8")
        assert im.prefill_coef == pytest.approx(12 * 4 * 64 * 64 / rate)     # the 12 full-attention layers


def test_gqa_shape_outside_the_tables_comes_from_a_measured_neighbour():
    # B200 TensorRT-LLM tables: head_dim 64 only as MHA (2-16 heads). GPT-OSS's 64 query / 8 KV heads:
    # prefill = the 16-head table's per-pair slope × 64/16 (work per query head), decode = the 8-head table's
    # per-token slope (the same 8 KV heads' bytes read per cached token)
    hw = get_profile("b200").with_engine("trtllm", None)
    fit = measured_attention(hw, 64, 8, 64, "fp8")
    mha16 = measured_attention(hw, 16, 16, 64, "fp8")
    mha8 = measured_attention(hw, 8, 8, 64, "fp8")
    assert fit.prefill is not None and mha16.prefill is not None
    assert fit.prefill[1] == pytest.approx(4 * mha16.prefill[1])
    assert fit.decode == mha8.decode
    assert measured_attention(hw, 16, 16, 64, "fp8") == mha16       # a measured shape reads its own table


def test_gpt_oss_quantizes_only_its_experts():
    # openai/gpt-oss config.json: modules_to_not_convert keeps self_attn, router, embeddings, lm_head in bf16
    m = get_model("gpt-oss-120b")
    assert m.experts_only_quant == "mxfp4" and get_model("deepseek-r1").experts_only_quant is None
    # Blackwell: W4A8_MXFP4_MXFP8 (fp8 math, 4-bit weights); Hopper's w4a16 stays bf16 math
    assert layer_precisions(m, get_profile("b200"), "nvfp4") == ("bf16", "fp8")
    assert layer_precisions(m, get_profile("h200"), "w4a16") == ("bf16", "w4a16")
    assert layer_precisions(get_model("qwen3-30b-a3b"), get_profile("b200"), "nvfp4") == ("nvfp4", "nvfp4")
    routed = sum(s.routed_params() * n for s, n in m.layer_groups())
    im = InferenceModel(model=m, hw=get_profile("b200"), tp=1, precision="nvfp4", kv_precision="fp8")
    from simulator.precision import model_weight_bytes
    assert im.weight_bytes_per_gpu() == pytest.approx(model_weight_bytes(routed, 0, "nvfp4")
                                                      + 2.0 * (m.total_params() - routed))


def test_trtllm_bench_keeps_build_defaults_for_gpt_oss():
    # an MXFP4 quant algo is not in bench/build/build.py TUNED_QUANTS: max_batch_size 2048, max_num_tokens
    # 8192, raised to the longest prompt + 2048 with chunking off
    def settings(isl: int) -> dict:
        sc = parse_scenario({
            "kind": "serving", "model": "gpt-oss-20b", "hardware": "b200", "precision": "nvfp4",
            "replica": {"tp": 1, "batching": "continuous", "engine": "trtllm-bench"},
            "pricing": {"usd_per_gpu_hour": 1.0},
            "workload": {"arrival": {"process": "offline", "requests": 20},
                         "prompt_tokens": {"dist": "fixed", "value": isl},
                         "output_tokens": {"dist": "fixed", "value": 16}}, "seed": 0})
        return simulate_serving(sc).engine_settings
    assert TRTLLM_BUILD_DEFAULTS == (2048, 8192)
    short, long = settings(1000), settings(32768)
    assert (short["max_num_seqs"], short["max_batched_tokens"]) == (2048, 8192)
    assert (long["max_num_seqs"], long["max_batched_tokens"]) == (2048, 32768 + 2048)


def test_window_longer_than_the_context_is_charged_per_cached_token():
    # Llama 4 Maverick: 36 chunked layers (8192) and 12 global ones. At a 1500-token decode context
    # every layer reads every cached token (min(c, 8192) = c): all 48 layers per token, no window term;
    # at a 9000-token context the chunked layers read their 8192 per sequence
    m, hw = get_model("llama-4-maverick"), get_profile("b200").spec_only()
    full = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8")
    short = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8", decode_context_tokens=1500)
    long = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8", decode_context_tokens=9000)
    per_layer = full.decode_coef / 12
    assert short.decode_window_per_seq == 0 and short.decode_coef == pytest.approx(48 * per_layer)
    assert long.decode_coef == pytest.approx(full.decode_coef)
    assert long.decode_window_per_seq == pytest.approx(36 * per_layer * 8192)


def test_fast_forward_exact_with_windows_longer_than_the_context():
    sc = parse_scenario({
        "kind": "serving", "model": "llama-4-scout", "hardware": "h200", "precision": "w4a16",
        "replica": {"tp": 2, "batching": "continuous", "max_num_seqs": 16, "max_batched_tokens": 2048},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 20.0, "requests": 60},
                     "prompt_tokens": {"dist": "fixed", "value": 300}, "output_tokens": {"dist": "fixed", "value": 50}},
        "pricing": {"usd_per_gpu_hour": 1.0}, "seed": 5})
    fast, slow = simulate_serving(sc), simulate_serving(sc, fast_forward=False)
    cols = ["arrival_s", "ttft_s", "e2e_s", "tpot_s", "status"]
    assert fast.completed == 60 and fast.requests[cols].equals(slow.requests[cols])
    assert fast.completed + fast.rejected + fast.failed + fast.in_flight == fast.arrived


def test_trtllm_block_reuse_keeps_windowed_layers_in_full():
    # TensorRT-LLM detaches out-of-window blocks only with block reuse off: GPT-OSS-120B's 18 windowed layers
    # then hold 128 of a 2048-token request's tokens, with reuse on (its default) all of them
    def kv_tokens(reuse: bool) -> int:
        sc = parse_scenario({
            "kind": "serving", "model": "gpt-oss-120b", "hardware": "b200", "precision": "nvfp4",
            "replica": {"tp": 1, "batching": "continuous", "engine": "trtllm-bench", "prefix_caching": reuse},
            "pricing": {"usd_per_gpu_hour": 1.0},
            "workload": {"arrival": {"process": "offline", "requests": 4},
                         "prompt_tokens": {"dist": "fixed", "value": 1024},
                         "output_tokens": {"dist": "fixed", "value": 1024}}, "seed": 0})
        return simulate_serving(sc).kv_cache_tokens_per_replica
    per_token_full, per_token_windowed = 36 * 1024, 18 * 1024 + 18 * 1024 * 128 / 2048
    assert kv_tokens(False) / kv_tokens(True) == pytest.approx(per_token_full / per_token_windowed, rel=1e-4)
