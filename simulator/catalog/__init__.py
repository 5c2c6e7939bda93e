"""The model catalog: named architectures in YAML files beside this module.

``get_model`` accepts a catalog name, an inline mapping, or a path to a Hugging Face
``config.json`` (or a folder holding one).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import CapsimError, unknown
from ..files import excerpt, parse_yaml
from ..models import ModelSpec, from_hf_config

_HERE = Path(__file__).parent
# Catalog names of the Hugging Face configs in hf_configs/ (copied from aiconfigurator-core's
# model_configs/, Apache-2.0: hf_configs/NOTICE), read through models.from_hf_config.
HF_CATALOG = {
    "deepseek-r1": "deepseek-ai--DeepSeek-R1.json", "deepseek-v3": "deepseek-ai--DeepSeek-V3.json",
    "kimi-k2": "moonshotai--Kimi-K2-Instruct.json", "kimi-k2.5": "moonshotai--Kimi-K2.5.json",
    "gpt-oss-120b": "openai--gpt-oss-120b.json", "gpt-oss-20b": "openai--gpt-oss-20b.json",
    "llama-4-maverick": "meta-llama--Llama-4-Maverick-17B-128E-Instruct.json",
    "llama-4-scout": "meta-llama--Llama-4-Scout-17B-16E-Instruct.json",
    "qwen3-235b-a22b": "Qwen--Qwen3-235B-A22B-FP8.json", "qwen3-30b-a3b": "Qwen--Qwen3-30B-A3B.json",
    "minimax-m2.5": "MiniMaxAI--MiniMax-M2.5.json",
}


@cache
def catalog() -> dict[str, ModelSpec]:
    """All catalog models by name (read once)."""
    out: dict[str, ModelSpec] = {}
    for f in sorted(_HERE.glob("*.yaml")):
        doc = parse_yaml(f.read_text())
        defaults = doc.get("defaults", {})
        for entry in doc["models"]:
            spec = ModelSpec(**{**defaults, **entry})
            if spec.name in out:
                raise RuntimeError(f"duplicate catalog model {spec.name} in {f.name}")
            out[spec.name] = spec
    for name, file in HF_CATALOG.items():
        if name in out:
            raise RuntimeError(f"duplicate catalog model {name} in hf_configs/")
        out[name] = from_hf_config(_HERE / "hf_configs" / file).model_copy(update={"name": name})
    return out


def get_model(ref: str | dict[str, Any] | ModelSpec) -> ModelSpec:
    """Resolve a model reference: catalog name, inline dict, or path to an HF config.json."""
    if isinstance(ref, ModelSpec):
        return ref
    if isinstance(ref, dict):
        try:
            return ModelSpec(**{"name": "inline", **ref})
        except ValidationError as e:
            raise CapsimError(f"model: {_first_error(e)}") from None
    key = str(ref).strip()
    spec = _named(key.lower())
    if spec is not None:
        return spec
    p = Path(key).expanduser()
    if key.endswith(".json") or p.is_dir() or p.exists():
        return from_hf_config(p)
    raise unknown("model", key, catalog())


@cache
def _named(name: str) -> ModelSpec | None:
    """The catalog model ``name`` as :func:`catalog` builds it, reading only the files up to its own
    (a run needs one model; the whole catalog is six YAML files and eleven configs, ~10 ms)."""
    if name in HF_CATALOG:
        return from_hf_config(_HERE / "hf_configs" / HF_CATALOG[name]).model_copy(update={"name": name})
    for f in sorted(_HERE.glob("*.yaml")):
        doc = parse_yaml(f.read_text())
        for entry in doc["models"]:
            if entry.get("name") == name:
                spec = ModelSpec(**{**doc.get("defaults", {}), **entry})
                return spec if spec.name == name else catalog().get(name)
    return None


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"{loc}: {err['msg']} (got {excerpt(err.get('input'))})" if loc else err["msg"]
