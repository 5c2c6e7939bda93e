"""Routers: which replica gets a new request.

- ``round_robin``: in turn.
- ``least_outstanding``: fewest requests queued or running (ties: in turn).
- ``power_of_two``: two replicas drawn at random (seeded), the less loaded one.
- ``kv_aware``: lowest KV-cache load, counting blocks in use and the prompts already queued.
- ``prefix_aware``: the replica holding the longest cached prefix of the prompt, within a load bound
  (:mod:`.prefix_router`).
"""

from __future__ import annotations

from operator import attrgetter

import numpy as np

from .replica import Replica

_OUTSTANDING = attrgetter("outstanding")


class Router:
    def __init__(self, policy: str, replicas: list[Replica], rng: np.random.Generator, *,
                 cache_threshold: float = 0.5, balance_abs: int = 32, balance_rel: float = 1.1) -> None:
        """``replicas`` is the live list of routable replicas (it grows and shrinks with scaling); the
        thresholds are the prefix-aware policy's (:mod:`.prefix_router`)."""
        self.policy, self.replicas, self.rng = policy, replicas, rng
        self.cache_threshold, self.balance_abs, self.balance_rel = cache_threshold, balance_abs, balance_rel
        self._next = 0
        self._u: np.ndarray = np.empty((0, 2))
        self._i = 0

    def _pair(self, R: int) -> tuple[int, int]:
        if self._i >= len(self._u):
            self._u = self.rng.random((4096, 2))
            self._i = 0
        u, v = self._u[self._i]
        self._i += 1
        a = int(u * R)
        b = int(v * (R - 1))
        return a, b + (b >= a)      # two distinct replicas

    def choose(self, t: float, r: int = -1) -> Replica:
        """The replica for request ``r`` arriving at ``t``."""
        reps = self.replicas
        if len(reps) == 1:
            return reps[0]
        if self.policy == "round_robin":
            i = self._next % len(reps)
            self._next = i + 1
            return reps[i]
        if self.policy == "least_outstanding":
            # ties go round the replicas (as load balancers do), not always to the first one
            i = self._next % len(reps)
            self._next = i + 1
            return min(reps[i:] + reps[:i], key=_OUTSTANDING) if i else min(reps, key=_OUTSTANDING)
        if self.policy == "power_of_two":
            a, b = self._pair(len(reps))
            ra, rb = reps[a], reps[b]
            return rb if rb.outstanding < ra.outstanding else ra
        if self.policy == "kv_aware":
            return min(reps, key=lambda rep: rep.kv_load(t))
        if self.policy == "prefix_aware":
            from .prefix_router import cache_aware

            return cache_aware(self, reps, r, t)
        raise ValueError(f"unknown router {self.policy!r}")
