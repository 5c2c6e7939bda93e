"""Training scenario keys: the cluster, the parallel layout, the training recipe, data loading and
reliability of the whole run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ..training.schedules import gpipe, interleaved, one_f_one_b  # noqa: F401  (each registers its schedule)
from ..training.schedules.base import SCHEDULES, ParallelismBase
from .base import Precision, Pricing, _Strict


class Cluster(_Strict):
    nodes: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=8, ge=1)


# ``parallelism`` is a tagged union keyed by ``schedule``: each pipeline schedule's module defines
# its config (the shared layout keys plus its own) and registers it with SCHEDULES.
Parallelism = ParallelismBase   # the keys every schedule's config has
if TYPE_CHECKING:
    ParallelismConfig = ParallelismBase
else:
    ParallelismConfig = SCHEDULES.annotation()


class Training(_Strict):
    seq_len: int = Field(default=2048, ge=1)
    global_batch: int = Field(default=512, ge=1, description="sequences per iteration")
    micro_batch: int | Literal["auto"] = "auto"
    precision: Precision = "bf16"
    grad_precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # Reduce gradient buckets while the backward still runs (Megatron-core --overlap-grad-reduce,
    # PyTorch DDP, FSDP); false: after the last backward (DeepSpeed's engine and pipeline engine
    # without overlap_comm, Megatron-LM before 2023).
    overlap_grad_reduce: bool = True
    recompute: Literal["none", "selective", "full"] = "none"
    flash_attention: bool = True
    total_tokens: float | None = Field(default=None, gt=0)
    # Host time to issue one kernel (eager PyTorch + framework). See costmodel.stack for the source.
    dispatch_us: float | None = Field(default=None, ge=0)

    @field_validator("micro_batch")
    @classmethod
    def _mb(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return v


class DataLoader(_Strict):
    samples_per_s_per_node: float | None = Field(default=None, gt=0)
    storage_gb_s: float | None = Field(default=None, gt=0, description="per node read bandwidth")
    bytes_per_sample: float = Field(default=0, ge=0)


class Reliability(_Strict):
    node_mtbf_hours: float | None = Field(default=None, gt=0, description="None: no failures")
    restart_minutes: float = Field(default=10.0, ge=0)
    checkpoint_interval_minutes: float | None = Field(default=None, gt=0, description="None: Young/Daly optimum")
    checkpoint_write_gb_s: float = Field(default=10.0, gt=0, description="aggregate per node")
    runs: int = Field(default=200, ge=1, description="Monte Carlo samples of the whole job")


class TrainingScenario(_Strict):
    kind: Literal["training"] = "training"
    name: str = "training"
    model: str | dict[str, Any]
    hardware: str
    cluster: Cluster = Field(default_factory=Cluster)
    parallelism: ParallelismConfig = SCHEDULES.field(description="the parallel layout and pipeline schedule; "
                                                               "the keys allowed depend on parallelism.schedule")
    training: Training = Field(default_factory=Training)
    data_loader: DataLoader = Field(default_factory=DataLoader)
    reliability: Reliability = Field(default_factory=Reliability)
    pricing: Pricing = Field(default_factory=Pricing)
    seed: int = 0


SCHEDULES.hosted_by(TrainingScenario, "parallelism")
