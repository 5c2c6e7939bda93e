"""Model architecture specs: the shapes every cost and memory estimate is derived from.

A :class:`ModelSpec` describes a transformer (decoder LLM, encoder such as BERT, or a ViT) by its
shapes. Parameter counts, FLOPs and KV-cache sizes are computed from those shapes, never from
closed-form constants, so GQA, SwiGLU, MoE and untied embeddings are all handled the same way.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .convnets import ConvLayer, ConvNetSpec, ConvOp, conv_layers, conv_macs, conv_params
from .errors import CapsimError
from .files import read_json_object
from .hf_families import FAMILIES, family_spec
from .hf_layers import hf_layer_keys
from .layers import LayerSpec, build_stack, group_layers
from .memo import IdentityMemo


class MoESpec(BaseModel):
    """Mixture-of-experts feed-forward: ``num_experts`` expert MLPs, ``top_k`` used per token.

    By default every layer is MoE; ``first_dense_layers`` and ``layer_freq`` make some dense
    (DeepSeek-V3: 3 dense then MoE; Llama 4 Maverick: every second layer MoE), with their own
    ``dense_ffn_hidden``. ``ffn_hidden`` of the model is the width of one routed expert."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_experts: int = Field(ge=1)
    top_k: int = Field(ge=1)
    first_dense_layers: int = Field(default=0, ge=0, description="the first N layers are dense, the rest follow "
                                    "layer_freq (DeepSeek's first_k_dense_replace)")
    layer_freq: int = Field(default=1, ge=1, description="after first_dense_layers, layer i (0-based) is MoE when "
                            "(i + 1) % layer_freq == 0; 1: every layer (HF decoder_sparse_step, Llama 4's "
                            "interleave_moe_layer_step)")
    dense_ffn_hidden: int = Field(default=0, ge=0, description="MLP width of the dense layers; 0: the model's "
                                  "ffn_hidden")
    shared_experts: int = Field(default=0, ge=0, description="experts every token passes through beside the "
                                "top_k routed ones (DeepSeek, Llama 4)")
    shared_ffn_hidden: int = Field(default=0, ge=0, description="MLP width of one shared expert; 0: the model's "
                                   "ffn_hidden")

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"moe.top_k={self.top_k} exceeds moe.num_experts={self.num_experts}")
        return self


class MLASpec(BaseModel):
    """Multi-head latent attention (DeepSeek-V2/V3/R1, Kimi-K2): the cache holds a latent of
    ``kv_lora_rank`` elements and one rotary key of ``qk_rope_head_dim`` per token and layer, shared by
    all heads; the model's ``head_dim`` is the query/key head width (``qk_nope_head_dim +
    qk_rope_head_dim``), ``v_head_dim`` the value head width, ``q_lora_rank`` (0: none) the query's
    low-rank factor (Hugging Face config keys of the same names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kv_lora_rank: int = Field(ge=1)
    qk_rope_head_dim: int = Field(ge=1)
    v_head_dim: int = Field(ge=1)
    q_lora_rank: int = Field(default=0, ge=0)


class ModelSpec(BaseModel):
    """A transformer's shapes. Derived sizes (``kv_heads``, ``head_dim``, ``ffn_hidden``) default
    to the conventional values when omitted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    architecture: Literal["decoder", "encoder", "vit", "cnn"] = "decoder"
    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int = Field(default=0, ge=0)
    head_dim: int = Field(default=0, ge=0)
    ffn_hidden: int = Field(default=0, ge=0)
    activation: Literal["gelu", "swiglu", "relu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    vocab: int = Field(default=0, ge=0)
    position: Literal["learned", "rope", "none"] = "learned"
    max_positions: int = Field(default=2048, ge=1)
    type_vocab: int = Field(default=0, ge=0)
    tie_embeddings: bool = True
    qkv_bias: bool = True
    linear_bias: bool = True
    qk_norm: bool = False
    embedding_norm: bool = False
    final_norm: bool = True
    pooler: bool = False
    moe: MoESpec | None = None
    mla: MLASpec | None = Field(default=None, description="multi-head latent attention (DeepSeek-V3, Kimi-K2): "
                                "the compressed KV cache and its projections")
    sliding_window: int | None = Field(default=None, ge=1, description="keys a query attends back to (itself "
                                       "included) in sliding-window layers; without layer_types every layer slides")
    layer_types: tuple[Literal["full", "sliding"], ...] | None = Field(
        default=None, description="attention of each layer, 'full' or 'sliding'; a shorter list whose length divides "
                                  "layers repeats as a pattern (e.g. [sliding, sliding, sliding, full])")
    attention_chunked: bool = Field(
        default=False, description="the sliding layers attend within fixed chunks of sliding_window tokens (a query "
                                   "sees its own chunk up to itself) instead of a window trailing each query: Llama 4's "
                                   "attention_chunk_size")
    experts_only_quant: str | None = Field(
        default=None, description="the checkpoint's quantization method when it quantizes only the routed experts "
                                  "(GPT-OSS's mxfp4: its config's modules_to_not_convert keep attention, router, "
                                  "embeddings and head in bf16); the scenario's precision then applies to the "
                                  "experts and every other GEMM runs bf16")
    # vision transformer
    image_size: int = Field(default=0, ge=0)
    patch_size: int = Field(default=0, ge=0)
    channels: int = Field(default=3, ge=1)
    num_classes: int = Field(default=0, ge=0)
    # convolutional network (architecture: cnn): its family and sizes; layers/hidden/heads then only label it
    convnet: ConvNetSpec | None = None
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
        if (self.architecture == "cnn") != (self.convnet is not None):
            raise ValueError("a cnn model needs convnet: {family: resnet | efficientnet, ...}, and only a cnn has one")
        if self.architecture == "cnn" and (self.image_size <= 0 or self.num_classes <= 0):
            raise ValueError("a cnn model needs image_size and num_classes")
        if self.architecture not in ("vit", "cnn") and self.vocab <= 0:
            raise ValueError(f"model {self.name!r} needs vocab > 0")
        self.layer_specs()      # checks the per-layer keys (layer_types, sliding_window, moe.*), naming the key
        return self

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def is_causal(self) -> bool:
        return self.architecture == "decoder"

    @property
    def default_seq_len(self) -> int:
        if self.architecture == "vit":
            return (self.image_size // self.patch_size) ** 2 + 1
        if self.architecture == "cnn":
            return 1
        return self.max_positions

    @property
    def generative(self) -> bool:
        """Whether the model generates tokens (a decoder); encoders, ViTs and CNNs run one forward per input."""
        return self.architecture == "decoder"

    @property
    def tokens_per_input(self) -> int | None:
        """Tokens one input is, fixed by the model: a ViT's patches plus its class token
        (``(image_size/patch_size)² + 1``; 197 for ViT-B/16 at 224²), 1 for a CNN (one image); None
        where the input's length varies (decoders, encoders: their sequence length)."""
        return self.default_seq_len if self.architecture in ("vit", "cnn") else None

    @property
    def item(self) -> str | None:
        """What one request is for a non-generative model: ``image`` (ViT, CNN) or ``sequence``
        (encoder); None for a decoder."""
        return {"vit": "image", "cnn": "image", "encoder": "sequence"}.get(self.architecture)

    def conv_ops(self) -> tuple[ConvOp, ...]:
        """A CNN's kernels, in order (empty for a transformer)."""
        if self.convnet is None:
            return ()
        return conv_layers(self.convnet, self.image_size, self.channels, self.num_classes)

    def conv_macs(self) -> int:
        """A CNN's multiply-adds per image (its convolutions and classifier); 0 for a transformer."""
        return conv_macs(self.conv_ops()) if self.convnet is not None else 0

    # ---- layers -------------------------------------------------------------------------------
    def layer_specs(self) -> tuple[LayerSpec, ...]:
        """One :class:`LayerSpec` per layer, derived once per distinct model (cached): what every
        cost, memory and calibration consumer reads instead of re-deriving shapes from here."""
        return () if self.architecture == "cnn" else _stack(self)

    def layer_groups(self, start: int = 0, stop: int | None = None) -> list[tuple[LayerSpec, int]]:
        """Layers ``start:stop`` as ``(spec, count)`` per kind (see :func:`group_layers`), folded once per
        range of one stack (a plan search asks for the same stage ranges of thousands of layouts)."""
        specs = self.layer_specs()
        key = (id(specs), start, stop)
        groups = _GROUPS.get(key, (specs,))
        if groups is None:
            groups = _GROUPS.put(key, (specs,), tuple(group_layers(specs, start, stop)))
        return list(groups)

    @property
    def uniform(self) -> bool:
        """Whether every layer is the same (no dense/MoE mix, one kind of attention)."""
        specs = self.layer_specs()
        return all(s is specs[0] for s in specs)

    def layer(self, index: int | None = None) -> LayerSpec:
        """Layer ``index``; without one, the layer of a uniform model (a mixed model raises, since
        no single layer stands for it: sum over :meth:`layer_specs` instead)."""
        if index is None:
            if not self.uniform:
                kinds = ", ".join(s.describe() for s, _ in self.layer_groups())
                raise ValueError(f"model {self.name!r} has layers of several kinds ({kinds}); pass a layer index")
            index = 0
        return self.layer_specs()[index]

    # ---- parameters ---------------------------------------------------------------------------
    def _norm_params(self) -> int:
        return 2 * self.hidden if self.norm == "layernorm" else self.hidden

    def attention_params(self) -> int:
        """One layer's attention (every layer's attention has the same shapes)."""
        return self.layer_specs()[0].attention_params()

    def mlp_params(self) -> int:
        """One (expert) MLP: a routed expert of an MoE model, else the dense MLP."""
        specs = self.layer_specs()
        return next((s for s in specs if s.mlp.is_moe), specs[0]).expert_params()

    def layer_tensors(self, index: int | None = None) -> int:
        """Parameter tensors in one layer (what a per-tensor optimizer loop iterates over), counted as
        Megatron/HF lay them out: fused QKV, the output projection, the MLP matrices, biases, norms."""
        return self.layer(index).tensors()

    def layer_params(self, index: int | None = None) -> int:
        """Parameters of one layer (see :meth:`layer` for ``index``)."""
        return self.layer(index).params()

    def embedding_params(self) -> int:
        if self.architecture == "cnn":
            return 0
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
        if self.architecture == "cnn":
            return sum(o.params() for o in self.conv_ops() if isinstance(o, ConvLayer) and o.name == "fc")
        n = self._norm_params() if self.final_norm else 0
        if self.architecture == "decoder" and not self.tie_embeddings:
            n += self.vocab * self.hidden
        if self.pooler:
            n += self.hidden * self.hidden + self.hidden
        if self.architecture == "vit" and self.num_classes:
            n += self.hidden * self.num_classes + self.num_classes
        return n

    def total_params(self) -> int:
        if self.convnet is not None:
            return conv_params(self.conv_ops())
        return self.embedding_params() + sum(s.params() * n for s, n in self.layer_groups()) + self.head_params()

    def active_params(self) -> int:
        """Parameters touched per token (MoE: only top-k experts)."""
        if not self.moe:
            return self.total_params()
        layers = sum(s.active_params() * n for s, n in self.layer_groups())
        return self.embedding_params() + layers + self.head_params()

    def kv_cache_bytes_per_token(self, bytes_per_element: float = 2.0) -> float:
        """K and V of every layer for one token: ``2 · layers · kv_heads · head_dim · bytes`` (MLA:
        ``layers · (kv_lora_rank + qk_rope_head_dim) · bytes``).

        Sliding-window layers are counted per token here too; the serving memory plan holds only
        their window per sequence (costmodel.attention_variants)."""
        return sum(s.kv_elements_per_token() * n for s, n in self.layer_groups()) * bytes_per_element


def as_layer(layer: LayerSpec | ModelSpec) -> LayerSpec:
    """The :class:`LayerSpec` a cost function reads: itself, or the one layer of a uniform
    ``ModelSpec`` (a model with layers of several kinds raises: cost each of its layer kinds)."""
    return layer.layer() if isinstance(layer, ModelSpec) else layer


# (stack, start, stop) -> the folded groups of that range of the stack (simulator.memo)
_GROUPS: IdentityMemo[tuple[tuple[LayerSpec, int], ...]] = IdentityMemo(65536)


@lru_cache(maxsize=1024)
def _stack(model: ModelSpec) -> tuple[LayerSpec, ...]:
    """The layers of ``model``, keyed by its fields (a frozen model hashes and compares by them)."""
    m = model
    return build_stack(layers=m.layers, hidden=m.hidden, heads=m.heads, kv_heads=m.kv_heads, head_dim=m.head_dim,
                       ffn_hidden=m.ffn_hidden, activation=m.activation, norm=m.norm, qkv_bias=m.qkv_bias,
                       linear_bias=m.linear_bias, qk_norm=m.qk_norm, causal=m.is_causal, rope=m.position == "rope",
                       sliding_window=m.sliding_window, layer_types=m.layer_types,
                       attention_chunked=m.attention_chunked,
                       moe=m.moe.model_dump() if m.moe else None, mla=m.mla.model_dump() if m.mla else None)


# ---- Hugging Face config.json -------------------------------------------------------------------
_LLAMA_LIKE = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe"}


def from_hf_config(path: str | Path) -> ModelSpec:
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json`` on disk (no hub access)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    cfg = read_json_object(path, "model config")   # missing, a folder, not UTF-8, not JSON, not an object
    mtype = cfg.get("model_type")
    name = cfg.get("_name_or_path") or path.parent.name or path.stem

    def need(*keys: str) -> int:
        for k in keys:
            if cfg.get(k) is not None:
                return cfg[k]
        raise CapsimError(f"{path}: model_type {mtype!r} needs one of the keys {', '.join(keys)}")

    try:
        family = family_spec(cfg, str(path), name)
        if family is not None:
            spec: dict = family
        elif mtype in _LLAMA_LIKE:
            heads = need("num_attention_heads")
            spec = dict(
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
            per_layer, moe_layers = hf_layer_keys(cfg, mtype, str(path))
            spec.update(per_layer)
            if experts:
                spec["moe"] = {"num_experts": experts, "top_k": need("num_experts_per_tok"), **moe_layers}
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
                "bert, gpt2, llama, mistral, mixtral, qwen2, qwen3, qwen2_moe, qwen3_moe, " + ", ".join(sorted(FAMILIES))
            )
        return ModelSpec(**spec, source=f"Hugging Face config {path}")
    except ValueError as e:
        if isinstance(e, CapsimError):
            raise
        raise CapsimError(f"{path}: {e}") from None
