"""The prefix-aware router: send a request where its prompt's prefix is cached, unless the load is
out of balance — SGLang router's ``cache_aware`` policy (sgl-router src/policies/cache_aware.rs:
"a system is considered imbalanced if (max − min) > abs_threshold and max > rel_threshold · min";
imbalanced → the shortest queue; balanced → the worker with the highest prefix match if its match
rate exceeds ``cache_threshold``, else the one with the smallest tree), and llm-d's prefix-cache
scorer beside its load scorers (llm-d-inference-scheduler ``prefix-cache-scorer``).

SGLang's router keeps an approximate radix tree of what it routed; this router reads each replica's
actual GPU prefix cache (:mod:`.engines.prefix_cache`), as llm-d's precise prefix-cache scorer does
from the engines' KV events. Load is a replica's outstanding requests; "smallest tree" is the replica
with the fewest cached blocks (ties: fewest outstanding, then in turn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .replica import Replica
    from .router import Router


def cached_tokens(rep: Replica, r: int, t: float) -> int:
    """Tokens of request ``r``'s prompt on ``rep``'s GPU prefix cache now (0 without one)."""
    sched = getattr(rep, "sched", None)
    match = getattr(sched, "matched_tokens", None)
    return match(r, t) if match is not None else 0


def cached_blocks(rep: Replica) -> int:
    pc = getattr(getattr(rep, "sched", None), "pc", None)
    return pc.resident if pc is not None else 0


def cache_aware(router: Router, reps: list[Replica], r: int, t: float) -> Replica:
    loads = [rep.outstanding for rep in reps]
    lo, hi = min(loads), max(loads)
    start = router._next % len(reps)
    router._next = start + 1
    order = reps[start:] + reps[:start]            # ties go round the replicas
    if hi - lo > router.balance_abs and hi > router.balance_rel * lo:
        return min(order, key=lambda rep: rep.outstanding)
    prompt = int(rep_prompt(reps[0], r))
    scores = [(cached_tokens(rep, r, t), rep) for rep in order]
    best, who = max(scores, key=lambda s: s[0])
    if prompt and best / prompt > router.cache_threshold:
        return who
    return min(order, key=lambda rep: (cached_blocks(rep), rep.outstanding))


def rep_prompt(rep: Replica, r: int) -> int:
    return int(rep.ledger.prompt[r])
