"""``config.json`` of the MoE families served in 2026 as :class:`~simulator.models.ModelSpec` keys:
DeepSeek-V3/R1 and Kimi-K2 (``deepseek_v3``, ``kimi_k2``, Kimi-K2.5's ``kimi_k25`` wrapper: MLA
attention, 3 (1) dense layers then MoE with one shared expert), GPT-OSS (``gpt_oss``: alternating
128-token sliding-window and full layers, biased projections), Llama 4 (``llama4`` / ``llama4_text``:
every ``interleave_moe_layer_step``-th layer MoE with a shared expert, chunked local attention),
MiniMax-M2 (``minimax_m2``: GQA with q/k norms, 256 experts). Key names are those of the configs
shipped in aiconfigurator-core's ``model_configs/`` (Apache-2.0; the copies capsim tests read are in
``simulator/catalog/hf_configs/``, see its NOTICE).

Families whose attention capsim cannot express are refused by name with the reason
(:data:`NOT_EXPRESSIBLE`), never approximated silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import CapsimError

NOT_EXPRESSIBLE = {
    "qwen3_5_moe": "Qwen3.5 mixes Gated DeltaNet linear-attention layers (a recurrent state, no KV cache) with "
                   "full-attention ones; capsim's attention is softmax attention over a KV cache",
    "qwen3_5_moe_text": "Qwen3.5 mixes Gated DeltaNet linear-attention layers (a recurrent state, no KV cache) with "
                        "full-attention ones; capsim's attention is softmax attention over a KV cache",
    "qwen3_next": "Qwen3-Next mixes Gated DeltaNet linear-attention layers with full-attention ones; capsim's "
                  "attention is softmax attention over a KV cache",
    "glm_moe_dsa": "GLM-5 uses DeepSeek Sparse Attention (an indexer picks the top index_topk cached tokens per "
                   "query); capsim charges attention over every cached token (or a fixed window)",
    "deepseek_v32": "DeepSeek-V3.2 uses DeepSeek Sparse Attention (an indexer picks the top index_topk cached "
                    "tokens per query); capsim charges attention over every cached token (or a fixed window)",
}

# Llama 4: 3 of every 4 layers use chunked local attention (attention_chunk_size) with RoPE, every 4th is
# global without RoPE (transformers Llama4TextConfig: no_rope_layers default, interval 4).
LLAMA4_NOPE_INTERVAL = 4


def _text(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's config of a multimodal wrapper (Llama 4, Kimi-K2.5), else the config itself."""
    inner = cfg.get("text_config")
    return inner if isinstance(inner, Mapping) else cfg


def _common(c: Mapping[str, Any], need: Callable[..., Any], name: str) -> dict[str, Any]:
    heads = need("num_attention_heads")
    return dict(name=name, layers=need("num_hidden_layers"), hidden=need("hidden_size"), heads=heads,
                kv_heads=c.get("num_key_value_heads") or heads, activation="swiglu", norm="rmsnorm",
                vocab=need("vocab_size"), position="rope", max_positions=c.get("max_position_embeddings", 4096),
                tie_embeddings=bool(c.get("tie_word_embeddings", False)), linear_bias=False)


def _deepseek(c: Mapping[str, Any], need: Callable[..., Any], name: str) -> dict[str, Any]:
    spec = _common(c, need, name)
    rope, nope = int(need("qk_rope_head_dim")), int(need("qk_nope_head_dim"))
    spec.update(head_dim=rope + nope, ffn_hidden=need("moe_intermediate_size"), qkv_bias=False,
                mla={"kv_lora_rank": need("kv_lora_rank"), "qk_rope_head_dim": rope,
                     "v_head_dim": need("v_head_dim"), "q_lora_rank": c.get("q_lora_rank") or 0},
                moe={"num_experts": need("n_routed_experts"), "top_k": need("num_experts_per_tok"),
                     "first_dense_layers": int(c.get("first_k_dense_replace") or 0),
                     "layer_freq": int(c.get("moe_layer_freq") or 1),
                     "dense_ffn_hidden": need("intermediate_size"),
                     "shared_experts": int(c.get("n_shared_experts") or 0)})
    return spec


def _gpt_oss(c: Mapping[str, Any], need: Callable[..., Any], name: str) -> dict[str, Any]:
    spec = _common(c, need, name)
    kinds = [{"full_attention": "full", "sliding_attention": "sliding"}.get(t) for t in c.get("layer_types") or []]
    if None in kinds:
        raise CapsimError(f"gpt_oss: layer_types {c.get('layer_types')} has an unknown kind")
    spec.update(head_dim=need("head_dim"), ffn_hidden=need("intermediate_size"),
                qkv_bias=bool(c.get("attention_bias", True)), linear_bias=True,     # o_proj and expert biases
                moe={"num_experts": need("num_local_experts"),
                     "top_k": need("num_experts_per_tok", "experts_per_token")})
    if "sliding" in kinds:
        spec.update(sliding_window=need("sliding_window"), layer_types=kinds)
    q = c.get("quantization_config") or {}
    if any("self_attn" in str(m) for m in q.get("modules_to_not_convert") or []):
        spec["experts_only_quant"] = str(q.get("quant_method", ""))    # openai/gpt-oss-*: mxfp4 experts only
    return spec


def _llama4(c: Mapping[str, Any], need: Callable[..., Any], name: str) -> dict[str, Any]:
    spec = _common(c, need, name)
    layers = int(spec["layers"])
    spec.update(head_dim=c.get("head_dim") or 0, ffn_hidden=need("intermediate_size"), qkv_bias=False,
                qk_norm=bool(c.get("use_qk_norm", False)),
                moe={"num_experts": need("num_local_experts"), "top_k": need("num_experts_per_tok"),
                     "layer_freq": int(c.get("interleave_moe_layer_step") or 1),
                     "dense_ffn_hidden": int(c.get("intermediate_size_mlp") or need("intermediate_size")),
                     "shared_experts": 1})
    chunk = c.get("attention_chunk_size")
    if chunk:
        # no_rope_layers[i] == 0 marks a global NoPE layer; the others attend within their chunk (transformers
        # modeling_llama4: query and key in the same attention_chunk_size chunk; TensorRT-LLM's attention op
        # takes it as attention_chunk_size too): a window of fixed chunks (layers.AttentionSpec.chunked)
        nope = c.get("no_rope_layers") or [int((i + 1) % LLAMA4_NOPE_INTERVAL != 0) for i in range(layers)]
        spec.update(sliding_window=int(chunk), layer_types=["sliding" if r else "full" for r in nope],
                    attention_chunked=True)
    return spec


def _minimax(c: Mapping[str, Any], need: Callable[..., Any], name: str) -> dict[str, Any]:
    spec = _common(c, need, name)
    if c.get("shared_intermediate_size"):
        raise CapsimError("minimax_m2 with shared experts (shared_intermediate_size > 0) is not supported")
    spec.update(head_dim=need("head_dim"), ffn_hidden=need("intermediate_size"), qkv_bias=False,
                qk_norm=bool(c.get("use_qk_norm", False)),
                moe={"num_experts": need("num_local_experts"), "top_k": need("num_experts_per_tok")})
    return spec


FAMILIES: dict[str, Callable[[Mapping[str, Any], Callable[..., Any], str], dict[str, Any]]] = {
    "deepseek_v3": _deepseek, "kimi_k2": _deepseek, "gpt_oss": _gpt_oss, "llama4": _llama4,
    "llama4_text": _llama4, "minimax_m2": _minimax,
}
WRAPPERS = {"kimi_k25": "kimi_k2", "llama4": "llama4_text"}


def family_spec(cfg: Mapping[str, Any], where: str, name: str) -> dict[str, Any] | None:
    """ModelSpec keys for a config of one of :data:`FAMILIES` (None for another ``model_type``);
    a family of :data:`NOT_EXPRESSIBLE` raises a :class:`CapsimError` naming its reason."""
    mtype = str(cfg.get("model_type"))
    c = _text(cfg) if mtype in WRAPPERS else cfg
    inner = str(c.get("model_type", mtype))
    for t in (mtype, inner):
        if t in NOT_EXPRESSIBLE:
            raise CapsimError(f"{where}: model_type {t!r} is not expressible: {NOT_EXPRESSIBLE[t]}")
    build = FAMILIES.get(inner) or FAMILIES.get(mtype)
    if build is None:
        return None

    def need(*keys: str) -> Any:
        for k in keys:
            if c.get(k) is not None:
                return c[k]
        raise CapsimError(f"{where}: model_type {inner!r} needs one of the keys {', '.join(keys)}")

    return build(c, need, name)
