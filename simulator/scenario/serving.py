"""Serving scenario keys: the replica (parallelism, batching engine, KV cache), the cluster and its
router, autoscaling, faults, SLOs and multi-service request paths."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from ..serving.engines import batch, continuous  # noqa: F401  (the built-in engines register their keys)
from ..serving.engines.base import ENGINES, ReplicaConfig
from .base import Precision, Pricing, _Strict
from .workload import LengthDist, Workload

# The replica's keys are a tagged union on ``batching``: each engine module defines its own config
# (see simulator.serving.engines); the keys every engine shares live on their base, ReplicaConfig.
Replica = ReplicaConfig
if TYPE_CHECKING:
    ReplicaKeys = ReplicaConfig
else:
    ReplicaKeys = ENGINES.annotation()
_REPLICA_DOC = ("the replica: its parallel layout, KV cache and batching engine; replica.batching selects the "
                "engine (none, static, dynamic, continuous: default) and with it the keys allowed")


class ServingCluster(_Strict):
    replicas: int = Field(default=1, ge=1)
    router: Literal["round_robin", "least_outstanding", "power_of_two", "kv_aware"] = "least_outstanding"


class Autoscaling(_Strict):
    """How the replica count follows the load. Unset knobs take the chosen system's defaults."""

    policy: Literal["none", "hpa", "kpa", "ray", "queue", "scheduled", "predictive"] = "none"
    metric: Literal["utilization", "concurrency", "queue", "kv_cache"] = Field(
        default="concurrency", description="hpa: per-replica metric to track (utilization/kv_cache as a fraction)")
    target: float | None = Field(default=None, gt=0, description=(
        "per replica: hpa metric value (default 8 concurrent), kpa concurrency (100), ray ongoing requests (2), "
        "queue queued requests (5), predictive requests/s it sustains (required)"))
    target_utilization: float = Field(default=0.7, gt=0, le=1, description="kpa")
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=10, ge=1)
    node_provision_s: float = Field(default=120.0, ge=0, description="request to node ready (reference: 2-8 min)")
    model_load_s: float | None = Field(default=None, ge=0, description=(
        "node ready to serving; default 190 s + weights at 14 GB/s (the reference's 70B on 8 GPUs: 60 s peer "
        "check + 10 s weights + 70 s compile + 60 s graph capture)"))
    sync_period_s: float | None = Field(default=None, gt=0, description="hpa 15, kpa 2, ray 10, queue 30, predictive 30")
    tolerance: float = Field(default=0.1, ge=0)
    scale_down_stabilization_s: float | None = Field(default=None, ge=0, description="hpa 300; ray downscale delay 600")
    scale_up_stabilization_s: float | None = Field(default=None, ge=0, description="hpa 0; ray upscale delay 30")
    stable_window_s: float = Field(default=60.0, gt=0, description="kpa")
    panic_window_s: float = Field(default=6.0, gt=0, description="kpa")
    schedule: list[tuple[float, int]] | None = Field(default=None, description="scheduled: [[t_s, replicas], ...]")
    schedule_period_s: float | None = Field(default=None, gt=0, description="scheduled: repeat the schedule")
    forecast: Literal["pattern", "history"] = Field(
        default="pattern", description="predictive: the workload's known rate pattern, or the rate one period ago")
    forecast_period_s: float = Field(default=86400.0, gt=0, description="predictive history: the pattern's period")
    headroom: float = Field(default=1.0, gt=0, description="predictive: over-provisioning factor")

    @model_validator(mode="after")
    def _check(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        if self.policy == "scheduled" and not self.schedule:
            raise ValueError("policy scheduled needs schedule: [[t_s, replicas], ...]")
        if self.policy == "predictive" and self.target is None:
            raise ValueError("policy predictive needs target: the requests/s one replica sustains within the SLO "
                             "(capsim sweep --max-rate measures it)")
        return self


class Faults(_Strict):
    """Replica failures and spot preemptions; requests on a lost replica are retried elsewhere."""

    replica_mtbf_hours: float | None = Field(default=None, gt=0, description="None: replicas never fail")
    spot_fraction: float = Field(default=0.0, ge=0, le=1, description="share of replicas on spot capacity")
    spot_preemptions_per_hour: float = Field(default=0.05, ge=0, description="per spot replica")
    spot_notice_s: float = Field(default=120.0, ge=0, description="AWS gives 2 minutes")
    max_retries: int = Field(default=2, ge=0, description="retries of a request whose replica was lost")


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
    replica: ReplicaKeys | None = ENGINES.field(description=_REPLICA_DOC + "; default: the scenario's", optional=True)
    cluster: ServingCluster | None = None
    autoscaling: Autoscaling | None = None
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
    replica: ReplicaKeys = ENGINES.field(description=_REPLICA_DOC)
    workload: Workload = Field(default_factory=Workload)
    cluster: ServingCluster = Field(default_factory=ServingCluster)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    faults: Faults = Field(default_factory=Faults)
    services: list[Service] = Field(default_factory=list, description=(
        "a chain of services each request passes through in order (e.g. embed -> rerank -> llm); "
        "empty: one service described by the top-level keys"))
    network_hop_ms: float = Field(default=1.0, ge=0, description="between services (assumed in-cluster RPC)")
    slo: SLO = Field(default_factory=SLO)
    pricing: Pricing = Field(default_factory=Pricing)
    seed: int = 0


ENGINES.hosted_by(Service, "replica", optional=True)
ENGINES.hosted_by(ServingScenario, "replica")
