"""MoE serving fidelity (issue 20's 15% target): attention's own math format, GQA shapes the kernel tables
lack, GPT-OSS's experts-only MXFP4 checkpoint, trtllm-bench's sizing for it, and windowed layers whose
window exceeds the context. Values by hand from the sources the code cites."""

from __future__ import annotations

import pytest

from simulator import parse_scenario, simulate_serving
from simulator.catalog import get_model
from simulator.costmodel.attention_variants import chunk_mean_keys, chunked_prefill_keys, windowed_prefill_work
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
    # B200 TensorRT-LLM tables at head_dim 64: MHA 2-16 heads and GPT-OSS's 64/8 (with its TP splits 32/4, 16/2,
    # 8/1). A 48/6 shape is in none: prefill from the same 8 query heads per KV head at the nearest head count
    # (64/8), its per-pair slope × 48/64 (work per query head); decode from the nearest KV head count (8; 64/8
    # matches the ratio too), its per-token slope × 6/8 (bytes per KV head read per cached token)
    hw = get_profile("b200").with_engine("trtllm", None)
    fit = measured_attention(hw, 48, 6, 64, "fp8")
    gqa = measured_attention(hw, 64, 8, 64, "fp8")
    assert fit.prefill is not None and gqa.prefill is not None and fit.decode is not None and gqa.decode is not None
    assert fit.prefill == pytest.approx((gqa.prefill[0], 48 / 64 * gqa.prefill[1]))
    assert fit.decode == pytest.approx((gqa.decode[0], 6 / 8 * gqa.decode[1]))
    assert measured_attention(hw, 64, 8, 64, "fp8") == gqa          # a measured shape reads its own table


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
    # at a 9000-token context without a decode span the chunked layers read half a chunk, 4096, per sequence
    m, hw = get_model("llama-4-maverick"), get_profile("b200").spec_only()
    full = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8")
    short = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8", decode_context_tokens=1500)
    long = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8", decode_context_tokens=9000)
    per_layer = full.decode_coef / 12
    assert short.decode_window_per_seq == 0 and short.decode_coef == pytest.approx(48 * per_layer)
    assert long.decode_coef == pytest.approx(full.decode_coef)
    assert long.decode_window_per_seq == pytest.approx(36 * per_layer * 4096)


def test_chunked_layers_read_their_own_chunk():
    # an 8192-token prompt decoding 1024 tokens: contexts 8192..9216, c mod 8192 runs 0..1024, mean 512 keys a
    # step (a trailing 8192-window would read 8192); 1024 + 32768: (F(33792) - F(1024)) / 32768 with
    # F(x) = floor(x/8192)·8192²/2 + (x mod 8192)²/2 = (4·8192²/2 + 1024²/2 - 1024²/2) / 32768 = 4096
    assert chunk_mean_keys(8192, 9216, 8192) == pytest.approx(512)
    assert chunk_mean_keys(1024, 33792, 8192) == pytest.approx(4096)
    assert chunk_mean_keys(100, 100, 8192) == 100
    m, hw = get_model("llama-4-maverick"), get_profile("b200").spec_only()
    assert all(s.attention.chunked == (s.attention.window == 8192) for s, _ in m.layer_groups())
    full = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8")
    per_layer = full.decode_coef / 12
    long = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8", decode_context_tokens=8704,
                          decode_span=(8192, 9216))
    assert long.decode_window_per_seq == pytest.approx(36 * per_layer * 512)
    # a span inside the first chunk reads every cached token, as a full layer
    short = InferenceModel(model=m, hw=hw, tp=8, precision="nvfp4", kv_precision="fp8", decode_context_tokens=1500,
                           decode_span=(1000, 2000))
    assert short.decode_window_per_seq == 0 and short.decode_coef == pytest.approx(48 * per_layer)
    # prefill: a query past its first chunk sees (8192 + 1)/2 keys on average; one 16384-token prompt does
    # 2 · 8192·8193/2 pairs in a chunked layer = 16384 · 8193/2, where a window would do ~16384 · 8192 - 8192²/2
    assert chunked_prefill_keys(8192) == 4096.5
    assert windowed_prefill_work(16384 * 16385 / 2, 16384, chunked_prefill_keys(8192)) == 16384 * 8193 / 2
    assert ("chunked", 4096.5) in [("chunked", w) for _, w in long.prefill_windows]


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
