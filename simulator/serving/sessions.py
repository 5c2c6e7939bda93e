"""Token identities of a workload whose requests share prefixes: shared system prompts and multi-turn
sessions (chats, agent loops), as segments (:class:`~.engines.prefix_cache.Content`) the replicas'
prefix caches hash into blocks.

Segment ids: system prompt ``g`` is segment ``g``; request ``r``'s own new tokens are segment
``groups + r``; its output is segment ``-(r + 1)`` (added by ``Content``). A session of ``T`` turns
is rows ``s·T … s·T + T − 1``; turn ``k``'s prompt is ``[system prompt] + (new_j, output_j for j < k)
+ new_k``, so its length is the system prompt plus every earlier turn's new tokens and output plus
its own new tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import CapsimError
from ..limits import MAX_TOKENS
from ..scenario import ServingScenario, Workload
from .engines.prefix_cache import Content, Segments

if TYPE_CHECKING:
    from .engines.presets import EngineSettings


def session_rows(t: np.ndarray, turns: int) -> np.ndarray:
    """Arrival times of every turn's row: the sessions' starts on their first turns, NaN for the turns
    sent later (after the previous answer and the think time)."""
    rows = np.full(len(t) * turns, np.nan)
    rows[::turns] = t
    return rows


def compose(w: Workload, new: np.ndarray, output: np.ndarray, seed: int,
            step_new: np.ndarray | None = None) -> tuple[np.ndarray, Content, np.ndarray | None]:
    """(prompt lengths, content, next turn of each row or None) from each row's own new tokens ``new``
    (``step_new``: those of turns after the first, when ``sessions.step_tokens`` draws them apart).
    Groups are drawn on their own stream (the fifth child of the scenario seed), one per session."""
    n = len(new)
    sp, ss = w.shared_prefix, w.sessions
    turns = ss.turns if ss is not None else 1
    G = sp.groups if sp is not None else 0
    L = sp.system_prompt_tokens if sp is not None else 0
    sessions = n // turns
    group = np.zeros(sessions, dtype=np.int64)
    if sp is not None:
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(5)[4])
        group = rng.integers(0, G, size=sessions)
    own = new.copy()
    if step_new is not None:
        later = np.arange(n) % turns != 0
        own[later] = step_new[later]
    prompt = np.empty(n, dtype=np.int64)
    segments: list[Segments] = []
    for s in range(sessions):
        hist: Segments = ((int(group[s]), L),) if sp is not None else ()
        length = L
        for k in range(turns):
            r = s * turns + k
            u = int(own[r])
            seg = (*hist, (G + r, u))
            segments.append(seg)
            prompt[r] = length + u
            hist = (*seg, (-(r + 1), int(output[r])))
            length += u + int(output[r])
    if len(prompt) and int(prompt.max()) > MAX_TOKENS:
        r = int(np.argmax(prompt))
        raise CapsimError(f"workload.sessions: turn {r % turns + 1}'s prompt would hold {int(prompt[r]):,} tokens (its "
                          f"history); the bound is {MAX_TOKENS:,}: fewer turns or shorter turns")
    next_turn = None
    if ss is not None and turns > 1:
        idx = np.arange(n)
        next_turn = np.where(idx % turns != turns - 1, idx + 1, -1)
    return prompt, Content(segments, output, next_turn >= 0 if next_turn is not None else None), next_turn


def check_reuse(sc: ServingScenario, settings: EngineSettings | None) -> None:
    """The combinations the hashed prefix cache and the offload tiers do not take, as clear errors."""
    w, rc = sc.workload, sc.replica
    tokens = w.shared_prefix is not None or w.sessions is not None
    offload = getattr(rc, "kv_offload", None)
    if sc.services and tokens:
        raise CapsimError("workload.shared_prefix and workload.sessions apply to one service (a services: path "
                          "redraws each service's lengths); drop services or the shared prefixes")
    if sc.cluster.router == "prefix_aware" and not (tokens or offload is not None):
        raise CapsimError("cluster.router prefix_aware routes by the prompts' cached prefixes: give the requests token "
                          "identities with workload.shared_prefix or workload.sessions")
    if settings is None:
        return
    if offload is not None and not settings.prefix_caching:
        raise CapsimError(f"replica.kv_offload needs prefix caching (blocks are found in the tiers by their hashes); "
                          f"replica.prefix_caching is false ({settings.sources.get('prefix_caching', '')})")
    if (tokens or offload is not None) and settings.prefix_caching and settings.schedule_order == "prefill_first":
        raise CapsimError(f"the hashed prefix cache (workload.shared_prefix, workload.sessions, replica.kv_offload) "
                          f"runs in the decode-first scheduler; {settings.engine}'s schedule_order is prefill_first "
                          "(SGLang's scheduler takes workload.prefix_cache_hit_rate): set replica.schedule_order: "
                          "decode_first, or replica.prefix_caching: false")
