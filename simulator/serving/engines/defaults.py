"""Engine settings whose defaults depend on the GPU: one table, with its source.

A scenario key left ``None`` (``replica.max_num_seqs``, ``replica.max_batched_tokens``) means
"what the serving framework would pick on this GPU". vLLM sizes both by GPU memory; the table
lists its tiers, largest first, and :func:`gpu_defaults` picks the first tier the GPU reaches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SizeTier:
    """Defaults for GPUs with at least ``min_memory_gib`` of memory."""

    min_memory_gib: float
    max_num_seqs: int
    max_batched_tokens: int


VLLM_SOURCE = "vLLM's engine arguments max_num_seqs and max_num_batched_tokens, per the reference README"
VLLM_TIERS = (SizeTier(70.0, 1024, 8192), SizeTier(0.0, 256, 2048))


def gpu_defaults(memory_gib: float) -> SizeTier:
    """The tier of :data:`VLLM_TIERS` a GPU with ``memory_gib`` of memory falls in."""
    return next(t for t in VLLM_TIERS if memory_gib >= t.min_memory_gib)


def describe(field: str) -> str:
    """``field``'s default by tier, for the scenario key's description."""
    tiers = [f"{getattr(t, field)} on GPUs with >= {t.min_memory_gib:g} GiB" for t in VLLM_TIERS[:-1]]
    tiers.append(f"{getattr(VLLM_TIERS[-1], field)} otherwise")
    return f"None: vLLM's default for the GPU ({', '.join(tiers)}; source: {VLLM_SOURCE})"
