"""Memory per GPU of one iteration, stage by stage: model states of the parameters the stage holds
(bytes per parameter by ``training.precision``, ``simulator.precision.training_state_bytes``; what
ZeRO shards at the peak is the layout's answer: optimizer states from stage 1, gradients from stage 2
unless a pipeline accumulates them, weights in stage 3 when it reshards after the forward), the
activations of the micro-batches its schedule keeps in flight, and buffers.

Activations per layer and micro-batch follow Korthikanti et al. 2022 (``costmodel.memory``); how
many micro-batches are in flight on a stage is the schedule's answer (1F1B: ``p − s``; interleaved
1F1B: that times ``1 + (p−1)/(p·v)``; GPipe: all ``m``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..costmodel.layout import Layout
from ..costmodel.memory import GIB, MemoryBreakdown, activation_bytes_per_layer, model_state_bytes
from ..models import ModelSpec
from ..precision import training_state_bytes
from .layout import Chunk, stage_expert_params, stage_params
from .schedules.base import Schedule
from .stack import GRAD_BUCKET_PARAMS, RUNTIME_RESERVE_GIB


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    stages: list[MemoryBreakdown]       # per pipeline stage

    @property
    def worst(self) -> MemoryBreakdown:
        """The most loaded stage (the first of equals): what every GPU must fit."""
        worst = self.stages[0]
        for br in self.stages[1:]:
            if br.total > worst.total:
                worst = br
        return worst


def grad_bytes(lay: Layout) -> float:
    """Bytes per gradient element: fp32 main gradients (Megatron's default) or 16-bit."""
    return 4.0 if lay.grad_precision == "fp32" else 2.0


def memory_plan(model: ModelSpec, lay: Layout, micro_batch: int, seq: int, schedule: Schedule,
                stages: list[list[Chunk]]) -> MemoryPlan:
    """Bytes per GPU on each pipeline stage of ``stages`` (from :func:`~.layout.partition`)."""
    gb = grad_bytes(lay)
    wb, ob = training_state_bytes(lay.precision)
    per_layer = {spec: activation_bytes_per_layer(spec, lay, micro_batch, seq) for spec, _ in model.layer_groups()}
    out = []
    for s, chunks in enumerate(stages):
        params, experts = stage_params(chunks), stage_expert_params(chunks)
        # ZeRO shards the dense parameters' states over the shard group, the routed experts' over the
        # expert-data-parallel group (Megatron-Core's distributed optimizer keeps a buffer of each)
        shards = (params - experts) / lay.shard_ranks + experts / lay.expert_grad_ranks
        w, g, o = model_state_bytes(params, zero_stage=0, dp=1, weight_bytes=wb, grad_bytes=gb, optimizer_bytes=ob)
        o *= shards / params if lay.zero_stage >= 1 and params else 1
        g *= shards / params if lay.grads_sharded and params else 1
        w *= shards / params if lay.weights_sharded and params else 1
        a = sum((per_layer[spec] * n for ch in chunks for spec, n in ch.groups), 0.0) * schedule.in_flight(s)
        buf = RUNTIME_RESERVE_GIB * GIB
        if any(ch.head for ch in chunks):
            vocab = model.vocab or model.num_classes
            # fp32 logits and their gradient; a fused loss keeps the 16-bit logits and their gradient
            buf += micro_batch * seq / lay.cp * vocab / lay.tp * (2 * 2 if lay.fused_cross_entropy else 4 * 2)
        if lay.grad_ranks > 1:
            buf += 2 * GRAD_BUCKET_PARAMS * gb
        out.append(MemoryBreakdown(w, g, o, a, buf))
    return MemoryPlan(out)
