"""Zero-bubble pipeline, ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024).

The backward splits into B, the input gradients the previous stage waits for, and W, the weight
gradients nobody waits for. Putting every B ahead of its W shortens the critical path of the
pipeline's drain, and the W passes fill the waits that 1F1B leaves idle. ZB-H1 keeps 1F1B's peak
memory: no stage holds more than the ``p`` micro-batches 1F1B's first stage holds (a micro-batch
counts from its forward until its W has run; before its B, at most 1F1B's ``p − s``), and cuts the
bubble towards the paper's ``(p − 1)(T_F + T_B − T_W)`` from 1F1B's ``(p − 1)(T_F + T_B + T_W)``
(T_B here the input gradients alone). ZB-H2, V-shaped and DualPipe schedules trade memory or
duplicated weights for the rest and are not modelled.

The order of each stage comes from a list schedule of the whole pipeline on the stages' own pass
times (:meth:`ZeroBubbleH1.fit`, called once the stage work is known; the paper's automatic
scheduler works from profiled times, its handcrafted ZB-H1 assumes T_F = T_B = T_W): whenever a
stage is free it runs, in this priority, a B whose gradient has arrived, a F whose input has
arrived while the memory bounds above allow it, else a pending W. The stage whose next pass can
start first commits it, so the orders are a valid topological order of the dependencies and the
step engine runs them without deadlock. On equal times this lands between the handcrafted ZB-H1
and 1F1B (p = 8: a bubble of 9 passes against the paper's 7 and 1F1B's 21; tests/test_schedules.py).
The authors' implementation is a Megatron-LM fork (sail-sg/zero-bubble-pipeline-parallelism);
torch.distributed.pipelining ships the zero-bubble family too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

from .base import SCHEDULES, ParallelismBase, PipelineSchedule, Work, schedule_tag


class ZeroBubbleConfig(ParallelismBase):
    """``schedule: zb-h1``: one chunk per stage, 1F1B's memory, the weight gradients deferred."""

    schedule: Literal["zb-h1"] = schedule_tag("zb-h1")


class ZeroBubbleH1(PipelineSchedule):
    passes: ClassVar[tuple[str, ...]] = ("F", "B", "W")

    def __init__(self, stages: int, microbatches: int, chunks: int = 1) -> None:
        super().__init__(stages, microbatches, chunks)
        self._all: list[list[Work]] | None = None

    def depends_on(self, kind: str, vs: int, microbatch: int) -> Work | None:
        if kind == "W":
            return ("B", vs, microbatch)         # its own input gradient's pass, on the same stage
        return super().depends_on(kind, vs, microbatch)

    def grads_ready(self, stage: int, chunk: int) -> tuple[str, int]:
        last = [i for kind, c, i in self.order(stage) if kind == "W" and c == chunk][-1]
        return "W", last

    def in_flight(self, stage: int) -> float:
        # the list schedule's bound: at most p micro-batches from a forward to its W (1F1B's first stage)
        return float(min(self.stages, self.microbatches))

    def stage_order(self, stage: int) -> list[Work]:
        if self._all is None:
            self._all = self._list_schedule([(1.0, 1.0, 1.0)] * self.stages, 0.0)
        return self._all[stage]

    def fit(self, times: Sequence[tuple[float, float, float]], link: float) -> None:
        """Build the orders from the stages' own (F, B, W) pass times and the point-to-point time of a
        neighbour's output, as the paper's scheduler does from profiled times (the handcrafted ZB-H1
        assumes them equal, which a real model's split is not)."""
        self._all = self._list_schedule(list(times), link)
        self._orders.clear()

    def _list_schedule(self, times: list[tuple[float, float, float]], link: float) -> list[list[Work]]:
        """Every stage's order from a list schedule of the whole pipeline (module docstring): the
        stage whose next pass can start first commits it, so knowledge only grows."""
        p, m, inf = self.stages, self.microbatches, math.inf
        orders: list[list[Work]] = [[] for _ in range(p)]
        f_end = [[inf] * m for _ in range(p)]
        b_end = [[inf] * m for _ in range(p)]
        free = [0.0] * p
        nf, nb, nw = [0] * p, [0] * p, [0] * p
        left = 3 * m * p
        while left:
            best: tuple[float, int, str] = (inf, p, "")
            for s in range(p):
                if nw[s] == m:
                    continue
                t0 = free[s]
                b_at = inf
                if nb[s] < nf[s]:
                    b_at = b_end[s + 1][nb[s]] + link if s + 1 < p else f_end[s][nb[s]]
                f_at = inf
                if nf[s] < m and nf[s] - nw[s] < p and nf[s] - nb[s] < p - s:
                    f_at = f_end[s - 1][nf[s]] + link if s > 0 else 0.0
                if b_at <= t0:
                    cand = (t0, s, "B")
                elif f_at <= t0:
                    cand = (t0, s, "F")
                elif nw[s] < nb[s]:
                    cand = (t0, s, "W")
                elif min(b_at, f_at) < inf:
                    cand = (b_at, s, "B") if b_at <= f_at else (f_at, s, "F")
                else:
                    continue
                best = min(best, cand)
            start, s, kind = best
            tf, tb, tw = times[s]
            if kind == "B":
                i = nb[s]
                b_end[s][i] = free[s] = start + tb
                nb[s] += 1
            elif kind == "F":
                i = nf[s]
                f_end[s][i] = free[s] = start + tf
                nf[s] += 1
            else:
                i = nw[s]
                free[s] = start + tw
                nw[s] += 1
            orders[s].append((kind, 0, i))
            left -= 1
        return orders

    def problems(self) -> list[str]:
        return [] if self.chunks == 1 else [f"zb-h1 runs one chunk per stage (got virtual_stages={self.chunks})"]


SCHEDULES.register(ZeroBubbleConfig, ZeroBubbleH1)
