"""Megatron-LM's interleaved 1F1B (Narayanan et al. SC'21, section 2.2): each stage holds ``v``
model chunks (virtual stages ``c·p + s``), micro-batches move through the chunks in groups of
``p``, and the bubble shrinks ``v``-fold to ``(p − 1)/(v·m)`` at the price of ``v`` times the
point-to-point traffic. The first stage holds ``p`` micro-batches, each ``1 + (p − 1)/(p·v)``
of a plain 1F1B micro-batch's activations (Korthikanti et al. 2022).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import SCHEDULES, ParallelismBase, PipelineSchedule, Work, schedule_tag


class InterleavedConfig(ParallelismBase):
    """``schedule: interleaved``: the name of 1F1B with ``virtual_stages >= 2``."""

    schedule: Literal["interleaved"] = schedule_tag("interleaved")
    virtual_stages: int = Field(ge=2, description="model chunks per pipeline stage (Megatron "
                                                  "--num-layers-per-virtual-pipeline-stage); no default, >= 2")

    @property
    def chunks_per_stage(self) -> int:
        return self.virtual_stages


class Interleaved(PipelineSchedule):
    def stage_order(self, stage: int) -> list[Work]:
        p, m, v = self.stages, self.microbatches, self.chunks
        total = m * v

        def fwd(k: int) -> Work:
            return "F", (k // p) % v, (k // (p * v)) * p + k % p

        def bwd(k: int) -> Work:
            return "B", v - 1 - (k // p) % v, (k // (p * v)) * p + k % p

        warm = min((p - stage - 1) * 2 + (v - 1) * p, total)
        order = [fwd(k) for k in range(warm)]
        for i in range(total - warm):
            order += [fwd(warm + i), bwd(i)]
        return order + [bwd(k) for k in range(total - warm, total)]

    def in_flight(self, stage: int) -> float:
        p, v = self.stages, self.chunks
        return min(p - stage, self.microbatches) * (1 + (p - 1) / (p * v))

    def problems(self) -> list[str]:
        p, m, v = self.stages, self.microbatches, self.chunks
        out = []
        if p < 2:
            out.append(f"virtual_stages={v} (interleaved 1F1B) needs pp >= 2 (got pp={p})")
        elif m % p:
            out.append(f"interleaved schedule needs the {m} micro-batches per iteration (global_batch / "
                       f"(micro_batch·dp)) to be a multiple of pp={p}")
        return out


SCHEDULES.register(InterleavedConfig, Interleaved)
