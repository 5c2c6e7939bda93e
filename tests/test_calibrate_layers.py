"""The torch block calibration times is built from the simulator's LayerSpec: parameter counts agree
exactly, the plain data capsim passes rebuilds the same layers, and masks/RoPE/caches are right."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="calibration needs torch (make test installs the CPU wheel)")

from torch import nn  # noqa: E402

from calibrate.model import Attention, Block, Model, layer_specs  # noqa: E402
from simulator.catalog import get_model  # noqa: E402
from simulator.layers import AttentionSpec, LayerSpec, MLPSpec  # noqa: E402

MIXED = {"name": "mixed", "layers": 4, "hidden": 64, "heads": 4, "kv_heads": 2, "ffn_hidden": 32,
         "activation": "swiglu", "norm": "rmsnorm", "qkv_bias": False, "linear_bias": False, "vocab": 100,
         "position": "rope", "tie_embeddings": False, "sliding_window": 8, "layer_types": ["full", "sliding"],
         "moe": {"num_experts": 4, "top_k": 2, "first_dense_layers": 1, "dense_ffn_hidden": 128, "shared_experts": 1}}
# Llama-3.1-8B's layer at 1/16 of the width (GQA 4:1, SwiGLU, RMSNorm, no biases, RoPE)
LLAMA_SMALL = LayerSpec(256, AttentionSpec(8, 2, 32, qkv_bias=False, rope=True), MLPSpec(896, "swiglu"), "rmsnorm", False)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("spec", [
    get_model("gpt-tiny").layer_specs()[0],                  # LayerNorm, biases, GELU
    LLAMA_SMALL,
    LayerSpec(256, AttentionSpec(8, 2, 64, qkv_bias=False, qk_norm=True, rope=True), MLPSpec(512, "swiglu"),
              "rmsnorm", False),                            # Qwen3-style q/k norm, head_dim ≠ hidden/heads
    get_model(MIXED).layer_specs()[1],                       # MoE: 4 experts, router, 1 shared expert
    LayerSpec(64, AttentionSpec(4, 4, 16), MLPSpec(32, "relu", 4, 1, 2, 48)),   # MoE with biases, wide shared
], ids=["gpt-tiny", "llama-small", "qwen3-style", "moe", "moe-bias"])
def test_block_parameters_equal_layer_spec(spec: LayerSpec) -> None:
    # e.g. llama-small: 2·256·256 + 2·256·64 (attention) + 3·256·896 (MLP) + 2·256 (norms) = 852,480
    assert _count(Block(spec, torch.float32)) == spec.params()
    if spec == LLAMA_SMALL:
        assert spec.params() == 852_480


def test_plain_data_rebuilds_the_models_layers() -> None:
    spec = get_model(MIXED)
    shapes = {**spec.model_dump(mode="json", exclude={"source"}),
              "layer_specs": [s.to_dict() for s in spec.layer_specs()]}
    assert layer_specs(shapes) == list(spec.layer_specs())
    model = Model(shapes, torch.float32)
    assert sum(_count(b) for b in model.blocks) == sum(s.params() for s in spec.layer_specs())
    # a flat shapes file (python -m calibrate --shapes) goes through the same derivation
    flat = {k: v for k, v in shapes.items() if k != "layer_specs"}
    assert layer_specs(flat) == list(spec.layer_specs())
    llama = get_model("llama-3.1-8b")
    bare = {k: llama.model_dump()[k] for k in ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "activation",
                                               "norm", "position", "vocab")}
    assert layer_specs(bare) == list(llama.layer_specs())    # RMSNorm decoder without bias keys: no biases


def test_sliding_window_mask_and_decode_cache() -> None:
    torch.manual_seed(0)
    h, t = 32, 12
    x = torch.randn(2, t, h)
    full = Attention(AttentionSpec(4, 2, 8, rope=True), h, True, torch.float32)
    wide = Attention(AttentionSpec(4, 2, 8, rope=True, window=t), h, True, torch.float32)
    wide.load_state_dict(full.state_dict())
    with torch.no_grad():
        assert torch.allclose(wide(x), full(x), atol=1e-5)          # a window covering the sequence is full
        one = Attention(AttentionSpec(4, 4, 8, window=1), h, False, torch.float32)
        v = one.qkv(x)[..., 2 * 32:]
        assert torch.allclose(one(x), one.out(v), atol=1e-5)        # window 1: each query sees itself only
        # prefill t-1 tokens, then one decode step: the same last output as one pass over t tokens
        block = Block(LayerSpec(h, AttentionSpec(4, 2, 8, rope=True, window=5), MLPSpec(64, "swiglu", 4, 2)),
                      torch.float32)
        cache: list = []
        block(x[:, : t - 1], cache)
        step = block(x[:, t - 1:], cache)
        assert cache[0].shape[2] == t
        assert torch.allclose(step[:, 0], block(x)[:, -1], atol=1e-5)
