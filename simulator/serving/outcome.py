"""The typed result of a serving simulation: summary fields, per-request records, time series.

Built once from the simulation (``simulator.serving.result.build_result``); every view (the CLI
table, the TUI, the HTML report, sweep rows) reads its fields and frames. ``to_dict()`` is the
JSON of ``capsim serve --json``, keys in field order, and ``result["key"]`` reads one of its keys.

Latencies per completed request, as aiperf, genai-perf and vLLM's ``bench serve`` define them:
TTFT = first token − arrival; end-to-end (E2E) = done − arrival; TPOT = (E2E − TTFT) / (output − 1),
so E2E = TTFT + (output − 1) · TPOT (aiperf and genai-perf call this per-request mean gap "inter
token latency"); queueing = first scheduled − arrival. ITL is vLLM's: every gap between two
consecutive streamed tokens, pooled over the requests (its mean is Σ(E2E − TTFT) / Σ(output − 1),
weighted by tokens; its median is a typical decode step, its p99 shows prefill steps and preemption
stalls that TPOT averages away). Statistics cover the measured requests (a closed loop's warm-up
is left out) over the measured span (from ``measured_from_s`` to the last completion, or the
horizon); cost, energy and utilization cover the whole run. SLO attainment is the fraction of
finished requests (completed or rejected; rejected ones miss) whose own latencies meet every
bound the scenario sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from ..result_views import NOT_SUMMARY, ResultViews
from ..scenario import ServingScenario
from .result_frames import ResultFrames
from .summary import (
    ClassSummary,
    Percentiles,
    PrefixCacheSummary,
    ReplicaCount,
    ReplicaLayoutInfo,
    ReplicaMemory,
    ServiceSummary,
    SLOBounds,
)

if TYPE_CHECKING:        # the per-request frame (and pandas) load only when asked for
    import pandas as pd


def _plain(v: Any) -> Any:
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return list(v)
    return v


@dataclass(frozen=True, kw_only=True, eq=False)
class ServingResult(ResultViews):
    """Outcome of a serving run. Where a run has several services, the request counts, latencies,
    throughput and SLO are end to end; cost, energy, GPUs, replica-hours and GPU utilization cover
    every service; the layout, memory, KV cache and MFU are the last service's (the one that
    answers); ``services`` breaks it down."""

    kind: ClassVar[str] = "serving"
    scenario: ServingScenario = field(repr=False, metadata=NOT_SUMMARY)
    name: str
    model: str
    hardware: str
    precision: str
    generative: bool
    """whether the (last) service's model generates tokens (a decoder); false for encoders, ViTs and CNNs,
    which run one forward per request: their ``ttft_s``, ``tpot_s``, ``itl_s`` and KV-cache fields are None"""
    item: str | None
    """what one request is for a non-generative model: image (ViT, CNN) or sequence (encoder); None for a decoder"""
    kernel_tables: str
    """where the kernel times came from: measured tables by engine and version (``vllm 0.24.0 (gemm,
    attention, all-reduce), nccl 2.27.3``) or ``spec sheet (no measured tables for this GPU)``"""
    kernel_table_versions: dict[str, str]
    """kind of table -> 'engine version' answering it (empty: spec sheet only)"""
    replica_layout: ReplicaLayoutInfo
    engine_settings: dict[str, Any]
    """the engine settings the replica ran with, resolved from the engine preset and the scenario's keys
    (max_num_seqs, max_batched_tokens, chunked_prefill, scheduler_policy, schedule_order, KV block, dtype and
    memory share, prefix caching, ...) and ``sources``: where each came from; empty for request-level batching"""
    kv_cache_tokens_per_replica: int | None
    """KV-cache capacity of one replica (None for a model that generates nothing)"""
    memory_per_gpu_gib: ReplicaMemory
    simulated_s: float
    """the span: 0 to the last completion, or the horizon"""
    warmup_requests: int
    """a closed loop's warm-up requests, run and left out of every statistic"""
    measured_from_s: float
    """when the measured phase began (the warm-up had drained); 0 without a warm-up"""
    arrived: int
    completed: int
    rejected: int
    rejected_by_reason: dict[str, int]
    """rejections per reason, reasons that occurred"""
    failed: int
    """lost with their replica more often than faults.max_retries"""
    in_flight: int
    """arrived and not finished when the horizon ended the run"""
    retries: int
    """requests re-sent after their replica was lost"""
    replica_failures: int
    spot_preemptions: int
    preemptions: int
    """KV-cache preemptions (recomputed requests)"""
    throughput_rps: float
    """completed requests per second over the measured span"""
    items_per_s: float | None
    """a non-generative model's inputs (images or sequences) per second: one per completed request; None for a
    decoder"""
    output_tokens_per_s: float
    input_tokens_per_s: float
    ttft_s: Percentiles | None
    """time to first token; None for a model that generates nothing"""
    tpot_s: Percentiles | None
    """per request (E2E − TTFT) / (output − 1): aiperf's and genai-perf's inter token latency; None for a model
    that generates nothing"""
    itl_s: Percentiles | None
    """every gap between consecutive streamed tokens, pooled (vLLM bench serve's ITL); empty (each None) when
    the engine does not log its iterations; None for a model that generates nothing"""
    e2e_s: Percentiles
    queue_s: Percentiles
    replicas: ReplicaCount
    replica_hours: float
    """replica-hours paid for (from request to release)"""
    cold_start_s: float
    """node provisioning plus model load of one new replica"""
    autoscaling: str
    """the autoscaling policy"""
    gpus: int
    """GPUs at the most replicas requested"""
    gpu_utilization: float
    """GPU busy, DCGM-style: busy GPU-seconds over ready replica-seconds (time running iterations); under
    continuous batching it reads high from low load on (serving.saturation)"""
    saturation: float | None = None
    """load ÷ capacity: the arrival rate over the ready replicas' steady-state capacity (serving.saturation)"""
    mbu: float | None = None
    """model-bandwidth utilization of the decode steps (serving.saturation); None without decode"""
    mfu: float
    """model FLOPs of the tokens served over the peak FLOPs of the GPU-seconds paid for"""
    kv_cache_utilization: float | None
    """time-mean KV cache in use over ready replicas; None without a KV cache"""
    slo: SLOBounds
    slo_attainment: float | None
    """fraction of finished requests within every bound; None without an SLO"""
    slo_met: bool | None
    """every p99 within its bound and nothing rejected or failed; None without an SLO"""
    usd_per_gpu_hour: float
    price_source: str
    usd_per_hour: float
    """mean cost per hour over the span"""
    cost_usd: float
    cost_per_million_tokens_usd: float | None
    """per million output tokens; None when nothing was generated"""
    cost_per_million_items_usd: float | None
    """a non-generative model's cost per million inputs served (images or sequences); None for a decoder"""
    energy_kwh: float
    items_per_joule: float | None
    """a non-generative model's inputs served per joule of GPU energy (images/s per watt); None for a decoder"""
    warnings: tuple[str, ...]
    classes: dict[str, ClassSummary] | None = None
    """per request class, when the workload has more than one"""
    services: dict[str, ServiceSummary] | None = None
    """per service, when the request path has more than one"""
    prefix_cache: PrefixCacheSummary | None = None
    """the hashed prefix cache's lookups, hits and offload tiers (the last service's replicas), when the requests
    carry token identities (workload.shared_prefix, workload.sessions) or replica.kv_offload is set"""
    request_table: Callable[[], pd.DataFrame] = field(repr=False, metadata=NOT_SUMMARY)
    """builds the per-request frame from the run's ledger (:attr:`requests`, built once, when first read)"""
    frames: ResultFrames = field(repr=False, metadata=NOT_SUMMARY)
    """the run's series as arrays; :attr:`timeseries`, :attr:`scaling`, :attr:`fleet` and :attr:`replica_stats`
    are frames built from them when first read (a run that only prints its summary loads no pandas)"""

    @property
    def timeseries(self) -> pd.DataFrame:
        return self.frames.timeseries

    @property
    def scaling(self) -> pd.DataFrame:
        return self.frames.scaling

    @property
    def fleet(self) -> pd.DataFrame:
        return self.frames.fleet

    @property
    def replica_stats(self) -> pd.DataFrame:
        return self.frames.replicas

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per request (see :meth:`requests_frame`), built from the ledger when first read."""
        return self.request_table()

    @property
    def summary(self) -> dict[str, Any]:
        s: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if not f.metadata.get("summary", True) or (v is None and f.name in ("classes", "services", "prefix_cache")):
                continue
            s[f.name] = _plain(v)
        return s

    # ---- frames -----------------------------------------------------------------------------------
    def requests_frame(self) -> pd.DataFrame:
        """One row per request: arrival, lengths, class, replica, status, latencies, preemptions, whether
        it was a warm-up request, and ``max_itl_s``, its largest gap between two streamed tokens."""
        return self.requests

    def timeseries_frame(self) -> pd.DataFrame:
        """Per service, replica and time bin: queue, running, utilization, batch tokens, KV-cache use."""
        return self.timeseries

    def scaling_frame(self) -> pd.DataFrame:
        """Per time bin: arrival rate, replicas requested/ready, e2e percentiles, cost accrued."""
        return self.scaling

    def fleet_frame(self) -> pd.DataFrame:
        """Per time bin, the whole fleet: ``replicas_up`` (ready, serving or draining), ``queue`` and
        ``running`` (requests, summed over replicas), ``gpu_busy`` (busy GPU-seconds over the
        replicas up: the bin's ``gpu_utilization``) and ``kv_cache_utilization`` (the last service's
        KV cache in use over its replicas up)."""
        return self.fleet

    def replica_frame(self) -> pd.DataFrame:
        """Per replica of each service: ``busy_s`` and ``ready_s`` within the span, ``gpu_utilization`` their ratio."""
        return self.replica_stats

    @property
    def time_bin_s(self) -> float:
        """Width of the time bins every series shares."""
        width = self.frames.time_bin_s
        return width if width is not None else max(self.simulated_s, 1e-9)
