"""Attention other than plain multi-head / grouped-query attention over a full KV cache, for the
serving cost model (``costmodel.inference``): multi-head latent attention (MLA) and sliding windows.

**MLA** (DeepSeek-V2/V3/R1, Kimi-K2; DeepSeek-V2 paper §2.1, arXiv:2405.04434). The cache holds one
latent ``c_KV`` of ``kv_lora_rank`` elements and one rotary key of ``qk_rope_head_dim`` per token and
layer, shared by every head, so a TP rank keeps the whole latent (the cache does not shard over
tensor parallelism, which is why engines serve MLA with attention data parallelism). Projections:
``q_a`` (hidden → q_lora_rank), ``q_b`` (→ heads·head_dim), ``kv_a`` (hidden → kv_lora_rank +
qk_rope_head_dim), ``kv_b`` (kv_lora_rank → heads·(qk_nope_head_dim + v_head_dim)), ``o``. Decoding
runs the *absorbed* path: ``W_UK`` is folded into the query and ``W_UV`` into the output (the same
FLOPs and weight bytes as applying ``kv_b`` to the step's tokens), and attention runs in the latent
space: per cached token a decode query reads ``kv_lora_rank + qk_rope_head_dim`` elements and does
``2·heads·(kv_lora_rank + qk_rope_head_dim)`` FLOPs for the scores plus ``2·heads·kv_lora_rank`` for
the values. A prompt chunk runs the unabsorbed path: per query-key pair ``2·heads·head_dim`` (scores
over the no-rope and rope parts) plus ``2·heads·v_head_dim`` (values).

**Sliding windows** (GPT-OSS: 128 tokens in every other layer; Llama 4's chunked attention, charged
as a window of its chunk). A windowed layer's decode query reads ``min(c, window)`` cached tokens,
charged here as ``window`` per decoding sequence: exact once a sequence's context reaches the window
(every GPT-OSS request after its first 128 tokens), at most ``window`` tokens too many before, and
linear in the batch, which the fast-forward needs. A prompt chunk of ``q`` queries attends to at most
``window`` keys each: its work is ``min(Σ q·(c + (q+1)/2), q·window)``. The cache of a windowed layer
holds ``min(window, context)`` tokens of a sequence (vLLM's hybrid allocator and TensorRT-LLM's
variable-window KV manager free blocks that leave the window): in the per-token pool a token costs
the full layers' bytes plus ``min(1, window/context)`` of the windowed layers', at the workload's mean
context (prompt + output). A model whose every layer slides keeps the full charge (Mistral-7B-v0.1's
4096-token window exceeds most serving contexts anyway).

**Chunked attention** (Llama 4's ``attention_chunk_size`` 8192 in 3 of 4 layers): a query at position ``p``
sees the keys of its own chunk, ``p mod C + 1`` of them, not the ``C`` a trailing window holds. A decoding
sequence is charged, per step, the mean of ``c mod C`` over the contexts ``c`` it decodes at
(:func:`chunk_mean_keys`; 512 for an 8192-token prompt and 1024 outputs, against the window's 8192), and a
prompt's queries ``(C + 1)/2`` keys each beyond its first chunk (:func:`chunked_prefill_keys`: exact for a
prompt of whole chunks, within ``r(C − r)/2`` pairs for a remainder of ``r``).
"""

from __future__ import annotations

from ..layers import AttentionSpec


def kv_bytes_per_token_layer(att: AttentionSpec, *, tp: int, kv_bytes: float) -> float:
    """Cached bytes of one token in one layer on one GPU of a ``tp``-way attention group: K and V of its
    KV heads (at least one head per rank, replicated when ``kv_heads < tp``), or MLA's whole latent."""
    if att.is_mla:
        return att.kv_elements_per_token() * kv_bytes
    return 2 * max(att.kv_heads / tp, 1.0) * att.head_dim * kv_bytes


def decode_flops_per_token(att: AttentionSpec, *, tp: int) -> float:
    """FLOPs one decode query does per cached token on one GPU (``heads/tp`` heads)."""
    h = att.heads / tp
    if att.is_mla:
        return 2 * h * (att.kv_lora_rank + att.qk_rope_head_dim) + 2 * h * att.kv_lora_rank
    return 4 * h * att.head_dim


def prefill_flops_per_pair(att: AttentionSpec, *, tp: int) -> float:
    """FLOPs per query-key pair of a prompt chunk on one GPU (the unabsorbed path for MLA)."""
    h = att.heads / tp
    if att.is_mla:
        return 2 * h * att.head_dim + 2 * h * att.v_head_dim
    return 4 * h * att.head_dim


def windowed_prefill_work(work: float, prefill_tokens: float, window: float) -> float:
    """Query-key pairs of an iteration's prompt chunks in a layer of ``window``: each query sees at most
    ``window`` keys, so ``min(work, prefill_tokens·window)`` (``work`` = Σ q·(c + (q+1)/2))."""
    return min(work, prefill_tokens * window)


def chunk_mean_keys(first: float, last: float, chunk: int) -> float:
    """Mean of ``c mod chunk`` over decode contexts ``c`` spread evenly on ``[first, last]``: the keys a chunked
    layer's decode query reads per step, averaged over a sequence's decode. With ``F(x) = ∫₀ˣ (t mod C) dt =
    ⌊x/C⌋·C²/2 + (x mod C)²/2`` it is ``(F(last) − F(first)) / (last − first)``."""
    def integral(x: float) -> float:
        return (x // chunk) * chunk * chunk / 2 + (x % chunk) ** 2 / 2

    if last <= first:
        return first % chunk
    return (integral(last) - integral(first)) / (last - first)


def chunked_prefill_keys(chunk: int) -> float:
    """Keys per prompt query of a chunked layer past its first chunk, ``(chunk + 1)/2``: used as the window of
    :func:`windowed_prefill_work` (a prompt of ``n`` whole chunks does ``n·C(C+1)/2`` pairs)."""
    return (chunk + 1) / 2
