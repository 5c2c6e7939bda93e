"""Prefix caching with real reuse: KV blocks named by the hash of their token prefix, kept after
their last holder leaves, evicted least recently used first, found again by the requests that
share the prefix.

**What a request's tokens are.** No token arrays: a request's sequence is a list of *segments*
``(segment id, length)`` (:class:`Content`): a shared system prompt is one segment every request of
its group starts with, a chat session's history is the earlier turns' segments (their new tokens
and their outputs) in order, and each request's new tokens and its output are segments of their
own. Two sequences hold the same token at position ``p`` exactly when their segment lists agree up to
``p``, which is all a prefix cache can see.

**Block hashes as vLLM computes them.** Block ``i`` (tokens ``[iB, (i+1)B)``) is named by
``hash((hash of block i-1, the block's tokens))``, a chain, so a block's name covers its whole
prefix: vLLM V1 ``hash_block_tokens(hash_function, parent_block_hash, curr_block_token_ids)`` and
``hash_request_tokens`` (vllm/v1/core/kv_cache_utils.py; only full blocks are hashed). Here a
block's tokens are the pieces ``(segment id, start, end)`` of the segments it covers. Python's hash
of a tuple of ints is deterministic, so runs repeat exactly.

**The GPU cache** (:class:`PrefixCache`): every resident hashed block has a reference count (the
sequences holding it); a block whose count reaches 0 stays resident, unreferenced, in an LRU queue
(vLLM's ``FreeKVCacheBlockQueue``: a request's blocks are freed in reverse order so its tail goes
first, vllm/v1/core/single_type_kv_cache_manager.py ``free``; SGLang's radix cache evicts the least
recently used leaves, sglang/srt/mem_cache/radix_cache.py ``evict``). A request holding block ``i``
holds every block before it, and frees them in one call tail first, so a block's parent is always
behind it in the queue: eviction takes leaves first, and a prefix shrinks one block per eviction.
Unreferenced blocks count as free; a block taken from the free pool evicts the queue's front block
when no never-used free block is left (SGLang evicts only when its pool runs out; vLLM's one free
queue can reuse a cached block while never-used ones wait behind it, which differs only until the
cache has filled once).

**When blocks become visible.** A prompt's full blocks are registered when their chunk is scheduled
(vLLM V1 ``allocate_slots`` caches ``num_computed_tokens + num_new_tokens``, so a request admitted in
the same iteration finds them: each layer writes the new tokens' KV before its attention reads);
generated tokens' full blocks when the sequence leaves (only a later turn of the same session, sent
after it finished, can share them). A duplicate (two requests computed the same block before either
registered it) stays private to its holder.

**Hits** are computed at admission over the first ``target - 1`` tokens in whole blocks (the last
token is always recomputed for its logits: vLLM ``get_computed_blocks``, ``max_cache_hit_length =
request.num_tokens - 1``): resident blocks are shared, blocks found in an offload tier
(:mod:`.offload`) are loaded into new GPU blocks, and the prefill computes only the rest.
"""

from __future__ import annotations

import heapq
from array import array
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from .fastforward import DecodeBatch
from .kv import BlockAllocator, Prefill
from .offload import KVOffload, Tier, build_tiers, offload
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..replica import Replica
    from .base import ReplicaPlan

Segments = tuple[tuple[int, int], ...]


class Content:
    """The token identities of a workload's requests: request ``r``'s prompt is ``segments[r]``, its
    output the segment ``-(r + 1)`` of ``output[r]`` tokens. Block hashes are computed on demand and
    kept while a request is in the system. A sequence that starts with a shared first segment (a system
    prompt) or with an earlier turn's whole sequence (``continued``: rows with a next turn) continues
    that chain instead of hashing it again."""

    __slots__ = ("_hashes", "_memo", "continued", "output", "segments")

    def __init__(self, segments: list[Segments], output: np.ndarray, continued: np.ndarray | None = None) -> None:
        self.segments = segments
        self.output = output
        self.continued = continued                      # bool per row: a later sequence starts with its own
        self._hashes: dict[int, list[int]] = {}
        self._memo: dict[Segments, Chain] = {}          # chain state after a shared first segment or a turn

    def hashes(self, r: int, B: int) -> list[int]:
        """The chain hashes of every full block of request ``r``'s prompt and output."""
        hs = self._hashes.get(r)
        if hs is not None:
            return hs
        segs = self.segments[r]
        full = (*segs, (-(r + 1), int(self.output[r])))
        memo = self._memo
        start = 0
        state: Chain | None = None
        if len(segs) > 1:
            prev = memo.pop(segs[:-1], None)            # the previous turn's whole sequence
            if prev is not None:
                state, start = prev, len(segs) - 1
        if state is None and len(full) > 1:
            state = memo.get(full[:1])                  # the shared system prompt
            if state is None:
                state = memo[full[:1]] = extend(EMPTY, full[:1], B)
            start = 1
        state = extend(state or EMPTY, full[start:], B)
        if self.continued is not None and self.continued[r]:
            memo[full] = state
        hs = self._hashes[r] = state[0]
        return hs

    def forget(self, r: int) -> None:
        self._hashes.pop(r, None)


Chain = tuple[list[int], int, tuple[tuple[int, int, int], ...], int]   # hashes, last hash, open pieces, their tokens
EMPTY: Chain = ([], 0, (), 0)


def extend(state: Chain, segments: Segments, B: int) -> Chain:
    """The chain ``state`` continued over ``segments`` (a new list: ``state``'s is left as it was)."""
    hs, parent, open_pieces, fill = state
    out = list(hs)
    pieces = list(open_pieces)
    for sid, n in segments:
        off = 0
        if fill == 0 and n >= B:                        # whole blocks of one segment: the common case
            for off in range(0, n - n % B, B):
                parent = hash((parent, ((sid, off, off + B),)))
                out.append(parent)
            off = n - n % B
        while off < n:
            take = min(B - fill, n - off)
            pieces.append((sid, off, off + take))
            off += take
            fill += take
            if fill == B:
                parent = hash((parent, tuple(pieces)))
                out.append(parent)
                pieces.clear()
                fill = 0
    return out, parent, tuple(pieces), fill


def chain_hashes(segments: Segments, B: int) -> list[int]:
    """``hash((parent, pieces))`` of every full block of ``B`` tokens of the sequence ``segments``."""
    return extend(EMPTY, segments, B)[0]


class PrefixCache:
    """One replica's hashed GPU blocks (in use or unreferenced in LRU order), its offload tiers, and
    what was found where. The engine's allocator (:class:`~.kv.BlockAllocator`) keeps the free count;
    this class says which blocks are shared (not taken again) and which free ones still hold KV."""

    __slots__ = ("B", "content", "evicted", "held", "hit_gpu", "hit_tier", "kv", "load_s", "lru", "queried",
                 "ref", "tier_load_s", "tiers")

    def __init__(self, kv: BlockAllocator, content: Content, tiers: list[Tier]) -> None:
        self.kv = kv
        self.B = kv.B
        self.content = content
        self.tiers = tiers
        self.ref: dict[int, int] = {}                   # resident, in use: hash -> holders
        self.lru: OrderedDict[int, None] = OrderedDict()  # resident, unreferenced (front: next evicted)
        self.held: dict[int, list[int | None]] = {}     # request -> its registered or shared blocks (None: private)
        self.queried = 0                                # prompt tokens looked up at admission
        self.hit_gpu = 0                                # of them found on the GPU
        self.hit_tier = [0] * len(tiers)                # ... and in each offload tier
        self.evicted = 0                                # GPU blocks evicted
        self.load_s = 0.0                               # transfer time of the last admission's tier hits
        self.tier_load_s = [0.0] * len(tiers)           # transfer time charged per tier, in all

    # ---- lookup ----------------------------------------------------------------------------------
    def match(self, r: int, target: int) -> tuple[int, int, list[int]]:
        """Request ``r`` with ``target`` tokens to compute: (blocks resident on the GPU, of which in use by
        others, blocks per offload tier) of its longest cached prefix within ``target - 1`` tokens."""
        hs = self.content.hashes(r, self.B)
        limit = min((target - 1) // self.B, len(hs))
        ref, lru, tiers = self.ref, self.lru, self.tiers
        gpu = shared = 0
        per_tier = [0] * len(tiers)
        for i in range(limit):
            h = hs[i]
            if h in ref:
                gpu += 1
                shared += 1
            elif h in lru:
                gpu += 1
            else:
                for k, tier in enumerate(tiers):
                    if h in tier.blocks:
                        per_tier[k] += 1
                        break
                else:
                    break
        return gpu, shared, per_tier

    def matched_tokens(self, r: int, target: int) -> int:
        """Tokens of ``r``'s prompt found on the GPU (the prefix-aware router's score)."""
        hs = self.content.hashes(r, self.B)
        ref, lru = self.ref, self.lru
        # a chain's cached blocks form a prefix of it (a holder holds every block before its own, and the
        # LRU queue evicts children before parents), so the longest one is found by bisection; the rare
        # hole a private duplicate leaves is not looked for (SGLang's router tree is approximate too)
        lo, hi = 0, min((target - 1) // self.B, len(hs))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            h = hs[mid - 1]
            if h in ref or h in lru:
                lo = mid
            else:
                hi = mid - 1
        return lo * self.B

    # ---- admission and registration ----------------------------------------------------------------
    def acquire(self, r: int, blocks: int, prompt_tokens: int, hit_tokens: int, tier_blocks: list[int]) -> None:
        """``r`` is admitted holding the first ``blocks`` blocks of its chain (resident ones shared, tier
        ones loaded into blocks just taken); ``prompt_tokens`` were looked up, ``hit_tokens`` found."""
        hs = self.content.hashes(r, self.B)
        ref, lru, tiers = self.ref, self.lru, self.tiers
        taken = hs[:blocks]
        get = ref.get
        for h in taken:
            c = get(h)
            if c is not None:
                ref[h] = c + 1
                continue
            if h in lru:
                del lru[h]
            else:                                       # from an offload tier: it stays there too
                for tier in tiers:
                    if h in tier.blocks:
                        tier.blocks.move_to_end(h)
                        break
            ref[h] = 1
        self.held[r] = list[int | None](taken)
        self.queried += prompt_tokens
        gpu_hit = hit_tokens - sum(tier_blocks) * self.B
        self.hit_gpu += gpu_hit
        load = 0.0
        for k, n in enumerate(tier_blocks):
            if n:
                self.hit_tier[k] += n * self.B
                tiers[k].loaded += n
                dt = tiers[k].load_s(n)
                self.tier_load_s[k] += dt
                load += dt
        self.load_s = load

    def register(self, r: int, full: int) -> None:
        """``r``'s first ``full`` blocks hold KV now (computed or scheduled): name the new ones."""
        mine = self.held[r]
        if len(mine) >= full:
            return
        hs = self.content.hashes(r, self.B)
        ref, lru = self.ref, self.lru
        for i in range(len(mine), min(full, len(hs))):
            h = hs[i]
            if h in ref or h in lru:
                mine.append(None)                      # computed twice: this copy stays private
            else:
                ref[h] = 1
                mine.append(h)

    def release(self, r: int, valid: int) -> int:
        """``r`` leaves holding KV for its first ``valid`` full blocks (its generated ones are named now;
        blocks registered beyond them never ran and are dropped). Its blocks are freed tail first: those
        no one else holds join the LRU queue. Returns how many of its blocks others still hold."""
        mine = self.held.pop(r, None)
        if mine is None:
            return 0
        ref, lru = self.ref, self.lru
        if len(mine) < valid:
            self.held[r] = mine
            self.register(r, valid)
            mine = self.held.pop(r)
        still = 0
        for h in mine[valid:]:                          # registered, never computed (a preempted chunk): dropped
            if h is not None:
                c = ref[h] - 1
                if c:
                    ref[h] = c
                    still += 1
                else:
                    del ref[h]
        for h in reversed(mine[:valid]):                # tail first
            if h is None:
                continue
            c = ref[h] - 1
            if c:
                ref[h] = c
                still += 1
            else:
                del ref[h]
                lru[h] = None
        return still

    def fit(self, free: int | None = None) -> None:
        """Evict unreferenced blocks (LRU first) until they fit in the free count (``free``: the count a
        step-by-step run would have now, in the middle of a fast-forwarded window): the blocks just taken
        came from them. Evicted blocks go to the offload tiers."""
        lru = self.lru
        if free is None:
            free = self.kv.free
        if len(lru) <= free:
            return
        tiers = self.tiers
        while len(lru) > free:
            h, _ = lru.popitem(last=False)
            self.evicted += 1
            if tiers:
                offload(tiers, h)

    @property
    def resident(self) -> int:
        """Hashed blocks on the GPU (in use or not)."""
        return len(self.ref) + len(self.lru)


class CachingScheduler(Scheduler):
    """vLLM's scheduling order (:class:`~.scheduler.Scheduler`) on a hashed prefix cache: admission
    looks the prompt up and computes only the uncached rest; shared blocks are not taken twice; a
    sequence's blocks are released through the cache, so the ones others hold stay taken; blocks
    taken from the free pool evict unreferenced cached ones first-in-LRU-order when no never-used
    block is left."""

    def __init__(self, rep: Replica, kv: BlockAllocator, decode: DecodeBatch, pc: PrefixCache, **kw: Any) -> None:
        super().__init__(rep, kv, decode, **kw)
        self.pc = pc
        kv.caching = False                     # a preempted sequence is found again by its hashes, not by kv.retain
        self.log_t: array[float] = array("d")  # admissions: time, prompt tokens looked up, found on the GPU, in tiers
        self.log_q: array[float] = array("d")
        self.log_gpu: array[float] = array("d")
        self.log_tier: array[float] = array("d")
        self.log_used: list[array[float]] = [array("d") for _ in pc.tiers]   # blocks in each tier after it
        self.first_hit: dict[int, int] = {}    # prompt tokens found at each request's first admission

    def schedule(self, t0: float) -> None:
        self.load_s = 0.0
        super().schedule(t0)

    def reserve_decode_slots(self, t0: float) -> None:
        super().reserve_decode_slots(t0)
        self.pc.fit()

    def admit_waiting(self, budget: int, t0: float) -> None:
        """3. Admit from the queue while sequences, tokens and blocks allow; stop at a blocked head. A
        prompt's cached prefix (on the GPU or in a tier) is not computed; its blocks on the GPU that
        others hold are not taken again."""
        kv, led, rep, pc = self.kv, self.ledger, self.rep, self.pc
        B, waiting = kv.B, rep.waiting
        n_run = len(self.decode.seqs) + len(self.prefilling)
        while waiting and n_run < self.max_seqs and budget > 0:
            r = waiting[0][2]
            target = led.prompt[r] + int(led.generated[r])
            gpu, shared, per_tier = pc.match(r, target)
            nb = gpu + sum(per_tier)
            cached = nb * B
            q = target - cached
            if q > budget:
                if not self.chunked:
                    break
                q = budget
            if -(-(cached + q) // B) - shared > kv.free:
                break
            if not kv.promise(led.prompt[r] + led.output[r] - 1):
                break
            heapq.heappop(waiting)
            self.admitted += 1
            kv.free -= nb - shared                 # resident blocks no one holds leave the free pool, tier hits take new ones
            kv.taken += nb - shared
            pc.acquire(r, nb, target, cached, per_tier)
            pc.fit()
            self.load_s += pc.load_s
            self.log_t.append(t0)
            self.log_q.append(target)
            self.log_gpu.append(gpu * B)
            self.log_tier.append(cached - gpu * B)
            for k, tier in enumerate(pc.tiers):
                self.log_used[k].append(len(tier.blocks))
            e = Prefill(r, cached, target, nb, led.priority[r], self.admitted)
            self.prefilling.append(e)
            self.take(e, q)
            rep.running += 1
            if led.first_sched[r] != led.first_sched[r]:  # NaN: first admission
                led.first_sched[r] = t0
                self.first_hit[r] = cached
            rep.log(t0)
            budget -= q
            n_run += 1

    def take(self, e: Prefill, q: int) -> None:
        super().take(e, q)
        self.pc.register(e.r, (e.done + q) // self.kv.B)
        self.pc.fit()

    def preempt(self, where: tuple[str, int], t: float) -> None:
        """Free the victim's blocks (those others hold stay taken) and queue it first again: it finds its
        blocks still cached, or in a tier, when it comes back."""
        kind, i = where
        kv, led, pc = self.kv, self.ledger, self.pc
        if kind == "decode":
            r = i
            s, ctx = self.decode.leave(r)
            kv.free += kv.blocks(ctx) - pc.release(r, ctx // kv.B)
            led.generated[r] = led.output[r] - (s.finish_step - self.decode.step)
            led.preempted(r, t)
        else:
            e = self.prefilling.pop(i)
            r = e.r
            kv.free += e.blocks - pc.release(r, e.done // kv.B)   # this iteration's chunk, if any, never ran
            self.chunks = [(c, q) for c, q in self.chunks if c is not e]
        self.requeue(r, t, front=True)

    def update(self, steps: int, t: float, finished: list[int]) -> None:
        """As :meth:`Scheduler.update`, releasing finished sequences through the cache: the blocks the
        decode steps took are taken (evicting) before the finished sequences' blocks join the LRU queue."""
        kv, dec, led, pc = self.kv, self.decode, self.ledger, self.pc
        B = kv.B
        reserved = kv.reserved
        kv.free += reserved
        kv.reserved = 0
        if dec.seqs and steps:
            net = dec.advance(steps, finished)
            if dec.grown > reserved:
                kv.taken += dec.grown - reserved
            gone = 0
            for r in finished:
                gone += -(-(led.prompt[r] + led.output[r] - 1) // B)
            kv.free += net - gone
            pc.fit()
            for r in finished:
                ctx = led.prompt[r] + led.output[r] - 1
                kv.free += -(-ctx // B) - pc.release(r, ctx // B)
        for e, q in self.chunks:
            e.done += q
            if e.done == e.target:
                r = e.r
                self.prefilling.remove(e)
                if led.first_token[r] != led.first_token[r]:
                    led.first_token[r] = t
                else:
                    led.resumed(r, t)
                rem = led.output[r] - int(led.generated[r]) - 1
                if rem == 0:
                    finished.append(r)
                    kv.free += e.blocks - pc.release(r, e.done // B)
                else:
                    dec.join(r, ctx=e.target, rem=rem, prio=e.priority, order=e.order)
        self.chunks = []
        if kv.free < 0:  # the scheduler's invariant; a bug if it ever fails
            raise RuntimeError(f"replica {self.rep.index}: KV cache over capacity by {-kv.free} blocks")
        content = pc.content
        for r in finished:
            led.generated[r] = led.output[r]
            kv.release(led.prompt[r] + led.output[r] - 1)
            content.forget(r)

    def matched_tokens(self, r: int, t: float) -> int:
        """Prompt tokens of ``r`` found on this replica's GPU now (a window in progress has taken the
        blocks of the steps done and of the one running: their evictions are made first)."""
        eng = self.rep
        win = getattr(eng, "win", None)
        if win is not None and win.k > 1:
            from .fastforward import to_fs
            j = win.steps_done(to_fs(t)) + 1
            self.pc.fit(self.kv.free + self.kv.reserved - self.decode.blocks_over(j))
        return self.pc.matched_tokens(r, int(self.ledger.prompt[r]))


def caching_scheduler(rep: Replica, kv: BlockAllocator, decode: DecodeBatch, plan: ReplicaPlan,
                      offload_cfg: KVOffload | None, block_bytes: float, **kw: Any) -> CachingScheduler | None:
    """The hashed prefix cache's scheduler when the replica caches prefixes and the requests carry token
    identities (or offload tiers are configured: each request is then its own content); else None."""
    if not plan.prefix_caching:
        return None
    reqs = rep.ledger.reqs
    content = getattr(reqs, "content", None)
    if content is None:
        if offload_cfg is None:
            return None
        content = reqs.content = unique_content(reqs.prompt, reqs.output)
    return CachingScheduler(rep, kv, decode, PrefixCache(kv, content, build_tiers(offload_cfg, block_bytes)), **kw)


def unique_content(prompt: np.ndarray, output: np.ndarray) -> Content:
    """Every request its own prompt: segment ``r`` of ``prompt[r]`` tokens."""
    return Content([((int(r), int(p)),) for r, p in enumerate(prompt)], output)
