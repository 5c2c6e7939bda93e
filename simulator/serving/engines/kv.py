"""The paged KV cache: blocks of ``B`` tokens, who holds them, and what has been promised.

The cache is ``total`` blocks of ``B`` tokens (vLLM's block_size, TensorRT-LLM's
tokens_per_block). A sequence holding ``c`` cached tokens holds ``ceil(c / B)`` blocks; it takes
a new block when its last one is full. ``reserved`` counts the blocks set aside for the next
decode step's tokens until the step is applied.

Under ``guaranteed_no_evict`` (TensorRT-LLM's default capacity policy) a request is admitted
only when the blocks of its final length fit beside those promised to every sequence already
admitted: :meth:`BlockAllocator.promise` keeps that ledger, so no sequence is ever preempted.

With prefix caching (vLLM V1's ``enable_prefix_caching`` and TensorRT-LLM's
``enable_block_reuse``, both on by default) a preempted sequence's blocks are freed but keep their
KV until another sequence takes them, so the sequence resumes from its blocks still cached
instead of token 0. The free blocks form vLLM's eviction queue (vllm/v1/core/kv_cache_utils.py
``FreeKVCacheBlockQueue``): blocks are taken from the front and freed blocks join the back, a
sequence's in reverse order so that its last blocks go first
(vllm/v1/core/single_type_kv_cache_manager.py ``free``). A preempted sequence's blocks are
therefore reused only after the ``ahead`` blocks that were free before them: :class:`Retained`
keeps that position, counted in blocks taken (``taken``), so how many of its blocks are still
cached follows in O(1) at any time.

The records of the sequences in the engine are small slotted dataclasses: a sequence decoding
(:class:`DecodeSeq`), a prompt being prefilled, possibly in chunks (:class:`Prefill`), and a
preempted sequence's blocks in the free queue (:class:`Retained`). Identity, not value, tells two
records apart (``eq=False``), as a record lives in one list.
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


@dataclass(slots=True, eq=False)
class Retained:
    """A preempted sequence's ``held`` blocks, ``full`` of them full (only full blocks are cached),
    freed when ``taken`` was ``mark`` behind ``ahead`` free blocks."""

    mark: int
    ahead: int
    held: int
    full: int


class BlockAllocator:
    """Free and reserved blocks, the guaranteed-no-evict promises, and the preempted sequences'
    blocks still cached."""

    __slots__ = ("B", "caching", "committed", "free", "no_evict", "reserved", "retained", "taken", "total")

    def __init__(self, kv_tokens: int, block_tokens: int, *, no_evict: bool, prefix_caching: bool = True) -> None:
        self.B = block_tokens
        self.total = kv_tokens // block_tokens
        self.free = self.total
        self.reserved = 0           # taken for the next decode step's tokens, until the step is applied
        self.committed = 0          # guaranteed_no_evict: final blocks of every admitted sequence
        self.no_evict = no_evict
        self.caching = prefix_caching
        self.taken = 0              # blocks taken from the front of the free queue so far
        self.retained: dict[int, Retained] = {}   # by request, in the order they were freed

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

    # ---- a preempted sequence's blocks in the prefix cache -------------------------------------------
    def retain(self, r: int, held: int, cached_tokens: int) -> None:
        """Request ``r`` was preempted holding ``held`` blocks with ``cached_tokens`` tokens computed:
        its blocks join the back of the free queue (call before they are added to ``free``)."""
        full = cached_tokens // self.B
        if self.caching and full:
            self.retained[r] = Retained(self.taken, self.free, held, full)

    def cached_blocks(self, r: int) -> int:
        """Full blocks of request ``r``'s that are still cached: the blocks taken since it was freed
        used up the ``ahead`` blocks first, then its own, last block first."""
        rec = self.retained.get(r)
        if rec is None:
            return 0
        evicted = self.taken - rec.mark - rec.ahead
        if evicted <= 0:
            return rec.full
        return max(0, min(rec.full, rec.held - evicted))

    def reclaim(self, r: int, touched: int) -> None:
        """Request ``r`` is admitted again and takes ``touched`` of its cached blocks out of the free
        queue: the blocks freed after them (later records, as the dict keeps the order) move up."""
        if r not in self.retained:
            return
        if touched:
            behind = False
            for q, rec in self.retained.items():
                if behind:
                    rec.ahead -= touched
                elif q == r:
                    behind = True
        del self.retained[r]
