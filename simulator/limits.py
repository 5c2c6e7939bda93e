"""The documented physical range of every numeric scenario key.

Every scenario model (``simulator.scenario.base._Strict`` and its subclasses: the scenario sections,
the engines', autoscalers' and schedules' configs) rejects non-finite numbers (``.inf``, ``.nan``)
and checks each numeric key against :data:`RANGES` here, by key name (``Model.key`` entries win over
plain ``key`` ones). The field's own ``gt``/``ge``/``le`` bounds still apply; a range here adds the
bound past which a value stops describing a real deployment and starts overflowing the simulator
(a prompt of 1e30 tokens, ten million replicas, an autoscaler polling every nanosecond).

The bounds are deliberately generous, one to three orders of magnitude beyond anything published,
so that no real scenario meets them:

- token counts: 10M tokens (the longest published context, Llama 4 Scout's 10M);
- rates: 1M requests/s (Google search serves on the order of 100k queries/s);
- durations and times: one year of simulated time (366 days);
- GPUs, replicas, nodes: 100k (the largest published training clusters, xAI Colossus, ~100k-200k GPUs);
- periods of autoscalers and schedules: at least 0.1 s (Kubernetes' HPA syncs every 15 s, KNative's
  autoscaler ticks every 2 s);
- Monte Carlo runs: 10,000 (the default 200 gives percentiles within a few percent).

The test ``tests/test_limits.py`` checks that every numeric key of every registered model has a range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

YEAR_S = 366 * 86400.0
MAX_TOKENS = 10_000_000
MAX_RPS = 1e6
MAX_GPUS = 100_000
MAX_REQUESTS = 1_000_000_000   # the key's range; bounded work (simulator.workbound) refuses far fewer by default


@dataclass(frozen=True, slots=True)
class Range:
    """Allowed values: ``low <= v <= high`` (None: the field's own bound only)."""

    low: float | None
    high: float | None
    unit: str

    def text(self) -> str:
        """'at most 10,000,000 tokens', 'from 0.1 to 31,622,400 s'."""
        if self.low is None:
            return f"at most {_num(self.high)} {self.unit}".strip() if self.high is not None else "any"
        return f"from {_num(self.low)} to {_num(self.high) if self.high is not None else 'any'} {self.unit}".strip()


def _num(v: float) -> str:
    return f"{int(v):,}" if isinstance(v, int) or (float(v).is_integer() and abs(v) < 1e15) else f"{v:g}"


TOK = Range(None, MAX_TOKENS, "tokens")
RATE = Range(None, MAX_RPS, "requests/s")
TIME = Range(None, YEAR_S, "s (one year)")
PERIOD = Range(0.1, YEAR_S, "s")
GPUS = Range(None, MAX_GPUS, "")
REPLICAS = Range(None, MAX_GPUS, "replicas")
FRACTION = Range(None, 1.0, "")
MINUTES = Range(None, YEAR_S / 60, "minutes")
HOURS_MTBF = Range(1e-4, 1e7, "hours")   # 0.36 s: stress tests fail replicas every few seconds
PER_HOUR = Range(None, 3600.0, "per hour")

RANGES: dict[str, Range] = {
    # lengths (LengthDist members)
    "value": TOK, "low": TOK, "high": TOK, "max": TOK, "mean": TOK, "stddev": TOK,
    # beyond 4, exp(-sigma^2/2) puts the median below mean/2,900: nearly every draw rounds to 1 token
    "sigma": Range(None, 4.0, "(standard deviation of ln(length))"),
    # arrivals
    "rate_rps": RATE, "mean_rps": RATE,
    "cv": Range(None, 100.0, "(coefficient of variation)"),
    "peak_to_trough": Range(None, 1e6, "(ratio)"),
    "period_s": Range(1.0, YEAR_S, "s"), "peak_at_s": TIME,
    "requests": Range(None, MAX_REQUESTS, "requests"), "warmup_requests": Range(None, MAX_REQUESTS, "requests"),
    "concurrency": Range(None, 10_000_000, "users"),
    "think_time_s": TIME, "start_spread_s": TIME,
    "time_scale": Range(1e-6, 1e6, "(factor)"),
    "weight": Range(None, 1e9, "(relative share)"), "priority": Range(-1_000_000, 1_000_000, ""),
    "duration_s": TIME, "horizon_s": TIME,
    "prefix_cache_hit_rate": FRACTION, "cache_hit_rate": FRACTION,
    # shared prefixes, sessions, prefix-aware routing, KV offload tiers
    "groups": Range(None, MAX_REQUESTS, "groups"), "system_prompt_tokens": TOK, "turns": Range(None, 10_000, "turns"),
    "cache_threshold": FRACTION, "balance_abs_threshold": Range(None, MAX_REQUESTS, "requests"),
    "balance_rel_threshold": Range(None, 1e6, "(ratio)"),
    "cpu_gib": Range(None, 1e6, "GiB"), "nvme_gib": Range(None, 1e8, "GiB"),
    "pcie_gbps": Range(None, 1e4, "GB/s"), "nvme_gbps": Range(None, 1e4, "GB/s"),
    "pcie_latency_us": Range(None, 1e7, "us"), "nvme_latency_us": Range(None, 1e7, "us"),
    # cluster, router, network
    "replicas": REPLICAS, "min_replicas": REPLICAS, "max_replicas": REPLICAS,
    # several models on one pool (scenario.deployments)
    "GpuPool.gpus": GPUS, "window_s": PERIOD,
    "network_hop_ms": Range(None, 60_000.0, "ms (one minute)"),
    "seed": Range(0, 2**63 - 1, "(a non-negative integer)"),
    # replica and engines
    "tp": GPUS, "pp": GPUS, "dp": GPUS, "cp": GPUS, "ep": GPUS, "dp_shard": GPUS, "etp": GPUS,
    "virtual_stages": Range(None, 1024, "stages"),
    "attention_dp": GPUS, "expert_skew": Range(None, 1e5, "(factor; at most ep, costmodel/moe.py max_skew)"),
    "max_queue": Range(None, MAX_REQUESTS, "requests"),
    "kv_cache_fraction": FRACTION,
    "host_us_per_request": Range(None, 1e6, "us (one second per request)"),
    "acceptance_rate": FRACTION, "num_speculative_tokens": Range(None, 64, "tokens"),
    "acceptance_concentration": Range(None, 1e6, "(Beta a + b)"),
    "max_num_seqs": Range(None, 10_000_000, "sequences"),
    "max_batched_tokens": Range(None, 100 * MAX_TOKENS, "tokens"),
    "max_prefill_tokens": Range(None, 100 * MAX_TOKENS, "tokens"),
    "kv_block_tokens": Range(None, 65_536, "tokens"),
    "max_batch_size": Range(None, 10_000_000, "requests"),
    "max_queue_delay_ms": Range(None, 3_600_000.0, "ms (one hour)"),
    "preferred_batch_sizes": Range(1, 10_000_000, "requests"),
    "latency_table": Range(None, 10_000_000, "(batch sizes; seconds up to 3,600)"),
    "new_token_ratio": FRACTION, "min_new_token_ratio": FRACTION, "new_token_ratio_decay": Range(None, 1e6, ""),
    # autoscaling
    "sync_period_s": PERIOD, "forecast_period_s": PERIOD, "schedule_period_s": PERIOD,
    "look_back_s": PERIOD, "stable_window_s": PERIOD, "panic_window_s": PERIOD,
    "cooldown_s": TIME, "scale_up_stabilization_s": TIME, "scale_down_stabilization_s": TIME,
    "model_load_s": TIME, "node_provision_s": TIME,
    "target": Range(None, 1e9, "(per replica)"), "target_utilization": FRACTION,
    "tolerance": Range(None, 100.0, "(fraction)"), "headroom": Range(None, 1000.0, "(factor)"),
    "panic_threshold": Range(None, 1000.0, "(factor)"),
    "ScheduledConfig.schedule": Range(None, MAX_GPUS, "(replicas; times up to one year)"),
    "Diurnal.schedule": Range(None, MAX_RPS, "(requests/s; times up to one year)"),
    # faults and SLO
    "replica_mtbf_hours": HOURS_MTBF, "node_mtbf_hours": HOURS_MTBF,
    "spot_fraction": FRACTION, "spot_preemptions_per_hour": Range(None, 60.0, "per hour"),
    "spot_notice_s": Range(None, 86_400.0, "s"), "max_retries": Range(None, 100, "retries"),
    "ttft_p99_s": TIME, "tpot_p99_s": TIME, "e2e_p99_s": TIME,
    **{f"{m}_{q}_s": TIME for m in ("ttft", "tpot", "itl", "e2e") for q in ("p50", "p90", "p99")},
    "usd_per_gpu_hour": Range(None, 10_000.0, "USD"), "usd_per_gpu_hour_by_gpu": Range(None, 10_000.0, "USD"),
    # training
    "nodes": GPUS, "gpus_per_node": Range(None, 1024, "GPUs"),
    "nics_per_node": Range(None, 64, "NICs"), "nic_gbps": Range(None, 10_000.0, "Gb/s"),
    "oversubscription": Range(None, 64.0, "(taper factor)"), "latency_us": Range(None, 1e5, "us"),
    "seq_len": TOK, "global_batch": Range(None, 10_000_000, "sequences"),
    "micro_batch": Range(None, 10_000_000, "sequences"),
    "total_tokens": Range(None, 1e16, "tokens (600x Llama 3's 15.6T)"),
    "dispatch_us": Range(None, 1e6, "us (one second per kernel)"),
    "moe_capacity_factor": Range(None, 1000.0, "(times the balanced share; beyond the experts' count pads only)"),
    "samples_per_s_per_node": Range(None, 1e9, "samples/s"), "storage_gb_s": Range(None, 1e5, "GB/s"),
    "bytes_per_sample": Range(None, 1e12, "bytes"),
    "restart_minutes": MINUTES, "checkpoint_interval_minutes": Range(0.1, YEAR_S / 60, "minutes"),
    "checkpoint_write_gb_s": Range(None, 1e5, "GB/s"), "runs": Range(None, 10_000, "Monte Carlo runs"),
}


def range_of(model: str, key: str) -> Range | None:
    """The documented range of ``key`` in the model class named ``model`` (None: none documented)."""
    return RANGES.get(f"{model}.{key}") or RANGES.get(key)


def _numbers(value: Any) -> list[float]:
    """The numbers in a key's value: itself, or the items of a list of numbers or of pairs."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _numbers(v)]
    if isinstance(value, dict):         # a mapping's values (pricing.usd_per_gpu_hour_by_gpu)
        return [x for v in value.values() for x in _numbers(v)]
    return []


def check(model: str, key: str, value: Any) -> Any:
    """``value`` when it is within ``key``'s documented range (a pydantic error otherwise)."""
    nums = _numbers(value)
    if not nums:
        return value
    if any(isinstance(v, float) and not math.isfinite(v) for v in nums):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    r = range_of(model, key)
    if r is None:
        return value
    if isinstance(value, list | tuple) and value and isinstance(value[0], list | tuple):
        nums = [pair[1] for pair in value]       # schedules and tables: [[t_s or batch, value], ...]
        times = [pair[0] for pair in value]
        limit = 10_000_000 if key == "latency_table" else YEAR_S
        if any(t > limit for t in times):
            raise PydanticCustomError("out_of_range", "its first column must be at most {limit}", {"limit": _num(limit)})
        if key == "latency_table" and any(s > 3600 for s in nums):
            raise PydanticCustomError("out_of_range", "its seconds must be at most 3,600")
        if key == "latency_table":
            return value
    for v in nums:
        if (r.high is not None and v > r.high) or (r.low is not None and v < r.low):
            raise PydanticCustomError("out_of_range", "must be {range}", {"range": r.text()})
    return value
