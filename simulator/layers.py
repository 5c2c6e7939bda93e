"""One description of a transformer layer, read by every consumer: the training kernels
(``costmodel.transformer``), the inference kernels (``costmodel.inference``), the memory model
(``costmodel.memory``) and the torch block that calibration builds (``calibrate.model``).

Plain data on purpose: frozen stdlib dataclasses, no pydantic, numpy or pandas, so ``calibrate/``
(torch, numpy and PyYAML only) can import this module, and a layer travels between processes as
the plain dict of :meth:`LayerSpec.to_dict`. A model is a sequence of layers that may differ (dense
and MoE layers mixed as DeepSeek-V3 and Llama 4 do, sliding-window or full attention per layer);
:func:`build_stack` derives that sequence from model-level keys (``ModelSpec.layer_specs`` calls
it, and so does calibration for a bare shapes file), and :func:`group_layers` folds a range of
layers into ``(spec, count)`` pairs so a pipeline stage's cost is computed once per kind of layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

NORMS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("gelu", "swiglu", "relu")
LAYER_TYPES = ("full", "sliding")
MOE_KEYS = ("num_experts", "top_k", "first_dense_layers", "layer_freq", "dense_ffn_hidden", "shared_experts",
            "shared_ffn_hidden")


def _known(cls: type, data: Mapping[str, Any], where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    extra = sorted(set(data) - allowed)
    if extra:
        raise ValueError(f"{where}: unknown key {extra[0]!r}; allowed keys: {', '.join(sorted(allowed))}")


@dataclass(frozen=True, slots=True)
class AttentionSpec:
    """Self-attention of one layer. ``window`` is a sliding window: a query at position ``i`` sees
    the keys in ``(i − window, i]`` (Mistral's and Hugging Face's convention); ``None`` is full
    attention. A window needs causal attention. ``rope`` says the layer rotates q and k. ``chunked``:
    the window is a fixed chunk instead, a query at ``i`` sees the keys in ``[⌊i/window⌋·window, i]``
    (Llama 4's ``attention_chunk_size``, transformers' chunked attention mask: query and key in the
    same chunk), on average half a chunk over a long context."""

    heads: int
    kv_heads: int
    head_dim: int
    qkv_bias: bool = True
    qk_norm: bool = False
    causal: bool = True
    window: int | None = None
    rope: bool = False
    chunked: bool = False
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2) when kv_lora_rank > 0: K and V are
    # up-projected from a cached latent of kv_lora_rank elements plus a shared rotary key of
    # qk_rope_head_dim; head_dim is then the query/key head width (qk_nope_head_dim + qk_rope_head_dim)
    # and v_head_dim the value head width; q_lora_rank > 0 factors the query projection too.
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0

    def __post_init__(self) -> None:
        if self.kv_lora_rank and (self.qk_rope_head_dim < 1 or self.v_head_dim < 1
                                  or self.qk_rope_head_dim >= self.head_dim):
            raise ValueError(f"attention: MLA (kv_lora_rank={self.kv_lora_rank}) needs qk_rope_head_dim >= 1 below "
                             f"head_dim={self.head_dim} and v_head_dim >= 1")
        if min(self.kv_lora_rank, self.q_lora_rank, self.qk_rope_head_dim, self.v_head_dim) < 0:
            raise ValueError("attention: MLA ranks and head widths must be >= 0")
        if min(self.heads, self.kv_heads, self.head_dim) < 1 or self.heads % self.kv_heads:
            raise ValueError(f"attention: heads={self.heads} must be a positive multiple of kv_heads={self.kv_heads} "
                             f"(head_dim={self.head_dim} >= 1)")
        if self.window is not None and (self.window < 1 or not self.causal):
            raise ValueError(f"attention.window={self.window}: a sliding window is >= 1 and needs causal attention")
        if self.chunked and self.window is None:
            raise ValueError("attention.chunked: chunked attention needs its chunk size in attention.window")

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def v_dim(self) -> int:
        """Width of the attention output (the output projection's input): heads × the value head width."""
        return self.heads * (self.v_head_dim if self.is_mla else self.head_dim)

    def kv_elements_per_token(self) -> int:
        """Cached elements of one token: K and V (``2·kv_heads·head_dim``), or MLA's latent and rotary key
        (``kv_lora_rank + qk_rope_head_dim``, one copy for all heads)."""
        return self.kv_lora_rank + self.qk_rope_head_dim if self.is_mla else 2 * self.kv_dim

    def mla_params(self, hidden: int) -> int:
        """MLA's projections: the query (through q_lora_rank when set), the latent and rotary key (kv_a),
        the latent's up-projection to K (no-rope part) and V (kv_b), the output, and the latents' RMSNorms."""
        nope = self.head_dim - self.qk_rope_head_dim
        q = (hidden * self.q_lora_rank + self.q_lora_rank * self.q_dim + self.q_lora_rank) if self.q_lora_rank \
            else hidden * self.q_dim
        kv_a = hidden * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
        kv_b = self.kv_lora_rank * self.heads * (nope + self.v_head_dim)
        return q + kv_a + kv_b + self.v_dim * hidden

    def params(self, hidden: int, out_bias: bool) -> int:
        """Q, K, V and output projections, their biases, and the per-head q/k RMSNorm weights."""
        if self.is_mla:
            return self.mla_params(hidden) + (hidden if out_bias else 0)
        n = 2 * hidden * self.q_dim + 2 * hidden * self.kv_dim
        if self.qkv_bias:
            n += self.q_dim + 2 * self.kv_dim
        if out_bias:
            n += hidden
        if self.qk_norm:
            n += 2 * self.head_dim
        return n


@dataclass(frozen=True, slots=True)
class MLPSpec:
    """Feed-forward of one layer. Dense when ``experts == 0``; otherwise a router picks ``top_k``
    of ``experts`` routed MLPs of width ``ffn_hidden`` per token, and ``shared_experts`` MLPs of
    width ``shared_ffn_hidden`` (0: ``ffn_hidden``) see every token (DeepSeek, Llama 4)."""

    ffn_hidden: int
    activation: str = "gelu"
    experts: int = 0
    top_k: int = 0
    shared_experts: int = 0
    shared_ffn_hidden: int = 0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"mlp.activation={self.activation!r}: allowed {', '.join(ACTIVATIONS)}")
        if self.ffn_hidden < 1 or self.shared_experts < 0 or self.shared_ffn_hidden < 0:
            raise ValueError(f"mlp: ffn_hidden={self.ffn_hidden} must be >= 1, shared experts and widths >= 0")
        if self.experts and not 1 <= self.top_k <= self.experts:
            raise ValueError(f"mlp.top_k={self.top_k} must be between 1 and mlp.experts={self.experts}")
        if not self.experts and (self.top_k or self.shared_experts):
            raise ValueError("mlp: top_k and shared_experts need routed experts (experts >= 1)")

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def matrices(self) -> int:
        """Weight matrices of one MLP: up and down, plus the gate for SwiGLU."""
        return 3 if self.activation == "swiglu" else 2

    @property
    def up(self) -> int:
        """Output width of the first GEMM (gate and up fused for SwiGLU)."""
        return self.ffn_hidden * (2 if self.activation == "swiglu" else 1)

    @property
    def shared_hidden(self) -> int:
        return self.shared_ffn_hidden or self.ffn_hidden

    def expert_params(self, hidden: int, bias: bool, width: int | None = None) -> int:
        """One MLP (the dense one, or one expert) of ``width`` (default ``ffn_hidden``)."""
        f = self.ffn_hidden if width is None else width
        n = self.matrices * hidden * f
        if bias:
            n += (self.matrices - 1) * f + hidden
        return n


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One transformer layer: pre-norm attention and MLP blocks with residual adds.
    ``linear_bias`` is the bias of the attention output projection and of the MLP's GEMMs."""

    hidden: int
    attention: AttentionSpec
    mlp: MLPSpec
    norm: str = "layernorm"
    linear_bias: bool = True

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"layer.norm={self.norm!r}: allowed {', '.join(NORMS)}")
        if self.hidden < 1:
            raise ValueError(f"layer.hidden={self.hidden} must be >= 1")

    # ---- parameters ---------------------------------------------------------------------------
    def norm_params(self) -> int:
        return 2 * self.hidden if self.norm == "layernorm" else self.hidden

    def attention_params(self) -> int:
        return self.attention.params(self.hidden, self.linear_bias)

    def expert_params(self) -> int:
        """The dense MLP, or one routed expert."""
        return self.mlp.expert_params(self.hidden, self.linear_bias)

    def routed_params(self) -> int:
        """All routed experts (0 for a dense layer): what expert parallelism shards."""
        return self.mlp.experts * self.expert_params()

    def mlp_params(self) -> int:
        """Feed-forward parameters: the dense MLP, or routed and shared experts and the router."""
        m = self.mlp
        if not m.is_moe:
            return self.expert_params()
        shared = m.shared_experts * m.expert_params(self.hidden, self.linear_bias, m.shared_hidden)
        return self.routed_params() + shared + self.hidden * m.experts

    def params(self) -> int:
        return self.attention_params() + self.mlp_params() + 2 * self.norm_params()

    def active_params(self) -> int:
        """Parameters one token touches: all but the ``experts − top_k`` unrouted experts."""
        return self.params() - (self.mlp.experts - self.mlp.top_k) * self.expert_params()

    def tensors(self) -> int:
        """Parameter tensors as Megatron/HF lay them out (fused QKV, output projection, MLP
        matrices, biases, norms, router): what a per-tensor optimizer loop iterates over."""
        a, m = self.attention, self.mlp
        norms = 2 * (2 if self.norm == "layernorm" else 1)
        attn = 2 + int(a.qkv_bias) + int(self.linear_bias) + 2 * int(a.qk_norm)
        per_mlp = m.matrices * (2 if self.linear_bias else 1)
        mlps = (m.experts + m.shared_experts) * per_mlp + 1 if m.is_moe else per_mlp
        return norms + attn + mlps

    def kv_elements_per_token(self) -> int:
        """Cached elements of one token in this layer (K and V, or MLA's latent)."""
        return self.attention.kv_elements_per_token()

    # ---- plain data ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSpec:
        """The inverse of :meth:`to_dict`; unknown keys raise a ValueError naming them."""
        _known(cls, data, "layer")
        _known(AttentionSpec, data["attention"], "layer.attention")
        _known(MLPSpec, data["mlp"], "layer.mlp")
        rest = {k: v for k, v in data.items() if k not in ("attention", "mlp")}
        return cls(attention=AttentionSpec(**data["attention"]), mlp=MLPSpec(**data["mlp"]), **rest)

    def describe(self) -> str:
        """A short label of the layer's kind (``dense``, ``moe 8×top-2``, ``+ window 4096``)."""
        m = self.mlp
        label = f"moe {m.experts}×top-{m.top_k}" + (f" + {m.shared_experts} shared" if m.shared_experts else "")
        label = label if m.is_moe else "dense"
        label += ", MLA" if self.attention.is_mla else ""
        return label + (f", window {self.attention.window}" if self.attention.window else "")


# ---- a model's stack of layers ------------------------------------------------------------------
def _layer_kinds(layers: int, layer_types: Sequence[str] | None) -> list[str]:
    if not layer_types:
        return ["full"] * layers
    for i, kind in enumerate(layer_types):
        if kind not in LAYER_TYPES:
            raise ValueError(f"layer_types[{i}]={kind!r}: allowed {', '.join(LAYER_TYPES)}")
    if layers % len(layer_types):
        raise ValueError(f"layer_types has {len(layer_types)} entries: give one per layer (layers={layers}) or a "
                         f"repeating pattern whose length divides {layers}")
    return list(layer_types) * (layers // len(layer_types))


def is_moe_layer(index: int, *, first_dense_layers: int = 0, layer_freq: int = 1) -> bool:
    """Whether layer ``index`` (0-based) of an MoE model has experts: the first
    ``first_dense_layers`` are dense (DeepSeek's ``first_k_dense_replace``), and after them every
    ``layer_freq``-th layer counted from 1 is MoE (``(index + 1) % layer_freq == 0``, the rule of
    Hugging Face's ``decoder_sparse_step`` and Llama 4's ``interleave_moe_layer_step``)."""
    return index >= first_dense_layers and (index + 1) % layer_freq == 0


def build_stack(*, layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, ffn_hidden: int,
                activation: str = "gelu", norm: str = "layernorm", qkv_bias: bool = True, linear_bias: bool = True,
                qk_norm: bool = False, causal: bool = True, rope: bool = False, sliding_window: int | None = None,
                layer_types: Sequence[str] | None = None, attention_chunked: bool = False,
                moe: Mapping[str, Any] | None = None,
                mla: Mapping[str, int] | None = None) -> tuple[LayerSpec, ...]:
    """Every layer of a model from its model-level keys (the names of ``ModelSpec``).

    ``layer_types`` (``full``/``sliding`` per layer, or a shorter pattern repeated) picks the
    attention of each layer; with ``sliding_window`` set and no ``layer_types`` every layer slides.
    ``attention_chunked``: the sliding layers attend within fixed chunks of ``sliding_window`` tokens.
    ``mla`` (the keys of ``ModelSpec.mla``) makes every layer's attention latent (MLA).
    ``moe`` (the keys of ``ModelSpec.moe``) makes the layers :func:`is_moe_layer` selects MoE; the
    others are dense with ``dense_ffn_hidden`` (0: ``ffn_hidden``). Layers of one kind are the same
    object, so grouping them is cheap. Bad combinations raise a ValueError naming the key.
    """
    if sliding_window is not None and not causal:
        raise ValueError(f"sliding_window={sliding_window} needs a causal (decoder) model")
    kinds = _layer_kinds(layers, layer_types)
    if sliding_window is None and "sliding" in kinds:
        raise ValueError("layer_types has sliding layers but sliding_window is not set")
    if sliding_window is not None and not layer_types:
        kinds = ["sliding"] * layers
    latent = {k: int(v) for k, v in (mla or {}).items()}   # kv_lora_rank, q_lora_rank, qk_rope_head_dim, v_head_dim
    attn = {k: AttentionSpec(heads, kv_heads, head_dim, qkv_bias, qk_norm, causal,
                             sliding_window if k == "sliding" else None, rope,
                             chunked=attention_chunked and k == "sliding", **latent) for k in set(kinds)}
    dense = MLPSpec(ffn_hidden, activation)
    moe_mlp, first, freq = None, 0, 1
    if moe is not None:
        unknown = sorted(set(moe) - set(MOE_KEYS))
        if unknown:
            raise ValueError(f"moe: unknown key {unknown[0]!r}; allowed keys: {', '.join(MOE_KEYS)}")
        first, freq = int(moe.get("first_dense_layers", 0)), int(moe.get("layer_freq", 1))
        if first < 0 or freq < 1:
            raise ValueError(f"moe.first_dense_layers={first} must be >= 0 and moe.layer_freq={freq} >= 1")
        if not any(is_moe_layer(i, first_dense_layers=first, layer_freq=freq) for i in range(layers)):
            raise ValueError(f"moe.first_dense_layers={first} with moe.layer_freq={freq} leaves no MoE layer among "
                             f"the model's {layers} layers")
        dense = MLPSpec(int(moe.get("dense_ffn_hidden") or ffn_hidden), activation)
        moe_mlp = MLPSpec(ffn_hidden, activation, int(moe["num_experts"]), int(moe["top_k"]),
                          int(moe.get("shared_experts", 0)), int(moe.get("shared_ffn_hidden", 0)))
    made: dict[tuple[str, bool], LayerSpec] = {}
    out = []
    for i, kind in enumerate(kinds):
        routed = moe_mlp is not None and is_moe_layer(i, first_dense_layers=first, layer_freq=freq)
        spec = made.get((kind, routed))
        if spec is None:
            mlp = moe_mlp if routed and moe_mlp is not None else dense
            spec = made[(kind, routed)] = LayerSpec(hidden, attn[kind], mlp, norm, linear_bias)
        out.append(spec)
    return tuple(out)


def group_layers(specs: Sequence[LayerSpec], start: int = 0, stop: int | None = None) -> list[tuple[LayerSpec, int]]:
    """Layers ``start:stop`` folded into ``(spec, count)`` per distinct kind, in order of first
    appearance: O(kinds), not O(layers). Order inside a range is dropped on purpose: a pipeline
    stage's time is the sum over its layers, and the host-dispatch walk repeats each block in its
    steady state, so alternating kinds (5 sliding, 1 full, ...) cost what their counts say."""
    by_id: dict[int, list[Any]] = {}                 # identity first: build_stack shares each kind's object
    for spec in specs[start:stop]:
        entry = by_id.get(id(spec))
        if entry is None:
            by_id[id(spec)] = [spec, 1]
        else:
            entry[1] += 1
    out: list[tuple[LayerSpec, int]] = []
    for spec, n in by_id.values():                   # then equal specs that are distinct objects
        i = next((i for i, (s, _) in enumerate(out) if s == spec), None)
        if i is None:
            out.append((spec, n))
        else:
            out[i] = (out[i][0], out[i][1] + n)
    return out
