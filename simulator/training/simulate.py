"""``simulate_training``: from a scenario to one step, memory, and the whole run's time and cost.

One iteration is planned in three parts that each ask the pipeline schedule what it decides:
which part of the model each stage holds (``partition``), what each stage computes and sends
(``work``) and what it must keep in memory (``memory_plan``); the step engine (``step``) then runs
the schedule's order over that work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import workbound
from ..catalog import get_model
from ..costmodel.layout import Layout
from ..costmodel.memory import MemoryBreakdown
from ..errors import CapsimError
from ..hardware import HardwareProfile, get_profile
from ..invariants import check_summary
from ..models import ModelSpec
from ..scenario import TrainingScenario
from .job import JobOutcome, simulate_job
from .layout import Chunk, partition, resolve_layout, step_schedule
from .memory_plan import memory_plan
from .network import with_network
from .result import TrainingResult
from .schedules.base import Schedule
from .stack import DISPATCH_US
from .step import StepTrace, simulate_step
from .work import StageWork, stage_work


@dataclass(frozen=True, slots=True)
class StepModel:
    """One iteration before it runs: the schedule, each stage's work, and the memory it needs."""

    schedule: Schedule
    work: StageWork
    memory: MemoryBreakdown       # the most loaded stage


def cluster_profile(sc: TrainingScenario) -> HardwareProfile:
    """The scenario's GPU profile, its inter-node tier replaced by ``cluster.network`` when given."""
    hw = get_profile(sc.hardware)
    net = sc.cluster.network
    if net is None:
        return hw
    return with_network(hw, nics_per_node=net.nics_per_node, nic_gbps=net.nic_gbps,
                        gpus_per_node=sc.cluster.gpus_per_node, oversubscription=net.oversubscription,
                        latency_us=net.latency_us)


def _dispatch_s(hw: HardwareProfile, sc: TrainingScenario) -> float:
    us = sc.training.dispatch_us if sc.training.dispatch_us is not None else hw.efficiency.dispatch_us
    return (us if us is not None else DISPATCH_US) * 1e-6


def step_memory(model: ModelSpec, hw: HardwareProfile, lay: Layout, mb: int, sc: TrainingScenario) -> MemoryBreakdown:
    """Memory per GPU on the most loaded stage, without building the stages' work (a cheap prune)."""
    return step_parts(model, lay, mb, sc)[2]


StepParts = tuple[Schedule, list[list[Chunk]], MemoryBreakdown]


def plan_step(model: ModelSpec, hw: HardwareProfile, lay: Layout, mb: int, sc: TrainingScenario,
              parts: StepParts | None = None) -> StepModel:
    """The schedule of one iteration, the work of each stage under it, and the memory it needs.
    ``parts``: the layout's :func:`step_parts`, when the caller already has them (a plan's memory prune)."""
    seq = sc.training.seq_len
    schedule, stages, memory = parts if parts is not None else step_parts(model, lay, mb, sc)
    work = stage_work(model, hw, lay, mb, seq, schedule, stages, _dispatch_s(hw, sc))
    fit = getattr(schedule, "fit", None)    # a schedule that orders its passes by their times (zb-h1)
    if fit is not None:
        fit([(st.fwd[0].total, st.bwd[0].total, st.pass_times("W")[0].total) for st in work.stages], work.p2p)
        memory = memory_plan(model, lay, mb, seq, schedule, stages).worst   # in flight under the fitted order
    return StepModel(schedule, work, memory)


def step_parts(model: ModelSpec, lay: Layout, mb: int, sc: TrainingScenario) -> StepParts:
    """The iteration's schedule, its stages' chunks and the memory per GPU of the most loaded stage:
    what the memory prune needs, without the stages' work."""
    schedule = step_schedule(sc, mb, lay.dp)
    stages = partition(model, lay, schedule)
    return schedule, stages, memory_plan(model, lay, mb, sc.training.seq_len, schedule, stages).worst


def _step(model: ModelSpec, hw: HardwareProfile, sc: TrainingScenario, mb: int | None,
          record: bool) -> tuple[Layout, int, StepModel, StepTrace]:
    lay, mb_ = resolve_layout(sc, model, hw, mb)
    sm = plan_step(model, hw, lay, mb_, sc)
    workbound.check_pipeline_ops(sm.schedule.microbatches, lay.pp, lay.virtual_stages)   # before the timeline
    trace = simulate_step(sm.work.stages, sm.schedule, p2p=sm.work.p2p, record=record)
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
    model, hw = get_model(sc.model), cluster_profile(sc)
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

    def own_work(s: int) -> float:
        """Seconds stage ``s`` is occupied by its own work: passes, exposed gradient traffic, optimizer."""
        b, st = trace.busy[s], sm.work.stages[s]
        return (sum(b[k] for k in ("compute", "tp_comm", "cp_comm", "ep_comm", "host", "dp"))
                + max(0.0, trace.dp_end[s] - trace.compute_end[s]) + trace.contention[s]
                + st.optimizer + st.post_optimizer_comm)

    # the breakdown is the bottleneck stage's: the one with the most work of its own (the last to
    # finish is usually stage 0, whose idle time is mostly waiting on slower stages); its bubble is
    # the rest of the iteration. Ties go to the stage that ends last.
    crit = max(range(len(trace.stage_end)), key=lambda s: (own_work(s), trace.stage_end[s]))
    busy = trace.busy[crit]
    spec = sm.work.stages[crit]
    comm = busy["tp_comm"] + busy["cp_comm"] + busy["ep_comm"]
    breakdown = {
        "compute_s": busy["compute"],
        "tp_comm_s": busy["tp_comm"],
        "cp_comm_s": busy["cp_comm"],
        "ep_comm_s": busy["ep_comm"],
        "host_overhead_s": busy["host"],
        "pipeline_bubble_s": max(0.0, t - own_work(crit)),   # not below 0 by rounding
        "dp_comm_exposed_s": (busy["dp"] + max(0.0, trace.dp_end[crit] - trace.compute_end[crit])
                              + trace.contention[crit]),
        "optimizer_s": spec.optimizer + spec.post_optimizer_comm,
        "data_loading_s": data_stall,
    }
    tokens = sc.training.global_batch * sc.training.seq_len
    peak = hw.peak_flops(sc.training.precision)
    mfu = sm.work.model_flops_per_gpu / step_time / peak
    hfu = sm.work.hardware_flops_per_gpu / step_time / peak
    fits = sm.memory.total <= hw.memory_bytes

    job: JobOutcome | None = None
    if sc.training.total_tokens and fits:
        job = simulate_job(sc, hw, step_time=step_time, tokens_per_step=tokens, gpus=gpus,
                           params=model.total_params(), busy_fraction=min(1.0, (busy["compute"] + comm) / step_time))
    result = TrainingResult.build(sc=sc, model=model, hw=hw, lay=lay, micro_batch=mb,
                                  microbatches=sm.schedule.microbatches, step_time=step_time, breakdown=breakdown,
                                  memory=sm.memory, fits=fits, mfu=mfu, hfu=hfu, tokens=tokens, job=job,
                                  timeline=trace.timeline, breakdown_stage=crit)
    check_summary(result.summary, "training")     # every number finite and >= 0 (simulator.invariants)
    return result
