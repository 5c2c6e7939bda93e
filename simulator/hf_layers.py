"""The per-layer keys of a Hugging Face ``config.json`` of the llama family (llama, mistral,
mixtral, qwen2/3 and their MoE variants): which layers use a sliding window and which are dense in
an MoE model, as :class:`~simulator.models.ModelSpec` keys (``sliding_window``, ``layer_types``,
``moe.layer_freq``, ``moe.first_dense_layers``, ``moe.dense_ffn_hidden``).

The rules are those of ``transformers``: an explicit ``layer_types`` list wins; Qwen2/3 slide only
with ``use_sliding_window`` and then from layer ``max_window_layers`` on; Mistral and Mixtral
slide in every layer when ``sliding_window`` is set (not null). A Qwen MoE layer ``i`` has experts
when ``(i + 1) % decoder_sparse_step == 0`` and ``i`` is not in ``mlp_only_layers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import CapsimError

_HF_TYPES = {"full_attention": "full", "sliding_attention": "sliding"}


def _attention_keys(cfg: Mapping[str, Any], mtype: str, layers: int, where: str) -> dict[str, Any]:
    window = cfg.get("sliding_window")
    if cfg.get("layer_types") is not None:
        kinds = []
        for i, t in enumerate(cfg["layer_types"]):
            if t not in _HF_TYPES:
                raise CapsimError(f"{where}: layer_types[{i}]={t!r} is not supported; supported: {', '.join(_HF_TYPES)}")
            kinds.append(_HF_TYPES[t])
    elif mtype.startswith("qwen"):
        start = cfg.get("max_window_layers", layers)
        kinds = ["sliding" if cfg.get("use_sliding_window") and window and i >= start else "full" for i in range(layers)]
    elif mtype in ("mistral", "mixtral") and window:
        kinds = ["sliding"] * layers
    else:
        kinds = []
    if "sliding" not in kinds:
        return {}
    if not window:
        raise CapsimError(f"{where}: layer_types has sliding layers but sliding_window is {window!r}")
    return {"sliding_window": int(window), "layer_types": kinds}


def _moe_keys(cfg: Mapping[str, Any], layers: int, where: str) -> dict[str, Any]:
    freq = int(cfg.get("decoder_sparse_step") or 1)
    dense = sorted(set(cfg.get("mlp_only_layers") or []))
    if dense != list(range(len(dense))):
        raise CapsimError(f"{where}: mlp_only_layers={dense} is not supported; only a prefix of dense layers is "
                          "(it becomes moe.first_dense_layers)")
    out: dict[str, Any] = {}
    if freq > 1:
        out["layer_freq"] = freq
    if dense:
        out["first_dense_layers"] = len(dense)
    if out and cfg.get("intermediate_size"):
        out["dense_ffn_hidden"] = int(cfg["intermediate_size"])
    return out


def hf_layer_keys(cfg: Mapping[str, Any], mtype: str, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model keys, extra moe keys)`` for the per-layer features of a llama-family config; both
    empty for a config whose layers are all alike, so such a spec is what it was before."""
    layers = int(cfg["num_hidden_layers"])
    return _attention_keys(cfg, mtype, layers, where), _moe_keys(cfg, layers, where)
