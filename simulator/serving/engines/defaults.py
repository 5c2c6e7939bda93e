"""vLLM's GPU-dependent engine defaults: one table, with its source.

A scenario key left ``None`` (``replica.max_num_seqs``, ``replica.max_batched_tokens``) means
"what the serving framework would pick on this GPU" (the engine presets, :mod:`.presets`). vLLM
(V1, 0.9 on) sizes both by GPU memory for its OpenAI server; the table lists its tiers, largest
first, and :func:`vllm_tier` picks the first tier the GPU reaches. A100s take the small tier
whatever their memory (vLLM PR #17885: a large token budget cut A100 throughput).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SizeTier:
    """Defaults for GPUs with at least ``min_memory_gib`` of memory."""

    min_memory_gib: float
    max_num_seqs: int
    max_batched_tokens: int


VLLM_SOURCE = ("vllm/engine/arg_utils.py default_max_num_seqs / default_max_num_batched_tokens for the OpenAI server "
               "(UsageContext.OPENAI_API_SERVER), as tests/engine/test_arg_utils.py test_defaults_with_usage_context "
               "asserts them")
VLLM_TIERS = (SizeTier(70.0, 1024, 8192), SizeTier(0.0, 256, 2048))
# vLLM checks `device_memory >= 70 GiB and "a100" not in device_name`
VLLM_EXCLUDED_NAMES = ("a100",)


def vllm_tier(memory_gib: float, gpu: str = "") -> SizeTier:
    """The tier of :data:`VLLM_TIERS` a GPU with ``memory_gib`` of memory named ``gpu`` falls in."""
    if any(n in gpu.lower() for n in VLLM_EXCLUDED_NAMES):
        return VLLM_TIERS[-1]
    return next(t for t in VLLM_TIERS if memory_gib >= t.min_memory_gib)


def gpu_defaults(memory_gib: float, gpu: str = "") -> SizeTier:
    """Alias of :func:`vllm_tier` (the default engine's defaults)."""
    return vllm_tier(memory_gib, gpu)


def describe(field: str) -> str:
    """``field``'s default by tier, for the scenario key's description."""
    tiers = [f"{getattr(t, field)} on GPUs with >= {t.min_memory_gib:g} GiB except A100" for t in VLLM_TIERS[:-1]]
    tiers.append(f"{getattr(VLLM_TIERS[-1], field)} otherwise")
    return (f"None: the engine preset's (replica.engine / engine_version); vLLM V1's is {', '.join(tiers)} "
            f"(source: {VLLM_SOURCE})")
