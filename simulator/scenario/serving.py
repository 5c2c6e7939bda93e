"""Serving scenario keys: the replica (parallelism, batching engine, KV cache), the cluster and its
router, autoscaling, faults, SLOs and multi-service request paths."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from ..serving.autoscalers.base import AutoscalingConfig
from ..serving.autoscalers.registry import AUTOSCALERS
from ..serving.engines import batch, continuous, prefill_first, speculative  # noqa: F401  (the built-in engines register their keys)
from ..serving.engines.base import ENGINES, ReplicaConfig
from .base import HARDWARE_DOC, MODEL_DOC, Precision, Pricing, _Strict
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

if TYPE_CHECKING:
    AutoscalingUnion = AutoscalingConfig
else:
    AutoscalingUnion = AUTOSCALERS.annotation()

Autoscaling = AutoscalingConfig   # the base of every policy's config (simulator.serving.autoscalers)
_AUTOSCALING = ("how the replica count follows the load: policy none | hpa | kpa | ray | queue | scheduled | "
                "predictive (or a registered plug-in), each with its own keys and defaults")


class ServingCluster(_Strict):
    """Replicas behind a router."""

    replicas: int = Field(default=1, ge=1, description="replicas at the start (all the time without autoscaling)")
    router: Literal["round_robin", "least_outstanding", "power_of_two", "kv_aware", "prefix_aware"] = Field(
        default="least_outstanding", description=(
            "which replica gets a request: in turn, fewest outstanding (the usual load-balancer default), the "
            "less loaded of two at random, lowest KV-cache load, or prefix_aware: the longest cached prefix of the "
            "prompt unless the load is out of balance (SGLang router's cache_aware policy)"))
    cache_threshold: float = Field(default=0.5, ge=0, le=1, description=(
        "prefix_aware: the share of the prompt the best replica must hold cached to get the request; below it the "
        "replica with the least cached goes (default 0.5, sgl-router CacheAwareConfig::default)"))
    balance_abs_threshold: int = Field(default=32, ge=0, description=(
        "prefix_aware: out of balance when the most and least loaded replicas' outstanding requests differ by more "
        "than this (default 32, sgl-router CacheAwareConfig::default) ..."))
    balance_rel_threshold: float = Field(default=1.1, ge=1, description=(
        "... and the most loaded has more than this times the least's; then the least loaded replica gets the "
        "request (default 1.1, sgl-router CacheAwareConfig::default)"))


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
    """Latency bounds, each at a percentile: ``{ttft,tpot,itl,e2e}_{p50,p90,p99}_s``. The run meets the SLO
    when every bounded percentile is within its bound and nothing is rejected or failed; a request
    attains it when its own TTFT, TPOT and end-to-end latency are within every bound on them (ITL
    bounds are checked on the percentiles of all token gaps, not per request)."""

    ttft_p50_s: float | None = Field(default=None, gt=0, description="median time to first token, seconds; default: none")
    ttft_p90_s: float | None = Field(default=None, gt=0, description="p90 time to first token, seconds; default: none")
    ttft_p99_s: float | None = Field(default=None, gt=0, description="time to first token, seconds; default: none")
    tpot_p50_s: float | None = Field(default=None, gt=0, description="median time per output token, seconds; default: none")
    tpot_p90_s: float | None = Field(default=None, gt=0, description="p90 time per output token, seconds; default: none")
    tpot_p99_s: float | None = Field(default=None, gt=0, description="time per output token, seconds; default: none")
    itl_p50_s: float | None = Field(default=None, gt=0, description="median inter-token gap, seconds; default: none")
    itl_p90_s: float | None = Field(default=None, gt=0, description="p90 inter-token gap, seconds; default: none")
    itl_p99_s: float | None = Field(default=None, gt=0, description="p99 inter-token gap, seconds; default: none")
    e2e_p50_s: float | None = Field(default=None, gt=0, description="median end-to-end latency, seconds; default: none")
    e2e_p90_s: float | None = Field(default=None, gt=0, description="p90 end-to-end latency, seconds; default: none")
    e2e_p99_s: float | None = Field(default=None, gt=0, description="end-to-end latency, seconds; default: none")


class Service(_Strict):
    """One stage of a multi-service request path. ``model``, ``hardware``, ``precision``, ``faults`` and
    ``pricing`` not given are the scenario's top-level ones; ``replica``, ``cluster`` and ``autoscaling``
    are each service's own (top-level ones are an error with ``services:``)."""

    name: str = Field(description="the service's label (unique within the path)")
    model: str | dict[str, Any] | None = Field(default=None, description="its model; default: the scenario's")
    hardware: str | None = Field(default=None, description="its GPU profile; default: the scenario's")
    precision: Precision | None = Field(default=None, description="its precision; default: the scenario's")
    replica: ReplicaKeys | None = ENGINES.field(description=_REPLICA_DOC + "; default: the engine's defaults",
                                                optional=True)
    cluster: ServingCluster | None = Field(default=None, description="its replicas and router; default: one replica")
    autoscaling: AutoscalingUnion | None = AUTOSCALERS.field(description=_AUTOSCALING, optional=True)
    faults: Faults | None = Field(default=None, description="its faults; default: the scenario's")
    pricing: Pricing | None = Field(default=None, description="its pricing; default: the scenario's")
    prompt_tokens: LengthDist | None = Field(default=None, description="this stage's input; default: the workload's")
    output_tokens: LengthDist | None = Field(default=None, description="this stage's output; default: the workload's")
    cache_hit_rate: float = Field(default=0.0, ge=0, le=1, description="requests answered from a result cache")


class Pool(_Strict):
    """One pool of a disaggregated deployment (simulator/serving/disaggregation.py); a key left out is the
    scenario's top-level one."""

    hardware: str | None = Field(default=None, description="its GPU profile; default: the scenario's")
    precision: Precision | None = Field(default=None, description="its precision; default: the scenario's")
    replica: ReplicaKeys | None = ENGINES.field(description=_REPLICA_DOC + "; default: the top-level replica",
                                                optional=True)
    cluster: ServingCluster | None = Field(default=None, description="its replicas and router; default: the top-level")
    autoscaling: AutoscalingUnion | None = AUTOSCALERS.field(description=_AUTOSCALING + "; default: the top-level",
                                                             optional=True)


class Disaggregation(_Strict):
    """Prefill/decode disaggregation (xPyD): a prefill pool computes each prompt and its first token, its
    KV cache crosses the link to a decode pool, which streams every output token (DistServe, Splitwise,
    vLLM's and SGLang's P/D connectors). simulator/serving/disaggregation.py says how it is costed."""

    enabled: bool = Field(default=True, description=(
        "false: the top-level replica and cluster serve aggregated (so one sweep compares both: "
        "--grid disaggregation.enabled=false,true)"))
    prefill: Pool = Field(default_factory=Pool, description="the prefill pool (x in xPyD: its cluster.replicas)")
    decode: Pool = Field(default_factory=Pool, description="the decode pool (y in xPyD: its cluster.replicas)")
    kv_link: Literal["auto", "intra_node", "inter_node"] = Field(default="auto", description=(
        "the link the KV cache crosses: intra_node (NVLink), inter_node (InfiniBand/RoCE); auto (default): "
        "intra_node when both pools fit in one NVLink domain (hardware nvlink_domain_gpus), else inter_node"))


class ServingScenario(_Strict):
    """A serving deployment under a workload: replicas of a model (or a chain of services)."""

    kind: Literal["serving"] = Field(default="serving", description="serving (or training)")
    name: str = Field(default="serving", description="label in results and reports")
    model: str | dict[str, Any] = Field(description=MODEL_DOC)
    hardware: str = Field(description=HARDWARE_DOC)
    precision: Precision = Field(default="bf16", description=(
        "number format of the weights and GEMMs: fp32, bf16 (default: the dtype of the published checkpoints "
        "and vLLM's dtype auto), fp16, fp8, fp8-block, mxfp8, nvfp4, w4a16 or w8a8-int8 (simulator/precision.py "
        "gives each one's bytes, block scales and the GPUs that run it)"))
    replica: ReplicaKeys = ENGINES.field(description=_REPLICA_DOC)
    workload: Workload = Field(default_factory=Workload, description="arrivals and request lengths")
    cluster: ServingCluster = Field(default_factory=ServingCluster, description="replicas and router")
    autoscaling: AutoscalingUnion = AUTOSCALERS.field(description=_AUTOSCALING)
    faults: Faults = Field(default_factory=Faults, description="replica failures and spot preemptions")
    services: list[Service] = Field(default_factory=list, description=(
        "a chain of services each request passes through in order (e.g. embed -> rerank -> llm); "
        "empty: one service described by the top-level keys"))
    network_hop_ms: float = Field(default=1.0, ge=0, description="between services (assumed in-cluster RPC)")
    disaggregation: Disaggregation | None = Field(default=None, description=(
        "separate prefill and decode pools (xPyD); default: none (every replica prefills and decodes)"))
    slo: SLO = Field(default_factory=SLO, description="latency bounds (p99)")
    pricing: Pricing = Field(default_factory=Pricing, description="where GPU-hours are bought and at what price")
    seed: int = Field(default=0, description="seed of every random stream (same seed, same result)")

    @model_validator(mode="after")
    def _per_service_keys(self) -> ServingScenario:
        """With ``services:``, the replica, cluster and autoscaling keys belong to each service: a
        top-level one that is not the default would be ignored, so it is an error naming the keys."""
        d = self.disaggregation
        if d is not None and d.enabled and (self.workload.shared_prefix or self.workload.sessions):
            raise ValueError("disaggregation with workload.shared_prefix or workload.sessions is not modelled: the "
                             "decode pool's prefix cache does not know the KV the prefill pool sends; use one of them")
        if not self.services:
            return self
        if self.disaggregation is not None:
            raise ValueError("disaggregation and services cannot be combined (a disaggregated deployment is one "
                             "service of two pools); remove one of them")
        fresh = ServingScenario(model=self.model, hardware=self.hardware)
        stages = ", ".join(f"{i} {st.name}" for i, st in enumerate(self.services))
        for key in ("replica", "cluster", "autoscaling"):
            if key in self.model_fields_set and getattr(self, key) != getattr(fresh, key):
                keys = _differing(getattr(self, key), getattr(fresh, key))
                raise ValueError(f"top-level {', '.join(f'{key}.{k}' for k in keys)} has no effect when services "
                                 f"are listed: each service has its own {key}; set services.N.{key}.{keys[0]} "
                                 f"instead (N: {stages})")
        return self


def _differing(a: Any, b: Any) -> list[str]:
    """The keys of two config models whose values differ (only the tag when the variant differs)."""
    da, db = a.model_dump(), b.model_dump()
    for tag in ("batching", "policy"):
        if tag in da and da[tag] != db.get(tag):
            return [tag]
    return [k for k in da if da.get(k) != db.get(k)]


ENGINES.hosted_by(Service, "replica", optional=True)
ENGINES.hosted_by(ServingScenario, "replica")
AUTOSCALERS.hosted_by(Service, "autoscaling", optional=True)
AUTOSCALERS.hosted_by(ServingScenario, "autoscaling")
ENGINES.hosted_by(Pool, "replica", optional=True)
AUTOSCALERS.hosted_by(Pool, "autoscaling", optional=True)
