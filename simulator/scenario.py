"""Scenario files: one YAML document describing a training job or a serving deployment.

Key names follow DESIGN.md and are the public contract. Every key is validated on load; an error
names the key, the bad value and what is allowed. ``--set key.path=value`` overrides any key.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .costmodel.layout import PLACEMENT_MEGATRON
from .errors import CapsimError

Precision = Literal["fp32", "bf16", "fp16", "fp8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---- shared ---------------------------------------------------------------------------------------
class Pricing(_Strict):
    provider: str | None = None
    instance: str | None = None
    market: Literal["on_demand", "spot"] = "on_demand"
    usd_per_gpu_hour: float | None = Field(default=None, gt=0, description="overrides the catalog price")
    spot_preemptions_per_hour: float = Field(default=0.0, ge=0, description="per node, when market is spot")


# ---- training -------------------------------------------------------------------------------------
class Cluster(_Strict):
    nodes: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=8, ge=1)


class Parallelism(_Strict):
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    dp: int | None = Field(default=None, ge=1, description="default: GPUs / (tp·pp·cp)")
    cp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    virtual_stages: int = Field(default=1, ge=1)
    sequence_parallel: bool = False
    zero_stage: Literal[0, 1, 2, 3] = 0
    schedule: Literal["1f1b", "gpipe", "interleaved"] = "1f1b"
    # Rank order, innermost (neighbouring ranks, same node) first. Megatron: tp, cp, pp, dp;
    # DeepSpeed's pipeline engine: tp, cp, dp, pp.
    placement: list[Literal["tp", "cp", "pp", "dp"]] = Field(default_factory=lambda: list(PLACEMENT_MEGATRON))

    @field_validator("placement")
    @classmethod
    def _placement(cls, v: list[str]) -> list[str]:
        if sorted(v) != sorted(PLACEMENT_MEGATRON):
            raise ValueError(f"must list tp, cp, pp and dp once each, innermost first (got {v})")
        return v


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
    parallelism: Parallelism = Field(default_factory=Parallelism)
    training: Training = Field(default_factory=Training)
    data_loader: DataLoader = Field(default_factory=DataLoader)
    reliability: Reliability = Field(default_factory=Reliability)
    pricing: Pricing = Field(default_factory=Pricing)
    seed: int = 0


# ---- serving --------------------------------------------------------------------------------------
class Fixed(_Strict):
    dist: Literal["fixed"]
    value: int = Field(ge=1)


class Uniform(_Strict):
    dist: Literal["uniform"]
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class LogNormal(_Strict):
    dist: Literal["lognormal"]
    mean: float = Field(gt=0, description="mean token count")
    sigma: float = Field(default=0.5, ge=0)
    max: int | None = Field(default=None, ge=1)


class Exponential(_Strict):
    dist: Literal["exponential"]
    mean: float = Field(gt=0, description="mean token count (memoryless lengths, rounded, at least 1)")


class Empirical(_Strict):
    dist: Literal["empirical"]
    path: str
    column: str | None = None


LengthDist = Annotated[Fixed | Uniform | LogNormal | Exponential | Empirical, Field(discriminator="dist")]


_REQUESTS = "stop after this many requests (and/or at workload.duration_s)"


class Poisson(_Strict):
    process: Literal["poisson"]
    rate_rps: float = Field(gt=0)
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)


class Gamma(_Strict):
    process: Literal["gamma"]
    rate_rps: float = Field(gt=0)
    cv: float = Field(default=1.0, gt=0, description="coefficient of variation of inter-arrival times")
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)


class Diurnal(_Strict):
    process: Literal["diurnal"]
    mean_rps: float | None = Field(default=None, gt=0)
    peak_to_trough: float = Field(default=3.0, ge=1)
    period_s: float = Field(default=86400, gt=0)
    peak_at_s: float = Field(default=50400, ge=0, description="14:00 by default")
    schedule: list[tuple[float, float]] | None = Field(default=None, description="[[t_s, rate_rps], ...] piecewise")
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)

    @model_validator(mode="after")
    def _rate(self) -> Diurnal:
        if self.schedule is None and self.mean_rps is None:
            raise ValueError("give mean_rps (sinusoidal day) or schedule ([[t_s, rate_rps], ...] piecewise)")
        if self.schedule is not None:
            if not self.schedule:
                raise ValueError("schedule is empty")
            ts = [t for t, _ in self.schedule]
            if ts[0] != 0 or any(b <= a for a, b in itertools.pairwise(ts)):
                raise ValueError(f"schedule times must start at 0 and increase (got {ts})")
            if any(r < 0 for _, r in self.schedule) or not any(r > 0 for _, r in self.schedule):
                raise ValueError("schedule rates must be >= 0 and not all 0")
        return self


class ClosedLoop(_Strict):
    process: Literal["closed_loop"]
    concurrency: int = Field(ge=1)
    requests: int = Field(ge=1)
    think_time_s: float = Field(default=0.0, ge=0, description="fixed pause between a response and the next request")


class Offline(_Strict):
    process: Literal["offline"]
    requests: int = Field(ge=1)


class Trace(_Strict):
    process: Literal["trace"]
    path: str
    time_scale: float = Field(default=1.0, gt=0)


Arrival = Annotated[Poisson | Gamma | Diurnal | ClosedLoop | Offline | Trace, Field(discriminator="process")]


class RequestClass(_Strict):
    name: str
    weight: float = Field(default=1.0, gt=0)
    priority: int = 0


class Workload(_Strict):
    duration_s: float | None = Field(default=None, gt=0)
    arrival: Arrival = Field(default_factory=lambda: Poisson(process="poisson", rate_rps=1.0))
    prompt_tokens: LengthDist = Field(default_factory=lambda: Fixed(dist="fixed", value=512))
    output_tokens: LengthDist = Field(default_factory=lambda: Fixed(dist="fixed", value=128))
    classes: list[RequestClass] = Field(default_factory=list)
    prefix_cache_hit_rate: float = Field(default=0.0, ge=0, le=1,
                                         description="fraction of prompt tokens found in the prefix cache")
    horizon_s: float | None = Field(default=None, gt=0,
                                    description="stop the simulation here; default: run until every request is done")


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
    replica: Replica | None = None
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
    replica: Replica = Field(default_factory=Replica)
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


Scenario = TrainingScenario | ServingScenario
_KINDS: dict[str, type[BaseModel]] = {"training": TrainingScenario, "serving": ServingScenario}


# ---- loading --------------------------------------------------------------------------------------
def apply_overrides(doc: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a scenario mapping."""
    doc = copy.deepcopy(doc)
    for item in overrides or []:
        if "=" not in item:
            raise CapsimError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set parallelism.tp=4")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise CapsimError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = doc
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise CapsimError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is not a mapping (it is {nxt!r})")
            node = nxt
        node[parts[-1]] = value
    return doc


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (through Optional, Annotated, unions, lists)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for arg in get_args(ann) for m in _models_in(arg)]


def _candidates(root: type[BaseModel], loc: tuple) -> list[type[BaseModel]]:
    """The models that may sit at ``loc`` (several inside a union until a tag picks one)."""
    cands: list[type[BaseModel]] = [root]
    for part in loc:
        with_field = [c for c in cands if str(part) in c.model_fields]
        if with_field:
            cands = [m for c in with_field for m in _models_in(c.model_fields[str(part)].annotation)]
        else:  # a discriminator tag such as 'poisson' picks the union member
            cands = [c for c in cands if any(
                str(part) in get_args(f.annotation) for f in c.model_fields.values())]
        if not cands:
            return []
    return cands


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed at ``loc`` (for 'allowed keys' hints)."""
    cands = _candidates(root, loc)
    return list(cands[0].model_fields) if len(cands) == 1 else []


def format_validation_error(e: ValidationError, root: type[BaseModel], where: str = "scenario") -> str:
    """One line per problem: the key, what is wrong, the value given and what is allowed."""
    lines = []
    for err in e.errors():
        loc = err["loc"]
        key = ".".join(str(x) for i, x in enumerate(loc) if i == len(loc) - 1 or not _is_tag(root, loc, i))
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"unknown key {key!r}{hint}")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            lines.append(f"{key}: {err['msg']}")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid {where}:\n  " + "\n  ".join(lines)


def _is_tag(root: type[BaseModel], loc: tuple, i: int) -> bool:
    """Whether ``loc[i]`` is a union discriminator pydantic inserted (e.g. 'poisson'), not a key."""
    cands = _candidates(root, loc[:i])
    return bool(cands) and all(str(loc[i]) not in c.model_fields for c in cands)


def parse_scenario(doc: dict[str, Any], overrides: list[str] | None = None, where: str = "scenario") -> Scenario:
    """Validate a scenario mapping (after applying overrides)."""
    if not isinstance(doc, dict):
        raise CapsimError(f"{where}: expected a mapping of keys, got {type(doc).__name__}")
    doc = apply_overrides(doc, overrides)
    kind = doc.get("kind")
    if kind not in _KINDS:
        raise CapsimError(f"{where}: kind must be one of {', '.join(_KINDS)} (got {kind!r})")
    cls = _KINDS[kind]
    try:
        return cls(**doc)  # type: ignore[return-value]
    except ValidationError as e:
        raise CapsimError(format_validation_error(e, cls, where)) from None


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read and validate a scenario YAML file."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise CapsimError(f"scenario file {str(p)!r} does not exist") from None
    except yaml.YAMLError as e:
        raise CapsimError(f"scenario file {str(p)!r} is not valid YAML: {e}") from None
    return parse_scenario(doc or {}, overrides, where=str(p))


def scenario_yaml(s: Scenario) -> str:
    return yaml.safe_dump(s.model_dump(mode="json", exclude_none=True), sort_keys=False)
