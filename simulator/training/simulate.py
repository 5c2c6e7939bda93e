"""``simulate_training``: from a scenario to one step, memory, and the whole run's time and cost."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from ..catalog import get_model
from ..costmodel.collectives import collective_time, p2p_time
from ..costmodel.layout import Layout
from ..costmodel.memory import GIB, MemoryBreakdown, activation_bytes_per_layer, model_state_bytes
from ..costmodel.ops import Op, dispatched_time, memory_bound_time, overlap_slowdown
from ..costmodel.transformer import ACT_BYTES, PassOps, embedding_ops, grouped_layer_ops, head_ops
from ..errors import CapsimError
from ..hardware import HardwareProfile, get_profile
from ..layers import LayerSpec
from ..models import ModelSpec
from ..scenario import TrainingScenario
from .job import JobOutcome, simulate_job
from .layout import resolve_layout, stage_layers
from .result import TrainingResult
from .stack import DISPATCH_US, GRAD_BUCKET_PARAMS, OPTIMIZER_BYTES_PER_PARAM, RUNTIME_RESERVE_GIB
from .step import PassTime, StageSpec, StepTrace, simulate_step


def _split(ops: tuple[Op, ...]) -> tuple[float, float]:
    comp = sum(o.time for o in ops if not o.is_comm)
    comm = sum(o.time for o in ops if o.is_comm)
    return comp, comm


@dataclass(frozen=True, slots=True)
class StepModel:
    """Per-stage work of one iteration and the memory it needs."""

    stages: list[StageSpec]
    microbatches: int
    p2p: float
    memory: MemoryBreakdown
    model_flops_per_gpu: float
    hardware_flops_per_gpu: float
    stage_params: list[float]


def build_step(model: ModelSpec, hw: HardwareProfile, lay: Layout, mb: int, sc: TrainingScenario) -> StepModel:
    tr = sc.training
    seq = tr.seq_len
    m = tr.global_batch // (mb * lay.dp)
    p, v = lay.pp, lay.virtual_stages
    if v > 1 and m % p:
        raise CapsimError(f"interleaved schedule needs the {m} micro-batches per iteration (global_batch / "
                          f"(micro_batch·dp)) to be a multiple of pp={p}")
    dispatch_us = tr.dispatch_us if tr.dispatch_us is not None else hw.efficiency.dispatch_us
    dispatch = (dispatch_us if dispatch_us is not None else DISPATCH_US) * 1e-6
    emb = embedding_ops(model, hw, lay, mb, seq)
    head = head_ops(model, hw, lay, mb, seq)
    per_vs = stage_layers(model.layers, p * v)
    # each kind of layer is costed once; a virtual stage is [(spec, PassOps, count), ...] over its layers
    memo: dict[LayerSpec, PassOps] = {}
    bounds = [0, *itertools.accumulate(per_vs)]
    vs_layers = [grouped_layer_ops(model, hw, lay, mb, seq, bounds[i], bounds[i + 1], memo) for i in range(p * v)]

    # ZeRO-3: each layer's parameters are all-gathered before its forward and again before its
    # backward, prefetched so only what outlasts the layer's compute is exposed. ZeRO-2/3 keep only a
    # shard of the gradients, so every micro-batch's backward reduce-scatters its layers' gradients,
    # on the same data-parallel links as the backward all-gathers.
    def zero3_ag(spec: LayerSpec) -> float:
        if lay.zero_stage < 3:
            return 0.0
        return collective_time(hw, "all_gather", spec.params() / lay.tp * 2, lay.dp_group)

    grad_bytes = 4.0 if lay.grad_precision == "fp32" else 2.0
    sharded_grads = lay.zero_stage >= 2 and lay.dp > 1
    slowdown = overlap_slowdown(hw)

    def pass_time(chunks: list[tuple[PassOps, int]], backward: bool, grad_params: float = 0.0,
                  layer_groups: tuple[tuple[LayerSpec, PassOps, int], ...] = ()) -> PassTime:
        blocks = [((ops.recompute + ops.bwd) if backward else ops.fwd, n) for ops, n in chunks]
        comp = comm = 0.0
        for seq_ops, n in blocks:
            c, k = _split(seq_ops)
            comp += c * n
            comm += k * n
        wall = dispatched_time(blocks, dispatch)
        layers = max(sum(n for _, _, n in layer_groups), 1)
        ags = {zero3_ag(spec) for spec, _, _ in layer_groups}
        if len(ags) > 1:       # layers of several sizes: the mean gather per layer over the chunk
            ag = sum(zero3_ag(spec) * n for spec, _, n in layer_groups) / layers
        else:
            ag = ags.pop() if ags else 0.0
        rs = (collective_time(hw, "reduce_scatter", grad_params * grad_bytes, lay.dp_group)
              if backward and sharded_grads else 0.0)
        if ag or rs:
            if rs and not lay.overlap_grad_reduce:
                exposed = rs + max(0.0, ag - comp / layers) * layers
            else:
                exposed = max(0.0, ag + rs / layers - comp / layers) * layers
            hidden = ag * layers + rs - exposed          # overlapped with compute, which slows
            exposed += hidden * slowdown
            return PassTime.of(comp, comm, wall, dp=exposed)
        return PassTime.of(comp, comm, wall)

    emb_params = model.embedding_params() / lay.tp
    head_params = model.head_params() / lay.tp + (model.vocab * model.hidden / lay.tp
                                                  if model.tie_embeddings and p > 1 and model.vocab else 0)
    def layer_params(spec: LayerSpec) -> float:
        """Parameters of one layer on this rank: 1/tp of it, and 1/ep of its routed experts."""
        n = spec.params() / lay.tp
        if spec.mlp.is_moe and lay.ep > 1:
            n -= spec.routed_params() * (1 - 1 / lay.ep) / lay.tp
        return n

    stages: list[StageSpec] = []
    stage_params: list[float] = []
    for s in range(p):
        fwd, bwd, buckets = [], [], []
        params_s = 0.0
        for c in range(v):
            vs = c * p + s
            groups = tuple(vs_layers[vs])
            parts = [(ops, n) for _, ops, n in groups]
            cparams = sum((layer_params(spec) * n for spec, _, n in groups), 0.0)
            if vs == 0:
                parts.append((emb, 1))
                cparams += emb_params
            if vs == p * v - 1:
                parts.append((head, 1))
                cparams += head_params
            fwd.append(pass_time(parts, False, layer_groups=groups))
            bwd.append(pass_time(parts, True, cparams, groups))
            params_s += cparams
            if lay.dp > 1 and not sharded_grads:
                nb = max(1, math.ceil(cparams / GRAD_BUCKET_PARAMS))
                kind = "reduce_scatter" if lay.zero_stage >= 1 else "all_reduce"
                t = collective_time(hw, kind, cparams * grad_bytes / nb, lay.dp_group)
                buckets.append([t] * nb)
        opt_params = params_s / (lay.dp if lay.zero_stage >= 1 else 1)
        opt_bytes = OPTIMIZER_BYTES_PER_PARAM.get(lay.precision, OPTIMIZER_BYTES_PER_PARAM["bf16"])
        optimizer = memory_bound_time(hw, opt_params * opt_bytes)
        if hw.efficiency.optimizer_us_per_tensor:
            tensors = sum(spec.tensors() * n for c in range(v) for spec, _, n in vs_layers[c * p + s])
            tensors += (2 if s == 0 else 0) + (2 if s == p - 1 else 0)     # embeddings; final norm and head
            optimizer += tensors * hw.efficiency.optimizer_us_per_tensor * 1e-6
        post = (collective_time(hw, "all_gather", params_s * 2, lay.dp_group)
                if lay.zero_stage in (1, 2) and lay.dp > 1 else 0.0)
        stages.append(StageSpec(fwd, bwd, buckets, optimizer, post,
                                overlap_grad=lay.overlap_grad_reduce, overlap_slowdown=slowdown))
        stage_params.append(params_s)

    act_bytes = mb * seq / lay.cp * model.hidden * ACT_BYTES / (lay.tp if lay.sequence_parallel else 1)
    p2p = p2p_time(hw, act_bytes / (1 if lay.sequence_parallel else lay.tp), same_node=lay.pp_same_node) if p > 1 else 0.0

    # memory: the most loaded stage (first holds the most micro-batches in flight)
    worst = None
    for s in range(p):
        w, g, o = model_state_bytes(stage_params[s], zero_stage=lay.zero_stage, dp=lay.dp, grad_bytes=grad_bytes)
        if p == 1:
            in_flight = 1.0
        elif sc.parallelism.schedule == "gpipe":
            in_flight = float(m)                      # GPipe stores every micro-batch
        else:                                         # 1F1B: stage s holds p - s in flight
            in_flight = min(p - s, m) * (1 + (p - 1) / (p * v) if v > 1 else 1.0)
        on_stage: dict[LayerSpec, int] = {}
        for c in range(v):
            for spec, _, n in vs_layers[c * p + s]:
                on_stage[spec] = on_stage.get(spec, 0) + n
        a = sum((activation_bytes_per_layer(spec, lay, mb, seq) * n for spec, n in on_stage.items()), 0.0) * in_flight
        buf = RUNTIME_RESERVE_GIB * GIB
        if s == p - 1:
            vocab = model.vocab or model.num_classes
            buf += mb * seq / lay.cp * vocab / lay.tp * 4 * 2  # fp32 logits and their gradient
        if lay.dp > 1:
            buf += 2 * GRAD_BUCKET_PARAMS * grad_bytes
        br = MemoryBreakdown(w, g, o, a, buf)
        if worst is None or br.total > worst.total:
            worst = br
    assert worst is not None

    # FLOPs per GPU per iteration
    kinds = [(memo[spec], n) for spec, n in model.layer_groups()]
    fwd_flops = (sum((sum(o.flops for o in k.fwd) * n for k, n in kinds), 0.0) / p
                 + sum(o.flops for o in head.fwd) / p)
    rec_flops = (sum((sum(o.flops for o in k.recompute) * n for k, n in kinds), 0.0) / p
                 + sum(o.flops for o in head.recompute) / p)
    model_flops = 3 * fwd_flops * m
    hw_flops = model_flops + rec_flops * m
    return StepModel(stages, m, p2p, worst, model_flops, hw_flops, stage_params)


def _step(model: ModelSpec, hw: HardwareProfile, sc: TrainingScenario, mb: int | None,
          record: bool) -> tuple[Layout, int, StepModel, StepTrace]:
    lay, mb_ = resolve_layout(sc, model, hw, mb)
    sm = build_step(model, hw, lay, mb_, sc)
    kind = "interleaved" if lay.virtual_stages > 1 else sc.parallelism.schedule
    trace = simulate_step(sm.stages, microbatches=sm.microbatches, schedule_kind=kind, p2p=sm.p2p, record=record)
    return lay, mb_, sm, trace


def _auto_micro_batch(model: ModelSpec, hw: HardwareProfile, sc: TrainingScenario) -> int:
    """The fastest micro-batch that fits in memory (the smallest if none fits)."""
    par = sc.parallelism
    gpus = sc.cluster.nodes * sc.cluster.gpus_per_node
    dp = par.dp or gpus // max(par.tp * par.pp * par.cp, 1)
    per_rank = sc.training.global_batch // max(dp, 1)
    cands = [b for b in range(1, min(per_rank, 64) + 1) if per_rank % b == 0] or [1]
    best, best_t = cands[0], math.inf
    for b in cands:
        try:
            _, _, sm, tr = _step(model, hw, sc, b, record=False)
        except CapsimError:
            continue
        if sm.memory.total <= hw.memory_bytes and tr.iteration_time < best_t:
            best, best_t = b, tr.iteration_time
    return best


def simulate_training(scenario: TrainingScenario) -> TrainingResult:
    """Simulate one iteration of the scenario's layout, its memory, and the whole training run."""
    sc = scenario
    model, hw = get_model(sc.model), get_profile(sc.hardware)
    mb = _auto_micro_batch(model, hw, sc) if sc.training.micro_batch == "auto" else None
    lay, mb, sm, trace = _step(model, hw, sc, mb, record=True)
    t = trace.iteration_time
    gpus = lay.gpus
    nodes = sc.cluster.nodes

    # data loading: prefetched during the previous step; only the shortfall stalls the GPUs
    dl = sc.data_loader
    load = 0.0
    per_node = sc.training.global_batch / nodes
    if dl.samples_per_s_per_node:
        load = max(load, per_node / dl.samples_per_s_per_node)
    if dl.storage_gb_s and dl.bytes_per_sample:
        load = max(load, per_node * dl.bytes_per_sample / (dl.storage_gb_s * 1e9))
    data_stall = max(0.0, load - t)
    step_time = t + data_stall

    crit = max(range(len(trace.stage_end)), key=lambda s: trace.stage_end[s])
    busy = trace.busy[crit]
    spec = sm.stages[crit]
    busy_total = busy["compute"] + busy["comm"] + busy["host"] + busy["dp"]
    breakdown = {
        "compute_s": busy["compute"],
        "tp_comm_s": busy["comm"],
        "host_overhead_s": busy["host"],
        "pipeline_bubble_s": trace.compute_end[crit] - busy_total,
        "dp_comm_exposed_s": (busy["dp"] + max(0.0, trace.dp_end[crit] - trace.compute_end[crit])
                              + trace.contention[crit]),
        "optimizer_s": spec.optimizer + spec.post_optimizer_comm,
        "data_loading_s": data_stall,
    }
    tokens = sc.training.global_batch * sc.training.seq_len
    peak = hw.peak_flops(sc.training.precision)
    mfu = sm.model_flops_per_gpu / step_time / peak
    hfu = sm.hardware_flops_per_gpu / step_time / peak
    fits = sm.memory.total <= hw.memory_bytes

    job: JobOutcome | None = None
    if sc.training.total_tokens and fits:
        job = simulate_job(sc, hw, step_time=step_time, tokens_per_step=tokens, gpus=gpus,
                           params=model.total_params(), busy_fraction=min(1.0, (busy["compute"] + busy["comm"]) / step_time))
    return TrainingResult.build(sc=sc, model=model, hw=hw, lay=lay, micro_batch=mb, microbatches=sm.microbatches,
                                step_time=step_time, breakdown=breakdown, memory=sm.memory, fits=fits, mfu=mfu,
                                hfu=hfu, tokens=tokens, job=job, timeline=trace.timeline)
