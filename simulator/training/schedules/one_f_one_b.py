"""1F1B (PipeDream-Flush, Narayanan et al. SC'21): after a warm-up of forwards, each stage
alternates one forward and one backward, so stage ``s`` holds at most ``p − s`` micro-batches.

With ``virtual_stages > 1`` this is Megatron-LM's interleaved 1F1B (the same schedule Megatron
runs when ``--num-layers-per-virtual-pipeline-stage`` is given): :class:`~.interleaved.Interleaved`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import SCHEDULES, ParallelismBase, PipelineSchedule, Schedule, Work, schedule_tag
from .interleaved import Interleaved


class OneFOneBConfig(ParallelismBase):
    """``schedule: 1f1b`` (the default)."""

    schedule: Literal["1f1b"] = schedule_tag("1f1b")
    virtual_stages: int = Field(default=1, ge=1, description="model chunks per pipeline stage; > 1 runs Megatron's "
                                                             "interleaved 1F1B (--num-layers-per-virtual-pipeline-"
                                                             "stage); default 1, Megatron-LM's: no interleaving")

    @property
    def chunks_per_stage(self) -> int:
        return self.virtual_stages


class OneFOneB(PipelineSchedule):
    @classmethod
    def build(cls, config: ParallelismBase, microbatches: int) -> Schedule:
        if config.chunks_per_stage > 1:
            return Interleaved.build(config, microbatches)
        return cls(config.pp, microbatches)

    def stage_order(self, stage: int) -> list[Work]:
        p, m = self.stages, self.microbatches
        warm = min(p - stage - 1, m)
        order: list[Work] = [("F", 0, i) for i in range(warm)]
        for i in range(m - warm):
            order += [("F", 0, warm + i), ("B", 0, i)]
        return order + [("B", 0, i) for i in range(m - warm, m)]

    def in_flight(self, stage: int) -> float:
        return float(min(self.stages - stage, self.microbatches))


SCHEDULES.register(OneFOneBConfig, OneFOneB)
