"""Layers that differ, read from Hugging Face configs and served: per-layer keys of config.json,
inference costs summed over layer kinds, and the serving simulator's linear (full-attention)
treatment of sliding-window layers, which keeps fast-forward exact."""

import json

import pytest

from simulator import CapsimError, parse_scenario, simulate_serving
from simulator.catalog import get_model
from simulator.costmodel.inference import InferenceModel, linear_layer_ops
from simulator.hardware import get_profile

QWEN2 = {"model_type": "qwen2", "num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8,
         "num_key_value_heads": 2, "intermediate_size": 1024, "vocab_size": 1000, "max_position_embeddings": 4096}


def _load(tmp_path, cfg):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return get_model(str(p))


def test_hf_qwen2_slides_from_max_window_layers_only_when_enabled(tmp_path):
    off = _load(tmp_path, {**QWEN2, "sliding_window": 256, "use_sliding_window": False})
    assert off.sliding_window is None and off.uniform
    on = _load(tmp_path, {**QWEN2, "sliding_window": 256, "use_sliding_window": True, "max_window_layers": 6})
    assert [s.attention.window for s in on.layer_specs()] == [None] * 6 + [256] * 2
    assert on.total_params() == off.total_params()          # a window changes work, not weights


def test_hf_layer_types_and_mistral_window(tmp_path):
    types = ["sliding_attention", "full_attention"] * 4
    m = _load(tmp_path, {**QWEN2, "sliding_window": 128, "layer_types": types})
    assert [s.attention.window for s in m.layer_specs()] == [128, None] * 4
    mistral = {**QWEN2, "model_type": "mistral", "sliding_window": 4096}
    assert {s.attention.window for s in _load(tmp_path, mistral).layer_specs()} == {4096}
    assert _load(tmp_path, {**mistral, "sliding_window": None}).uniform
    with pytest.raises(CapsimError, match="layer_types\\[0\\]='chunked_attention' is not supported"):
        _load(tmp_path, {**QWEN2, "layer_types": ["chunked_attention"] * 8})


def test_hf_qwen_moe_sparse_step_and_dense_prefix(tmp_path):
    cfg = {**QWEN2, "model_type": "qwen3_moe", "head_dim": 64, "moe_intermediate_size": 256, "num_experts": 8,
           "num_experts_per_tok": 2, "decoder_sparse_step": 2, "mlp_only_layers": []}
    m = _load(tmp_path, cfg)
    assert [s.mlp.is_moe for s in m.layer_specs()] == [False, True] * 4
    assert {s.mlp.ffn_hidden for s in m.layer_specs() if not s.mlp.is_moe} == {1024}   # intermediate_size
    dense_first = _load(tmp_path, {**cfg, "decoder_sparse_step": 1, "mlp_only_layers": [0, 1]})
    assert [s.mlp.is_moe for s in dense_first.layer_specs()] == [False, False] + [True] * 6
    with pytest.raises(CapsimError, match="mlp_only_layers=\\[3\\] is not supported"):
        _load(tmp_path, {**cfg, "mlp_only_layers": [3]})


def _twins() -> tuple:
    base = {"name": "w", "layers": 6, "hidden": 1024, "heads": 8, "kv_heads": 2, "ffn_hidden": 2048,
            "activation": "swiglu", "norm": "rmsnorm", "position": "rope", "vocab": 1000, "max_positions": 8192,
            "qkv_bias": False, "linear_bias": False}
    return get_model(base), get_model({**base, "sliding_window": 64, "layer_types": ["sliding", "sliding", "full"]})


def test_serving_charges_sliding_layers_their_window():
    # costmodel.attention_variants: in a model with full layers too, a windowed layer's decode reads its
    # window per sequence (not the whole context) and its cache holds the window per sequence.
    full, sliding = _twins()                     # 6 layers; the twin has 4 sliding (window 64) and 2 full
    hw = get_profile("h100-sxm")
    a, b = InferenceModel(model=full, hw=hw), InferenceModel(model=sliding, hw=hw)
    per_layer = a.decode_coef / 6
    assert b.decode_coef == pytest.approx(2 * per_layer)
    assert b.decode_window_per_seq == pytest.approx(4 * per_layer * 64)
    # K and V of 2 KV heads × 128 dims in bf16 = 1024 B per token and layer
    assert a.kv_bytes_per_token_per_gpu() == 6 * 1024 == b.kv_bytes_per_token_per_gpu()   # no context: in full
    # 256-token requests: the 4 windowed layers hold 64 of every 256 tokens
    assert b.kv_bytes_per_token_per_gpu(256) == 2 * 1024 + 4 * 1024 * 64 / 256
    assert b.kv_window_bytes_per_seq == 4 * 1024 * 64
    assert a.linear_time(300) == b.linear_time(300)
    # a 10-sequence decode step at 1000 cached tokens each: 6 full layers' reads vs 2 full + 4 × window
    ta = a.iteration_time(tokens=10, sampled=10, prefill_work=0, decode_seqs=10, decode_ctx=10_000)
    tb = b.iteration_time(tokens=10, sampled=10, prefill_work=0, decode_seqs=10, decode_ctx=10_000)
    assert ta - tb == pytest.approx(per_layer * (6 * 10_000 - 2 * 10_000 - 4 * 10 * 64))


def test_inference_sums_over_dense_and_moe_layers():
    base = {"name": "m", "layers": 4, "hidden": 512, "heads": 8, "ffn_hidden": 256, "activation": "swiglu",
            "norm": "rmsnorm", "vocab": 1000, "linear_bias": False, "qkv_bias": False}
    moe = {"num_experts": 8, "top_k": 2}
    every, mixed = get_model({**base, "moe": moe}), get_model({**base, "moe": {**moe, "first_dense_layers": 1,
                                                                                "dense_ffn_hidden": 2048}})
    hw = get_profile("a100-sxm-80gb")
    dense_layer, moe_layer = mixed.layer_specs()[0], mixed.layer_specs()[1]

    def layer_s(spec, tokens):
        return sum(o.time for o in linear_layer_ops(spec, hw, tp=1, tokens=tokens, precision="bf16"))

    # swapping one MoE layer for a dense one changes the forward by exactly that layer's difference
    diff = InferenceModel(model=mixed, hw=hw).linear_time(64) - InferenceModel(model=every, hw=hw).linear_time(64)
    assert diff == pytest.approx(layer_s(dense_layer, 64) - layer_s(moe_layer, 64), rel=1e-9)
    assert InferenceModel(model=mixed, hw=hw).weight_bytes_per_gpu() == mixed.total_params() * 2


def test_fast_forward_exact_on_a_mixed_sliding_model():
    model = {"name": "mix", "layers": 8, "hidden": 1024, "heads": 8, "kv_heads": 2, "ffn_hidden": 1024,
             "activation": "swiglu", "norm": "rmsnorm", "position": "rope", "vocab": 32000, "qkv_bias": False,
             "linear_bias": False, "sliding_window": 128, "layer_types": ["sliding", "full"],
             "moe": {"num_experts": 4, "top_k": 2, "layer_freq": 2, "dense_ffn_hidden": 4096}}
    sc = parse_scenario({
        "kind": "serving", "model": model, "hardware": "l4",
        "replica": {"tp": 1, "batching": "continuous", "max_num_seqs": 32, "max_batched_tokens": 1024},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 4.0, "requests": 120},
                     "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "fixed", "value": 40}},
        "pricing": {"usd_per_gpu_hour": 1.0}, "seed": 5})
    fast, slow = simulate_serving(sc), simulate_serving(sc, fast_forward=False)
    cols = ["arrival_s", "queue_s", "ttft_s", "e2e_s", "tpot_s", "status"]
    assert fast["completed"] == 120 and fast.requests[cols].equals(slow.requests[cols])
