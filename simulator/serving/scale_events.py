"""Scale events of an autoscaled service and whether it oscillates (flaps), read from the result's
scaling frame (replicas requested per time bin).

A scale event is a bin where the replicas requested change; a flap is a change in the opposite
direction of the previous change within ``FLAP_WINDOW_S`` of it (scaled up, then down again within
ten minutes, or the reverse). A service oscillates when it flaps at least ``FLAP_COUNT`` times: a
day of traffic rises and falls once, so a well-set autoscaler reverses direction about twice a day,
each time after a long run one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

FLAP_WINDOW_S = 600.0
"""a reversal within 10 minutes of the previous change counts as a flap (capsim's rule: twice the
Kubernetes HPA's 300 s scale-down stabilization window)"""
FLAP_COUNT = 2
"""flaps from which a run is flagged as oscillating (capsim's rule)"""


@dataclass(frozen=True, slots=True)
class ScaleActivity:
    events: int
    """bins where the replicas requested changed"""
    ups: int
    downs: int
    flaps: int
    oscillating: bool


def scale_activity(scaling: Mapping[str, Any] | Any) -> ScaleActivity:
    """The scale events, flaps and the oscillation flag of a ``ServingResult.scaling`` frame, or of
    the arrays it is built from (any mapping with ``t_s`` and ``replicas_requested`` columns)."""
    req = np.asarray(scaling["replicas_requested"], dtype=float)
    t = np.asarray(scaling["t_s"], dtype=float)
    if not len(req):
        return ScaleActivity(0, 0, 0, 0, False)
    d = np.diff(req)
    moves = np.flatnonzero(np.abs(d) > 1e-9)
    ups = int(np.sum(d[moves] > 0))
    last_dir, last_t, flaps = 0, -np.inf, 0
    for i in moves:
        direction = 1 if d[i] > 0 else -1
        ti = float(t[i + 1])
        if last_dir and direction != last_dir and ti - last_t <= FLAP_WINDOW_S:
            flaps += 1
        last_dir, last_t = direction, ti
    return ScaleActivity(len(moves), ups, len(moves) - ups, flaps, flaps >= FLAP_COUNT)
