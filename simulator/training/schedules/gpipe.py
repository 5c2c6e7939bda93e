"""GPipe (Huang et al. 2019): every micro-batch's forward, then every backward.

Simple and bubble-heavy (``(p − 1)/m`` of the ideal step idle, like 1F1B) but it keeps every
micro-batch's activations until its backward, ``m`` in flight on every stage. With one stage
there is no pipeline: frameworks run each micro-batch's forward and backward in turn
(gradient accumulation, Megatron-LM's ``forward_backward_no_pipelining``), one in flight.
"""

from __future__ import annotations

from typing import Literal

from .base import SCHEDULES, ParallelismBase, PipelineSchedule, Work, schedule_tag


class GPipeConfig(ParallelismBase):
    """``schedule: gpipe``: no interleaving, so no ``virtual_stages``."""

    schedule: Literal["gpipe"] = schedule_tag("gpipe")


class GPipe(PipelineSchedule):
    def stage_order(self, stage: int) -> list[Work]:
        m = self.microbatches
        if self.stages == 1:
            return [w for i in range(m) for w in (("F", 0, i), ("B", 0, i))]
        return [("F", 0, i) for i in range(m)] + [("B", 0, i) for i in range(m)]

    def in_flight(self, stage: int) -> float:
        return float(self.microbatches) if self.stages > 1 else 1.0


SCHEDULES.register(GPipeConfig, GPipe)
