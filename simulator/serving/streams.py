"""Every random stream of a serving run, derived once from the scenario seed.

``SeedSequence(seed)`` is spawned into numbered children, one per random quantity, so changing one
quantity's draws (more requests, another router, faults switched on) leaves the others as they
were, and no two quantities share a stream:

- children 0-3: the workload's arrivals, prompt lengths, output lengths and request classes
  (:func:`simulator.serving.workload.generate` spawns these four itself);
- then five per service of the request path, in path order (a single service is service 0):
  its router, its faults (failures and spot draws), its own prompt and output lengths (a stage
  that overrides the workload's), and its result-cache hits.

Service ``k`` thus never sees service ``j``'s draws: in an embed → rerank → LLM path, rerank's and
the LLM's replica failures are independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORKLOAD_STREAMS = 4       # arrivals, prompt, output, classes
PER_SERVICE = 5


@dataclass(frozen=True)
class ServiceStreams:
    """One service's random streams."""

    router: np.random.Generator
    faults: np.random.Generator
    prompt: np.random.Generator
    output: np.random.Generator
    cache: np.random.Generator


def service_streams(seed: int, services: int) -> list[ServiceStreams]:
    """The streams of each of the ``services`` services of a path with scenario seed ``seed``."""
    children = np.random.SeedSequence(seed).spawn(WORKLOAD_STREAMS + PER_SERVICE * services)
    out = []
    for k in range(services):
        first = WORKLOAD_STREAMS + PER_SERVICE * k
        router, faults, prompt, output, cache = (np.random.default_rng(s) for s in children[first:first + PER_SERVICE])
        out.append(ServiceStreams(router, faults, prompt, output, cache))
    return out
