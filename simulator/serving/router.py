"""Routers: which replica gets a new request.

- ``round_robin``: in turn.
- ``least_outstanding``: fewest requests queued or running (ties: lowest index).
- ``power_of_two``: two replicas drawn at random (seeded), the less loaded one.
- ``kv_aware``: lowest KV-cache load, counting blocks in use and the prompts already queued.
"""

from __future__ import annotations

from operator import attrgetter

import numpy as np

from .replica import Replica

_OUTSTANDING = attrgetter("outstanding")


class Router:
    def __init__(self, policy: str, replicas: list[Replica], rng: np.random.Generator, n_requests: int) -> None:
        self.policy, self.replicas, self.rng = policy, replicas, rng
        self._next = 0
        self._pairs: np.ndarray | None = None
        self._pair_i = 0
        self._n = n_requests

    def _pair(self) -> tuple[int, int]:
        R = len(self.replicas)
        if self._pairs is None or self._pair_i >= len(self._pairs):
            k = max(min(self._n, 1 << 16), 1)
            a = self.rng.integers(R, size=k)
            b = self.rng.integers(R - 1, size=k)
            self._pairs = np.stack((a, b + (b >= a)), axis=1)   # two distinct replicas
            self._pair_i = 0
        a, b = self._pairs[self._pair_i]
        self._pair_i += 1
        return int(a), int(b)

    def choose(self, t: float) -> Replica:
        reps = self.replicas
        if len(reps) == 1:
            return reps[0]
        if self.policy == "round_robin":
            i = self._next
            self._next = (i + 1) % len(reps)
            return reps[i]
        if self.policy == "least_outstanding":
            return min(reps, key=_OUTSTANDING)
        if self.policy == "power_of_two":
            a, b = self._pair()
            ra, rb = reps[a], reps[b]
            return rb if rb.outstanding < ra.outstanding else ra
        if self.policy == "kv_aware":
            return min(reps, key=lambda r: r.kv_load(t))
        raise ValueError(f"unknown router {self.policy!r}")
