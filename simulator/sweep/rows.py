"""A sweep's rows, typed: one per configuration, from its simulation result.

A row crosses process boundaries (pool workers, Ray tasks) as plain data: ``to_dict()`` gives the
keys, in order, that become the sweep frame's columns (a column appears where a row first has
it), so a row kind leaves out what it cannot know rather than writing None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:   # evaluate imports the simulators when a row is computed, not before
    from ..serving import ServingResult
    from ..training import TrainingResult


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A configuration that is invalid or could not be simulated."""

    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"feasible": False, "error": self.error}


@dataclass(frozen=True, slots=True)
class OutOfMemoryRow:
    """A training layout pruned before simulating the pipeline: its memory alone does not fit."""

    memory_gib: float
    """GiB per GPU it would need"""
    capacity_gib: float

    @property
    def error(self) -> str:
        return f"needs {self.memory_gib:.1f} GiB per GPU of {self.capacity_gib:.0f}"

    def to_dict(self) -> dict[str, Any]:
        return {"feasible": False, "fits_in_memory": False, "memory_gib": self.memory_gib, "error": self.error}


@dataclass(frozen=True, slots=True)
class TrainingSweepRow:
    """A simulated training configuration (``fits_in_memory`` False: simulated, and does not fit)."""

    fits_in_memory: bool
    memory_gib: float
    """GiB per GPU on the most loaded stage"""
    iteration_time_s: float
    tokens_per_s: float
    mfu: float
    gpus: int
    micro_batch: int
    gpu_seconds_per_step: float
    """iteration time × GPUs: the cost axis when there is no price"""
    time_to_train_days: float | None
    """None without ``training.total_tokens`` (likewise the three after it)"""
    cost_usd: float | None
    gpu_hours: float | None
    energy_kwh: float | None
    error: str | None
    """why it does not fit; None when it does"""

    @classmethod
    def of(cls, r: TrainingResult) -> TrainingSweepRow:
        job = r.job
        return cls(fits_in_memory=r.fits_in_memory, memory_gib=r.memory_per_gpu_gib.total,
                   iteration_time_s=r.iteration_time_s, tokens_per_s=r.tokens_per_s, mfu=r.mfu, gpus=r.gpus,
                   micro_batch=r.layout.micro_batch, gpu_seconds_per_step=r.iteration_time_s * r.gpus,
                   time_to_train_days=job.time_to_train_days if job else None, cost_usd=job.cost_usd if job else None,
                   gpu_hours=job.gpu_hours if job else None, energy_kwh=job.energy_kwh if job else None,
                   error=r.infeasible_reason)

    @property
    def feasible(self) -> bool:
        return self.fits_in_memory

    def to_dict(self) -> dict[str, Any]:
        return {"feasible": self.feasible, "fits_in_memory": self.fits_in_memory, "memory_gib": self.memory_gib,
                "iteration_time_s": self.iteration_time_s, "tokens_per_s": self.tokens_per_s, "mfu": self.mfu,
                "gpus": self.gpus, "micro_batch": self.micro_batch, "gpu_seconds_per_step": self.gpu_seconds_per_step,
                "error": self.error, "time_to_train_days": self.time_to_train_days, "cost_usd": self.cost_usd,
                "gpu_hours": self.gpu_hours, "energy_kwh": self.energy_kwh}


@dataclass(frozen=True, slots=True)
class MaxRate:
    """The highest arrival rate that meets the SLO, against the scenario's own rate."""

    max_rate_rps: float
    base_rps: float
    """the scenario's rate"""
    at_limit: bool = False
    """the search stopped at its limit (64 × the scenario's rate) still meeting the SLO: the maximum is higher"""

    @property
    def headroom_x(self) -> float:
        return self.max_rate_rps / self.base_rps

    @property
    def handles_2x(self) -> bool:
        return self.max_rate_rps >= 2 * self.base_rps

    @property
    def handles_3x(self) -> bool:
        return self.max_rate_rps >= 3 * self.base_rps

    def to_dict(self) -> dict[str, Any]:
        return {"max_rate_rps": self.max_rate_rps, "headroom_x": self.headroom_x, "handles_2x": self.handles_2x,
                "handles_3x": self.handles_3x, "max_rate_at_limit": self.at_limit}


@dataclass(frozen=True, slots=True)
class ServingSweepRow:
    """A simulated serving configuration; ``max_rate`` only when the sweep searched for it."""

    completed: int
    rejected: int
    throughput_rps: float
    output_tokens_per_s: float
    ttft_p99_s: float | None
    tpot_p99_s: float | None
    e2e_p99_s: float | None
    ttft_p50_s: float | None
    slo_attainment: float | None
    slo_met: bool | None
    gpu_utilization: float
    usd_per_hour: float
    cost_per_million_tokens_usd: float | None
    gpus: int
    max_rate: MaxRate | None = None
    weights_gib_per_gpu: float | None = None
    """the replica's weights on one GPU (what a precision's bytes per parameter buy)"""
    kv_cache_tokens: int | None = None
    """KV cache capacity of one replica, in tokens"""

    feasible: ClassVar[bool] = True

    @classmethod
    def of(cls, r: ServingResult, max_rate: MaxRate | None = None) -> ServingSweepRow:
        return cls(completed=r.completed, rejected=r.rejected, throughput_rps=r.throughput_rps,
                   output_tokens_per_s=r.output_tokens_per_s,
                   ttft_p99_s=r.ttft_s.p99 if r.ttft_s else None, tpot_p99_s=r.tpot_s.p99 if r.tpot_s else None,
                   e2e_p99_s=r.e2e_s.p99, ttft_p50_s=r.ttft_s.p50 if r.ttft_s else None,
                   slo_attainment=r.slo_attainment, slo_met=r.slo_met,
                   gpu_utilization=r.gpu_utilization, usd_per_hour=r.usd_per_hour,
                   cost_per_million_tokens_usd=r.cost_per_million_tokens_usd, gpus=r.gpus, max_rate=max_rate,
                   weights_gib_per_gpu=r.memory_per_gpu_gib.weights_gib, kv_cache_tokens=r.kv_cache_tokens_per_replica)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"feasible": True, "completed": self.completed, "rejected": self.rejected,
             "throughput_rps": self.throughput_rps, "output_tokens_per_s": self.output_tokens_per_s,
             "ttft_p99_s": self.ttft_p99_s, "tpot_p99_s": self.tpot_p99_s, "e2e_p99_s": self.e2e_p99_s,
             "ttft_p50_s": self.ttft_p50_s, "slo_attainment": self.slo_attainment, "slo_met": self.slo_met,
             "gpu_utilization": self.gpu_utilization, "usd_per_hour": self.usd_per_hour,
             "cost_per_million_tokens_usd": self.cost_per_million_tokens_usd,
             "weights_gib_per_gpu": self.weights_gib_per_gpu, "kv_cache_tokens": self.kv_cache_tokens,
             "gpus": self.gpus, "error": None}
        if self.max_rate is not None:
            d.update(self.max_rate.to_dict())
        return d


SweepRow = FailedRow | OutOfMemoryRow | TrainingSweepRow | ServingSweepRow


def row_columns(*, training: bool, max_rate: bool = False) -> list[str]:
    """The metric columns a sweep's rows can have (before any is simulated), for checking an
    objective or a constraint up front."""
    from dataclasses import fields

    cols = ["feasible", *(f.name for f in fields(TrainingSweepRow if training else ServingSweepRow))]
    cols = [c for c in cols if c != "max_rate"]
    if max_rate and not training:
        cols += ["max_rate_rps", "headroom_x", "handles_2x", "handles_3x"]
    return cols
