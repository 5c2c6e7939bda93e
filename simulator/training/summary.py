"""The parts of a training result: layout, memory per GPU, step-time breakdown and the whole run.

Each part is a frozen dataclass whose fields are, in order, the keys ``capsim train --json``
writes for it, so ``to_dict()`` is the JSON and an attribute reads the same number as the key.
Values are stored as reported: rounded to 6 significant digits (memory to 5, fractions and
TFLOP/s to 4). Times are in seconds, memory in GiB (the field or its container says so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..costmodel.layout import Layout
from .job import JobOutcome

# the reason a job has no checkpoint interval (JSON has no infinity: null and this note)
NO_CHECKPOINTS = ("no failures or preemptions modelled (reliability.node_mtbf_hours unset, on-demand capacity) and "
                  "reliability.checkpoint_interval_minutes unset: the Young/Daly interval is infinite, the job never "
                  "checkpoints")


def rounded(x: float, nd: int = 6) -> float:
    """``x`` to ``nd`` significant digits; NaN and ±inf unchanged."""
    return float(f"{x:.{nd}g}") if x == x and abs(x) != float("inf") else x


@dataclass(frozen=True, slots=True)
class TrainingLayoutInfo:
    """The parallel layout one step was simulated with (``auto`` values resolved)."""

    tp: int
    """tensor-parallel degree"""
    pp: int
    """pipeline-parallel degree (stages)"""
    dp: int
    """data-parallel degree (model replicas)"""
    cp: int
    """context-parallel degree (sequence shards)"""
    ep: int
    """expert-parallel degree"""
    virtual_stages: int
    """model chunks per pipeline stage (interleaved schedule when > 1; dualpipe's two directions: 2)"""
    schedule: str
    """the pipeline schedule (parallelism.schedule: 1f1b, interleaved, gpipe, zb-h1, dualpipe, dualpipev)"""
    sequence_parallel: bool
    """activations sharded over the TP group between attention and MLP"""
    zero_stage: int
    """ZeRO stage 0-3: which of optimizer state, gradients, weights are sharded over DP"""
    recompute: str
    """activation recomputation: none, selective or full"""
    micro_batch: int
    """sequences per micro-batch"""
    microbatches_per_step: int
    """micro-batches each pipeline runs per step"""

    @classmethod
    def build(cls, lay: Layout, micro_batch: int, microbatches: int, schedule: str) -> TrainingLayoutInfo:
        return cls(tp=lay.tp, pp=lay.pp, dp=lay.dp, cp=lay.cp, ep=lay.ep, virtual_stages=lay.virtual_stages,
                   schedule=schedule,
                   sequence_parallel=lay.sequence_parallel, zero_stage=lay.zero_stage, recompute=lay.recompute,
                   micro_batch=micro_batch, microbatches_per_step=microbatches)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MemoryPerGPU:
    """GiB per GPU on the most loaded pipeline stage."""

    params: float
    """weights held by this GPU"""
    grads: float
    """gradients held by this GPU"""
    optimizer: float
    """optimizer state (master weights and Adam moments) held by this GPU"""
    activations: float
    """activations kept for the backward pass at the peak"""
    buffers: float
    """communication and workspace buffers"""
    total: float
    """the sum: what must fit in the GPU's memory"""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeBreakdown:
    """Where one step's time goes on the critical pipeline stage (seconds; they sum to the step)."""

    compute_s: float
    """kernels of the forward, backward and recomputation"""
    tp_comm_s: float
    """tensor-parallel collectives on the critical path"""
    cp_comm_s: float = 0.0
    """context-parallel collectives on the critical path"""
    ep_comm_s: float = 0.0
    """expert-parallel all-to-alls on the critical path"""
    host_overhead_s: float
    """kernel launches and other host work the GPU waits for"""
    pipeline_bubble_s: float
    """idle time while the pipeline fills and drains"""
    dp_comm_exposed_s: float
    """gradient reduction (and ZeRO gathers) not hidden under compute"""
    optimizer_s: float
    """the optimizer step and the communication after it"""
    data_loading_s: float
    """stall waiting for the next batch beyond what prefetching hides"""

    @classmethod
    def build(cls, breakdown: dict[str, float]) -> TimeBreakdown:
        """From the simulator's seconds per category (the CP and EP keys may be absent: 0)."""
        return cls(**{k: rounded(v) for k, v in breakdown.items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class JobSummary:
    """The whole training run to ``training.total_tokens``, over the seeded Monte Carlo runs
    (failures, restarts, checkpoints, preemptions)."""

    total_tokens: float
    """tokens to train on"""
    iterations: int
    """steps needed for them"""
    time_to_train_days: float
    """mean wall-clock days over the runs"""
    time_to_train_days_p10: float
    time_to_train_days_p50: float
    time_to_train_days_p90: float
    compute_days_without_failures: float
    """days of steps alone, with no failure or checkpoint"""
    goodput: float
    """compute days over wall-clock days"""
    failures_mean: float
    """node failures per run"""
    preemptions_mean: float
    """spot preemptions per run"""
    checkpoint_interval_s: float | None
    """work between checkpoints; None when the job checkpoints never (see checkpoint_interval_note)"""
    checkpoint_interval_note: str | None
    """why checkpoint_interval_s is None (no failure or preemption modelled), else None"""
    checkpoint_write_s: float
    """time to write one checkpoint"""
    gpu_hours: float
    """GPUs × mean wall-clock hours"""
    usd_per_gpu_hour: float
    price_source: str
    """where the price comes from (provider, instance, market, catalog)"""
    cost_usd: float
    gpu_power_w: float
    """mean power per GPU over the run"""
    energy_kwh: float
    """GPU energy of the run"""

    @classmethod
    def build(cls, job: JobOutcome, *, total_tokens: float, gpus: int) -> JobSummary:
        mean_days = float(np.mean(job.days))
        gpu_hours = mean_days * 24 * gpus
        p10, p50, p90 = (float(np.percentile(job.days, q)) for q in (10, 50, 90))
        return cls(
            total_tokens=total_tokens, iterations=job.iterations, time_to_train_days=rounded(mean_days),
            time_to_train_days_p10=rounded(p10), time_to_train_days_p50=rounded(p50), time_to_train_days_p90=rounded(p90),
            compute_days_without_failures=rounded(job.compute_days), goodput=rounded(job.compute_days / mean_days, 4),
            failures_mean=rounded(job.failures_mean, 4), preemptions_mean=rounded(job.preemptions_mean, 4),
            checkpoint_interval_s=rounded(job.checkpoint_interval_s) if math.isfinite(job.checkpoint_interval_s) else None,
            checkpoint_interval_note=None if math.isfinite(job.checkpoint_interval_s) else NO_CHECKPOINTS,
            checkpoint_write_s=rounded(job.checkpoint_write_s),
            gpu_hours=rounded(gpu_hours), usd_per_gpu_hour=rounded(job.usd_per_gpu_hour),
            price_source=job.usd_per_gpu_hour_source, cost_usd=rounded(gpu_hours * job.usd_per_gpu_hour),
            gpu_power_w=rounded(job.gpu_power_w, 4), energy_kwh=rounded(gpu_hours * job.gpu_power_w / 1000))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cost_split_usd(self) -> tuple[float, float]:
        """(cost of the training work, cost of what failures, restarts and checkpoints added)."""
        per_day = self.cost_usd / self.time_to_train_days
        lost = self.time_to_train_days - self.compute_days_without_failures
        return self.compute_days_without_failures * per_day, lost * per_day
