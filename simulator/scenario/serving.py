"""Serving scenario keys: the replica (parallelism, batching engine, KV cache), the cluster and its
router, autoscaling, faults, SLOs and multi-service request paths."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from ..serving.autoscalers.base import AutoscalingConfig
from ..serving.autoscalers.registry import AUTOSCALERS
from .base import Precision, Pricing, _Strict
from .workload import LengthDist, Workload

if TYPE_CHECKING:
    AutoscalingUnion = AutoscalingConfig
else:
    AutoscalingUnion = AUTOSCALERS.annotation()

Autoscaling = AutoscalingConfig   # the base of every policy's config (simulator.serving.autoscalers)
_AUTOSCALING = ("how the replica count follows the load: policy none | hpa | kpa | ray | queue | scheduled | "
                "predictive (or a registered plug-in), each with its own keys and defaults")


class Replica(_Strict):
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    batching: Literal["none", "static", "dynamic", "continuous"] = "continuous"
    max_batch_size: int = Field(default=32, ge=1)
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    max_queue_delay_ms: float = Field(default=0.0, ge=0)
    max_num_seqs: int | None = Field(default=None, ge=1, description="vLLM default: 256, 1024 on >=70 GiB GPUs")
    max_batched_tokens: int | None = Field(default=None, ge=1, description="vLLM default: 8192 (2048 on small GPUs)")
    chunked_prefill: bool = True
    kv_cache_fraction: float = Field(default=0.9, gt=0, le=1)
    kv_block_tokens: int = Field(default=16, ge=1)
    scheduler_policy: Literal["max_utilization", "guaranteed_no_evict"] = Field(
        default="max_utilization",
        description="max_utilization: admit while blocks are free now, preempt by recompute when they run out (vLLM); "
                    "guaranteed_no_evict: admit only when the request's final KV fits beside everyone else's "
                    "(TensorRT-LLM's default)")
    kv_cache_precision: Literal["auto", "fp8", "bf16", "fp16", "fp32"] = Field(
        default="auto", description="auto: the weights' precision (fp8 checkpoints carry fp8 KV scales)")
    max_queue: int | None = Field(default=None, ge=0, description="admission bound; beyond it requests are rejected")
    latency_table: list[tuple[int, float]] | None = Field(
        default=None, description="[[batch, seconds], ...] measured forward latency (non-LLM models), replaces the cost model")

    @model_validator(mode="after")
    def _check(self) -> Replica:
        if any(b < 1 or b > self.max_batch_size for b in self.preferred_batch_sizes):
            raise ValueError(f"preferred_batch_sizes {self.preferred_batch_sizes} must lie in "
                             f"1..max_batch_size ({self.max_batch_size})")
        if self.latency_table is not None:
            bs = [b for b, _ in self.latency_table]
            if not bs or any(b2 <= b1 for b1, b2 in itertools.pairwise(bs)) or bs[0] < 1:
                raise ValueError(f"latency_table batches must be >= 1 and increase (got {bs})")
            if any(s <= 0 for _, s in self.latency_table):
                raise ValueError("latency_table seconds must be > 0")
        return self


class ServingCluster(_Strict):
    replicas: int = Field(default=1, ge=1)
    router: Literal["round_robin", "least_outstanding", "power_of_two", "kv_aware"] = "least_outstanding"


class Faults(_Strict):
    """Replica failures and spot preemptions; requests on a lost replica are retried elsewhere.
    Each service of a path draws its faults from its own random stream (``serving.streams``)."""

    replica_mtbf_hours: float | None = Field(default=None, gt=0, description=(
        "hours; mean time between failures of one replica (exponential); default: replicas never fail"))
    spot_fraction: float = Field(default=0.0, ge=0, le=1, description="share of replicas on spot capacity; default 0")
    spot_preemptions_per_hour: float = Field(default=0.05, ge=0, description=(
        "per spot replica per hour; default 0.05 (capsim's assumption: about one preemption a day)"))
    spot_notice_s: float = Field(default=120.0, ge=0, description=(
        "s between a preemption notice and the replica's loss; default 120 (AWS's two-minute spot notice)"))
    max_retries: int = Field(default=2, ge=0, description=(
        "times a request whose replica was lost is retried before it fails; default 2 (capsim's)"))


class SLO(_Strict):
    ttft_p99_s: float | None = Field(default=None, gt=0)
    tpot_p99_s: float | None = Field(default=None, gt=0)
    e2e_p99_s: float | None = Field(default=None, gt=0)


class Service(_Strict):
    """One stage of a multi-service request path. Keys not given are taken from the scenario's top level."""

    name: str
    model: str | dict[str, Any] | None = None
    hardware: str | None = None
    precision: Precision | None = None
    replica: Replica | None = None
    cluster: ServingCluster | None = None
    autoscaling: AutoscalingUnion | None = AUTOSCALERS.field(description=_AUTOSCALING, optional=True)
    faults: Faults | None = None
    pricing: Pricing | None = None
    prompt_tokens: LengthDist | None = Field(default=None, description="this stage's input; default: the workload's")
    output_tokens: LengthDist | None = Field(default=None, description="this stage's output; default: the workload's")
    cache_hit_rate: float = Field(default=0.0, ge=0, le=1, description="requests answered from a result cache")


class ServingScenario(_Strict):
    kind: Literal["serving"] = "serving"
    name: str = "serving"
    model: str | dict[str, Any]
    hardware: str
    precision: Precision = "bf16"
    replica: Replica = Field(default_factory=Replica)
    workload: Workload = Field(default_factory=Workload)
    cluster: ServingCluster = Field(default_factory=ServingCluster)
    autoscaling: AutoscalingUnion = AUTOSCALERS.field(description=_AUTOSCALING)
    faults: Faults = Field(default_factory=Faults)
    services: list[Service] = Field(default_factory=list, description=(
        "a chain of services each request passes through in order (e.g. embed -> rerank -> llm); "
        "empty: one service described by the top-level keys"))
    network_hop_ms: float = Field(default=1.0, ge=0, description="between services (assumed in-cluster RPC)")
    slo: SLO = Field(default_factory=SLO)
    pricing: Pricing = Field(default_factory=Pricing)
    seed: int = 0


AUTOSCALERS.hosted_by(Service, "autoscaling", optional=True)
AUTOSCALERS.hosted_by(ServingScenario, "autoscaling")
