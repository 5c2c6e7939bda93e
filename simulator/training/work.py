"""What each pipeline stage computes and communicates in one iteration: the time of every pass of
every chunk, its gradient buckets, its optimizer step, and the FLOPs behind them.

A chunk's passes are built from the kernels of the parts it holds (:func:`_chunk_parts`), issued
by one host thread (so small layers become host-bound), plus what ZeRO exposes: ZeRO-3 gathers
each layer's parameters before its forward and backward, prefetched so only what outlasts the
layer's compute shows; ZeRO-2/3 reduce-scatter every micro-batch's gradients on the same links.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..costmodel.collectives import Group, collective_time, p2p_time, scalar_all_reduce
from ..costmodel.layout import Layout
from ..costmodel.moe_training import overlap_a2a
from ..costmodel.ops import Op, dispatched_time, memory_bound_time, overlap_slowdown
from ..costmodel.transformer import ACT_BYTES, PassOps, embedding_ops, head_ops, layer_ops
from ..hardware import HardwareProfile
from ..layers import LayerSpec
from ..memo import IdentityMemo, clear_all
from ..models import ModelSpec
from .layout import Chunk, stage_expert_params, stage_params
from .memory_plan import grad_bytes
from .schedules.base import Schedule
from .stack import GRAD_BUCKET_PARAMS, OPTIMIZER_BYTES_PER_PARAM
from .step import PassTime, StageSpec


@dataclass(frozen=True, slots=True)
class StageWork:
    stages: list[StageSpec]             # per pipeline stage
    p2p: float                          # one activation (or its gradient) sent to the next stage
    model_flops_per_gpu: float          # per iteration, 6·params·tokens style (no recompute)
    hardware_flops_per_gpu: float       # the same plus recomputed forwards


def _split(ops: tuple[Op, ...]) -> tuple[float, float, float, float]:
    """Seconds of compute and of tensor-, context- and expert-parallel collectives in ``ops``."""
    comp = tp = cp = ep = 0.0
    for o in ops:
        if not o.is_comm:
            comp += o.time
        elif o.kind == "tp_comm":
            tp += o.time
        elif o.kind == "cp_comm":
            cp += o.time
        elif o.kind == "ep_comm":
            ep += o.time
        else:
            raise ValueError(f"op {o.name} ({o.kind}) inside a pass: passes hold tp, cp and ep collectives only")
    return comp, tp, cp, ep


# (builder, part, profile, layout's kernel key, micro-batch, sequence) -> the part's kernels (simulator.memo):
# a plan search costs thousands of layouts that differ only in pipeline, data parallelism or ZeRO stage,
# whose layers run the same kernels
_KERNELS: IdentityMemo[PassOps] = IdentityMemo(16384)
# (pass kind, dispatch, a2a overlap, slowdown, the parts' kernel lists) -> their issued times
_ISSUED: IdentityMemo[tuple[float, float, float, float, float]] = IdentityMemo(16384)


def clear_memos() -> None:
    """Forget the memoised kernels, issued times, layer groups and partitions (a benchmark's cold run)."""
    clear_all()


def _kernels(build: Callable[[Any, HardwareProfile, Layout, int, int], PassOps], part: LayerSpec | ModelSpec,
             hw: HardwareProfile, lay: Layout, mb: int, seq: int) -> PassOps:
    """``build(part, hw, lay, mb, seq)``, once per distinct argument (see :attr:`Layout.kernel_key`)."""
    key = (build, id(part), id(hw), lay.kernel_key, mb, seq)
    ops = _KERNELS.get(key, (part, hw))
    return ops if ops is not None else _KERNELS.put(key, (part, hw), build(part, hw, lay, mb, seq))


def stage_work(model: ModelSpec, hw: HardwareProfile, lay: Layout, mb: int, seq: int, schedule: Schedule,
               stages: list[list[Chunk]], dispatch_s: float) -> StageWork:
    """The work of every stage of ``stages`` (from :func:`~.layout.partition`) under ``schedule``."""
    p, m = schedule.stages, schedule.microbatches
    kinds = {spec: _kernels(layer_ops, spec, hw, lay, mb, seq) for spec, _ in model.layer_groups()}  # each kind once
    emb = _kernels(embedding_ops, model, hw, lay, mb, seq)
    head = _kernels(head_ops, model, hw, lay, mb, seq)

    def _chunk_parts(ch: Chunk) -> list[tuple[PassOps, int]]:
        """The kernels of one chunk's pass: (ops, repeats) in the order they run."""
        parts = [(kinds[spec], n) for spec, n in ch.groups]
        if ch.embedding:
            parts.append((emb, 1))
        if ch.head:
            parts.append((head, 1))
        return parts

    # ZeRO-3 gathers each layer before every pass that needs it, unless a pipeline keeps the weights
    # gathered over the whole step (no reshard after the forward): then once per step (``param_gather``)
    per_pass_gathers = lay.zero_stage >= 3 and lay.shard_ranks > 1 and (lay.pp == 1 or lay.reshard_after_forward)

    def zero3_gather(spec: LayerSpec) -> float:
        """ZeRO-3: one layer's parameter all-gather over its shard group."""
        return collective_time(hw, "all_gather", spec.params() / lay.tp * 2, lay.shard_group)

    gathers = {spec: zero3_gather(spec) if per_pass_gathers else 0.0 for spec in kinds}
    gb = grad_bytes(lay)
    sharded_grads = lay.grads_sharded
    slowdown = overlap_slowdown(hw)

    def grad_sync(nbytes: float, experts: float = 0.0) -> float:
        """Reduce ``nbytes`` of gradients over the ranks holding the same weights: all-reduce (ZeRO-0),
        else reduce-scatter over the shard group, then (HSDP) all-reduce each shard over the replicas.
        ``experts`` bytes of routed experts' gradients go over the expert-data-parallel group instead
        (Megatron-Core's expert DDP buffers), which an EP group filling a node spreads one rank per node."""
        if lay.zero_stage == 0:
            t = collective_time(hw, "all_reduce", nbytes, lay.grad_group)
        else:
            t = collective_time(hw, "reduce_scatter", nbytes, lay.shard_group)
            if lay.shard_ranks < lay.grad_ranks:
                t += collective_time(hw, "all_reduce", nbytes / lay.shard_ranks, lay.replica_group)
        if experts:
            t += collective_time(hw, "all_reduce" if lay.zero_stage == 0 else "reduce_scatter", experts,
                                 lay.expert_grad_group)
        return t

    def accumulation(ch: Chunk) -> float:
        """Without gradient-accumulation fusion (Megatron's --no-gradient-accumulation-fusion, DeepSpeed,
        PyTorch autograd) each micro-batch's weight gradients land in a 16-bit buffer and a separate
        pass adds them into the accumulator: read 2 bytes, read and write g (issue 17's 2 + 2·g per
        parameter per micro-batch), over the gradients this rank holds (1/dp of them when sharded)."""
        held = ch.params / (lay.shard_ranks if sharded_grads else 1)
        return memory_bound_time(hw, held * (2 + 2 * gb))

    def kernels(ops: PassOps, kind: str) -> tuple[Op, ...]:
        """The kernels of one part in a pass: F forward; BW the whole backward (recompute first); a
        zero-bubble schedule splits it into B (recompute and input gradients) and W (weight gradients)."""
        if kind == "F":
            return ops.fwd
        if kind == "BW":
            return ops.recompute + ops.bwd
        if kind == "B":
            return ops.recompute + ops.input_grads()
        return ops.weight_grads()

    def issued(parts: list[tuple[PassOps, int]], kind: str) -> tuple[float, float, float, float, float]:
        """Compute, TP, CP and EP seconds of the parts' kernels in a ``kind`` pass, and their wall time
        as one host thread issues them: the same for every layout sharing the kernels (memoised)."""
        key = (kind, dispatch_s, lay.moe_a2a_overlap, slowdown, tuple((id(ops), n) for ops, n in parts))
        refs = tuple(ops for ops, _ in parts)
        hit = _ISSUED.get(key, refs)
        if hit is not None:
            return hit
        blocks = [(kernels(ops, kind), n) for ops, n in parts]
        if lay.moe_a2a_overlap:
            blocks = [(overlap_a2a(ops, slowdown), n) for ops, n in blocks]
        comp = tp = cp = ep = 0.0
        for seq_ops, n in blocks:
            c, t, x, e = _split(seq_ops)
            comp += c * n
            tp += t * n
            cp += x * n
            ep += e * n
        return _ISSUED.put(key, refs, (comp, tp, cp, ep, dispatched_time(blocks, dispatch_s)))

    def pass_time(ch: Chunk, kind: str) -> PassTime:
        weights = kind in ("BW", "W")          # the pass that produces this micro-batch's weight gradients
        comp, tp, cp, ep, wall = issued(_chunk_parts(ch), kind)
        if weights and not lay.grad_accumulation_fusion:
            comp += accumulation(ch)           # the separate pass adding this micro-batch's gradients
        layers = max(ch.layers, 1)
        # layers of several sizes: the mean gather per layer over the chunk (the backward's gather
        # before its input gradients, when the weights were freed after the forward)
        zero3_ag = (sum((gathers[spec] * n for spec, n in ch.groups), 0.0) / layers
                    if kind == "F" or (kind in ("BW", "B") and lay.reshard_after_forward) else 0.0)
        rs = grad_sync((ch.params - ch.expert_params) * gb, ch.expert_params * gb) if weights and sharded_grads else 0.0
        if zero3_ag or rs:
            if rs and not lay.overlap_grad_reduce:
                exposed = rs + max(0.0, zero3_ag - comp / layers) * layers
            else:
                exposed = max(0.0, zero3_ag + rs / layers - comp / layers) * layers
            hidden = zero3_ag * layers + rs - exposed          # overlapped with compute, which slows
            exposed += hidden * slowdown
            return PassTime.of(comp, tp, wall, dp=exposed, cp_comm=cp, ep_comm=ep)
        return PassTime.of(comp, tp, wall, cp_comm=cp, ep_comm=ep)

    def param_gather(params: float, fwd: list[PassTime], *, layers: int = 0, experts: float = 0.0) -> float:
        """What a sharded optimizer's all-gather of the updated 16-bit parameters costs the step: all of
        it after the optimizer, or, overlapped (Megatron-Core ``--overlap-param-gather``), its first
        bucket (dispatched at the next ``zero_grad``) plus what the rest (each bucket dispatched by the
        forward pre-hook of the one before) outlasts the first forward of every chunk, the hidden part
        slowing that compute (Megatron-Core ``distrib_optimizer.py`` ``step_with_ready_grads``). FSDP
        keeping a pipeline stage's weights gathered over the step (``layers``: one unit per layer) is
        the overlapped case with a layer per bucket: each unit's gather prefetched under the one before.
        ``experts``: routed-expert parameters, gathered over the expert-data-parallel group."""
        def gather(share: float) -> float:
            return (collective_time(hw, "all_gather", params * 2 * share, lay.shard_group)
                    + collective_time(hw, "all_gather", experts * 2 * share, lay.expert_grad_group))

        if not (lay.overlap_param_gather or layers):
            return gather(1.0)
        nb = layers or max(1, math.ceil((params + experts) / GRAD_BUCKET_PARAMS))
        bucket = gather(1 / nb)
        rest = bucket * (nb - 1)
        window = sum((pt.compute for pt in fwd), 0.0)
        exposed = max(0.0, rest - window)
        return bucket + exposed + (rest - exposed) * slowdown

    # a schedule holding each layer twice (dualpipe) sums the two copies' gradients, between the two
    # stages holding them (deepseek-ai/DualPipe examples/example_dualpipe.py), before the dp reduction
    copies = schedule.weight_copies
    copy_pair = Group(2, 2 if lay.pp_same_node else 1)
    specs: list[StageSpec] = []
    for chunks in stages:
        buckets = []
        if (lay.grad_ranks > 1 or lay.expert_grad_ranks > 1 or copies > 1) and not sharded_grads:
            for ch in chunks:
                nb = max(1, math.ceil(ch.params / GRAD_BUCKET_PARAMS))
                t = grad_sync((ch.params - ch.expert_params) * gb / nb, ch.expert_params * gb / nb)
                if copies > 1:     # the stage holding the other copy: each adds the other's gradient
                    t += collective_time(hw, "all_reduce", ch.params * gb / nb, copy_pair)
                buckets.append([t] * nb)
        params_s, experts_s = stage_params(chunks), stage_expert_params(chunks)
        opt_params = ((params_s - experts_s) / lay.shard_ranks + experts_s / lay.expert_grad_ranks
                      if lay.zero_stage >= 1 else params_s)
        opt_bytes = OPTIMIZER_BYTES_PER_PARAM.get(lay.precision, OPTIMIZER_BYTES_PER_PARAM["bf16"])
        optimizer = memory_bound_time(hw, opt_params * opt_bytes)
        if hw.efficiency.optimizer_us_per_tensor:
            tensors = sum(spec.tensors() * n for ch in chunks for spec, n in ch.groups)
            tensors += sum((2 if ch.embedding else 0) + (2 if ch.head else 0) for ch in chunks)  # final norm, head
            optimizer += tensors * hw.efficiency.optimizer_us_per_tensor * 1e-6
        # once per step, on every rank: the gradient norm for clipping (and, in fp16, the overflow
        # check) all-reduced over every rank holding a part of the model, as Megatron's optimizer
        # does over its model-parallel group and, with a sharded optimizer, its data-parallel one too
        # (megatron/core/optimizer/clip_grads.py get_grad_norm_fp32); the tied embedding's gradient
        # all-reduced between the first and last stage (finalize_model_grads _allreduce_word_embedding_grads)
        world = Group(lay.gpus, min(lay.gpus, lay.gpus_per_node))
        optimizer += scalar_all_reduce(hw, world) * (2 if lay.precision == "fp16" else 1)
        if model.tie_embeddings and p > 1 and model.vocab and any(ch.embedding or ch.head for ch in chunks):
            optimizer += collective_time(hw, "all_reduce", model.vocab * model.hidden / lay.tp * gb,
                                         Group(2, 1 if not lay.pp_same_node else 2))
        fwd = [pass_time(ch, "F") for ch in chunks]
        post = 0.0
        if lay.zero_stage in (1, 2) and (lay.shard_ranks > 1 or lay.expert_grad_ranks > 1):
            post = param_gather(params_s - experts_s, fwd, experts=experts_s)
        elif lay.zero_stage == 3 and lay.shard_ranks > 1 and not per_pass_gathers:
            # FSDP under a pipeline, weights kept gathered: each layer (an FSDP unit) once per step, the
            # next one prefetched under the forward of the one before
            post = param_gather(params_s, fwd, layers=max(1, sum(ch.layers for ch in chunks)))
        split = "W" in schedule.passes
        bwd = [pass_time(ch, "B" if split else "BW") for ch in chunks]
        wgt = [pass_time(ch, "W") for ch in chunks] if split else []
        specs.append(StageSpec(fwd, bwd, buckets, optimizer, post, overlap_grad=lay.overlap_grad_reduce,
                               overlap_slowdown=slowdown, wgt=wgt))

    act_bytes = mb * seq / lay.cp * model.hidden * ACT_BYTES / (lay.tp if lay.sequence_parallel else 1)
    p2p = p2p_time(hw, act_bytes / (1 if lay.sequence_parallel else lay.tp), same_node=lay.pp_same_node) if p > 1 else 0.0
    groups = model.layer_groups()
    fwd_flops = (sum((sum(o.flops for o in kinds[spec].fwd) * n for spec, n in groups), 0.0) / p
                 + sum(o.flops for o in head.fwd) / p)
    rec_flops = (sum((sum(o.flops for o in kinds[spec].recompute) * n for spec, n in groups), 0.0) / p
                 + sum(o.flops for o in head.recompute) / p)
    model_flops = 3 * fwd_flops * m
    return StageWork(specs, p2p, model_flops, model_flops + rec_flops * m)
