"""The paged KV cache: blocks of ``B`` tokens, who holds them, and what has been promised.

The cache is ``total`` blocks of ``B`` tokens (vLLM's block_size, TensorRT-LLM's
tokens_per_block). A sequence holding ``c`` cached tokens holds ``ceil(c / B)`` blocks; it takes
a new block when its last one is full. ``reserved`` counts the blocks set aside for the next
decode step's tokens until the step is applied.

Under ``guaranteed_no_evict`` (TensorRT-LLM's default capacity policy) a request is admitted
only when the blocks of its final length fit beside those promised to every sequence already
admitted: :meth:`BlockAllocator.promise` keeps that ledger, so no sequence is ever preempted.

The records of the sequences in the engine are small slotted dataclasses: a sequence decoding
(:class:`DecodeSeq`) and a prompt being prefilled, possibly in chunks (:class:`Prefill`).
Identity, not value, tells two records apart (``eq=False``), as a record lives in one list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class DecodeSeq:
    """A sequence generating tokens: it joined the decode batch at step ``join_step`` with
    ``ctx_at_join`` cached tokens and gains one per step until ``finish_step``."""

    join_step: int
    ctx_at_join: int
    finish_step: int
    priority: int
    order: int          # admission order: preemption takes the most recent first


@dataclass(slots=True, eq=False)
class Prefill:
    """Request ``r``'s prompt (plus any tokens generated before a preemption), ``done`` of
    ``target`` tokens cached so far, in ``blocks`` blocks."""

    r: int
    done: int
    target: int
    blocks: int
    priority: int
    order: int


class BlockAllocator:
    """Free and reserved blocks, and the guaranteed-no-evict promises."""

    __slots__ = ("B", "committed", "free", "no_evict", "reserved", "total")

    def __init__(self, kv_tokens: int, block_tokens: int, *, no_evict: bool) -> None:
        self.B = block_tokens
        self.total = kv_tokens // block_tokens
        self.free = self.total
        self.reserved = 0           # taken for the next decode step's tokens, until the step is applied
        self.committed = 0          # guaranteed_no_evict: final blocks of every admitted sequence
        self.no_evict = no_evict

    @property
    def capacity_tokens(self) -> int:
        return self.total * self.B

    def blocks(self, tokens: int) -> int:
        """Blocks that hold ``tokens`` cached tokens."""
        return -(-tokens // self.B)

    def fits_ever(self, tokens: int) -> bool:
        """Whether a sequence of ``tokens`` tokens fits in the whole cache (else it can never run)."""
        return -(-tokens // self.B) <= self.total

    def promise(self, final_tokens: int) -> bool:
        """guaranteed_no_evict: set aside the blocks of a sequence's final length, if they fit
        beside every promise made so far (always True under max_utilization)."""
        if not self.no_evict:
            return True
        final = -(-final_tokens // self.B)
        if self.committed + final > self.total:
            return False
        self.committed += final
        return True

    def release(self, final_tokens: int) -> None:
        """A sequence finished: its promise (if any) is returned."""
        if self.no_evict:
            self.committed -= -(-final_tokens // self.B)
