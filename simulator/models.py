"""Model architecture specs: the shapes every cost and memory estimate is derived from.

A :class:`ModelSpec` describes a transformer (decoder LLM, encoder such as BERT, or a ViT) by its
shapes. Parameter counts, FLOPs and KV-cache sizes are computed from those shapes, never from
closed-form constants, so GQA, SwiGLU, MoE and untied embeddings are all handled the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import CapsimError


class MoESpec(BaseModel):
    """Mixture-of-experts feed-forward: ``num_experts`` expert MLPs, ``top_k`` used per token."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_experts: int = Field(ge=1)
    top_k: int = Field(ge=1)

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"moe.top_k={self.top_k} exceeds moe.num_experts={self.num_experts}")
        return self


class ModelSpec(BaseModel):
    """A transformer's shapes. Derived sizes (``kv_heads``, ``head_dim``, ``ffn_hidden``) default
    to the conventional values when omitted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    architecture: Literal["decoder", "encoder", "vit"] = "decoder"
    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int = 0
    head_dim: int = 0
    ffn_hidden: int = 0
    activation: Literal["gelu", "swiglu", "relu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    vocab: int = Field(default=0, ge=0)
    position: Literal["learned", "rope", "none"] = "learned"
    max_positions: int = Field(default=2048, ge=1)
    type_vocab: int = 0
    tie_embeddings: bool = True
    qkv_bias: bool = True
    linear_bias: bool = True
    qk_norm: bool = False
    embedding_norm: bool = False
    final_norm: bool = True
    pooler: bool = False
    moe: MoESpec | None = None
    # vision transformer
    image_size: int = 0
    patch_size: int = 0
    channels: int = 3
    num_classes: int = 0
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: dict) -> dict:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        heads = data.get("heads") or 1
        hidden = data.get("hidden") or 1
        data.setdefault("kv_heads", heads)
        if not data.get("kv_heads"):
            data["kv_heads"] = heads
        if not data.get("head_dim"):
            data["head_dim"] = hidden // heads
        if not data.get("ffn_hidden"):
            data["ffn_hidden"] = 4 * hidden
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")
        if self.architecture == "vit" and (self.image_size <= 0 or self.patch_size <= 0):
            raise ValueError("a vit model needs image_size and patch_size")
        if self.architecture != "vit" and self.vocab <= 0:
            raise ValueError(f"model {self.name!r} needs vocab > 0")
        return self

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.activation == "swiglu" else 2

    @property
    def is_causal(self) -> bool:
        return self.architecture == "decoder"

    @property
    def default_seq_len(self) -> int:
        if self.architecture == "vit":
            return (self.image_size // self.patch_size) ** 2 + 1
        return self.max_positions

    # ---- parameters ---------------------------------------------------------------------------
    def _norm_params(self) -> int:
        return 2 * self.hidden if self.norm == "layernorm" else self.hidden

    def attention_params(self) -> int:
        h = self.hidden
        n = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.qkv_bias:
            n += self.q_dim + 2 * self.kv_dim
        if self.linear_bias:
            n += h
        if self.qk_norm:
            n += 2 * self.head_dim
        return n

    def mlp_params(self) -> int:
        """One (expert) MLP."""
        n = self.mlp_matrices * self.hidden * self.ffn_hidden
        if self.linear_bias:
            n += (self.mlp_matrices - 1) * self.ffn_hidden + self.hidden
        return n

    def layer_tensors(self) -> int:
        """Parameter tensors in one layer (what a per-tensor optimizer loop iterates over), counted as
        Megatron/HF lay them out: fused QKV, the output projection, the MLP matrices, biases, norms."""
        norms = 2 * (2 if self.norm == "layernorm" else 1)
        attn = 2 + (1 if self.qkv_bias else 0) + (1 if self.linear_bias else 0) + (2 if self.qk_norm else 0)
        experts = self.moe.num_experts if self.moe else 1
        mlp = experts * (self.mlp_matrices + (self.mlp_matrices if self.linear_bias else 0)) + (1 if self.moe else 0)
        return norms + attn + mlp

    def layer_params(self) -> int:
        experts = self.moe.num_experts if self.moe else 1
        router = self.hidden * self.moe.num_experts if self.moe else 0
        return self.attention_params() + experts * self.mlp_params() + router + 2 * self._norm_params()

    def embedding_params(self) -> int:
        h = self.hidden
        if self.architecture == "vit":
            patches = (self.image_size // self.patch_size) ** 2
            return self.channels * self.patch_size**2 * h + h + h + (patches + 1) * h
        n = self.vocab * h + self.type_vocab * h
        if self.position == "learned":
            n += self.max_positions * h
        if self.embedding_norm:
            n += self._norm_params()
        return n

    def head_params(self) -> int:
        """Output head: untied LM head, BERT pooler, or a ViT classifier (final norm included)."""
        n = self._norm_params() if self.final_norm else 0
        if self.architecture == "decoder" and not self.tie_embeddings:
            n += self.vocab * self.hidden
        if self.pooler:
            n += self.hidden * self.hidden + self.hidden
        if self.architecture == "vit" and self.num_classes:
            n += self.hidden * self.num_classes + self.num_classes
        return n

    def total_params(self) -> int:
        return self.embedding_params() + self.layers * self.layer_params() + self.head_params()

    def active_params(self) -> int:
        """Parameters touched per token (MoE: only top-k experts)."""
        if not self.moe:
            return self.total_params()
        unused = (self.moe.num_experts - self.moe.top_k) * self.mlp_params()
        return self.total_params() - self.layers * unused

    def kv_cache_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """K and V of every layer for one token: ``2 · layers · kv_heads · head_dim · bytes``."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_element


# ---- Hugging Face config.json -------------------------------------------------------------------
_LLAMA_LIKE = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe"}


def from_hf_config(path: str | Path) -> ModelSpec:
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json`` on disk (no hub access)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise CapsimError(f"model config {str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise CapsimError(f"model config {str(path)!r} is not valid JSON: {e}") from None
    mtype = cfg.get("model_type")
    name = cfg.get("_name_or_path") or path.parent.name or path.stem

    def need(*keys: str) -> int:
        for k in keys:
            if cfg.get(k) is not None:
                return cfg[k]
        raise CapsimError(f"{path}: model_type {mtype!r} needs one of the keys {', '.join(keys)}")

    try:
        if mtype in _LLAMA_LIKE:
            heads = need("num_attention_heads")
            spec: dict = dict(
                name=name, layers=need("num_hidden_layers"), hidden=need("hidden_size"), heads=heads,
                kv_heads=cfg.get("num_key_value_heads") or heads, head_dim=cfg.get("head_dim") or 0,
                ffn_hidden=cfg.get("moe_intermediate_size") if "moe" in mtype else need("intermediate_size"),
                activation="swiglu", norm="rmsnorm", vocab=need("vocab_size"), position="rope",
                max_positions=cfg.get("max_position_embeddings", 4096),
                tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                qkv_bias=mtype in {"qwen2", "qwen2_moe"} or bool(cfg.get("attention_bias", False)),
                linear_bias=False, qk_norm=mtype in {"qwen3", "qwen3_moe"},
            )
            experts = cfg.get("num_local_experts") or cfg.get("num_experts")
            if experts:
                spec["moe"] = {"num_experts": experts, "top_k": need("num_experts_per_tok")}
        elif mtype == "gpt2":
            hidden = need("n_embd", "hidden_size")
            spec = dict(
                name=name, layers=need("n_layer", "num_hidden_layers"), hidden=hidden,
                heads=need("n_head", "num_attention_heads"), ffn_hidden=cfg.get("n_inner") or 4 * hidden,
                vocab=need("vocab_size"), max_positions=need("n_positions", "max_position_embeddings"),
                tie_embeddings=True,
            )
        elif mtype == "bert":
            spec = dict(
                name=name, architecture="encoder", layers=need("num_hidden_layers"),
                hidden=need("hidden_size"), heads=need("num_attention_heads"),
                ffn_hidden=need("intermediate_size"), vocab=need("vocab_size"),
                max_positions=need("max_position_embeddings"), type_vocab=cfg.get("type_vocab_size", 2),
                embedding_norm=True, final_norm=False, pooler=True,
            )
        else:
            raise CapsimError(
                f"{path}: model_type {mtype!r} is not supported; supported: "
                "bert, gpt2, llama, mistral, mixtral, qwen2, qwen3"
            )
        return ModelSpec(**spec, source=f"Hugging Face config {path}")
    except ValueError as e:
        if isinstance(e, CapsimError):
            raise
        raise CapsimError(f"{path}: {e}") from None
