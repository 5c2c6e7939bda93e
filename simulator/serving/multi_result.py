"""The typed result of several models on one GPU pool: per deployment its requests, SLO attainment,
latencies and the GPU-hours it held; for the pool its GPU-hours, cost, utilization and the replicas
the policy moved.

The pool is a fixed reservation: all ``pool.gpus`` are paid for the whole span (0 to the last
completion, or the horizon) at the pool's price; a deployment's ``cost_usd`` is the GPU-hours its
replicas held (from request to release) at that price, and what nobody held is ``idle_gpu_hours``.
Each deployment's full serving result (frames included) is in ``results``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ..hardware import get_profile, resolve_price
from ..invariants import check_serving_counts, check_summary
from ..result_views import NOT_SUMMARY, ResultViews
from ..scenario.deployments import MultiModelScenario
from .frames import busy_seconds, replica_seconds
from .outcome import ServingResult, _plain
from .summary import Percentiles, ReplicaCount, rounded

if TYPE_CHECKING:
    from .deployments import Pool
    from .simulate import Cluster


@dataclass(frozen=True, kw_only=True)
class DeploymentSummary:
    """One deployment's outcome in the pool."""

    model: str
    arrived: int
    completed: int
    rejected: int
    failed: int
    in_flight: int
    slo_attainment: float | None
    """share of its finished requests within every bound of its SLO; None without one"""
    slo_met: bool | None
    throughput_rps: float
    output_tokens_per_s: float
    ttft_s: Percentiles | None
    tpot_s: Percentiles | None
    e2e_s: Percentiles
    gpus_per_replica: int
    replicas: ReplicaCount
    replica_hours: float
    gpu_hours: float
    """GPU-hours its replicas held (starting, serving or draining)"""
    gpu_utilization: float
    """busy GPU-seconds over the GPU-seconds its ready replicas held"""
    replicas_given: int
    """replicas the pool's policy started for it"""
    replicas_taken: int
    """replicas the pool's policy took from it"""
    cost_usd: float
    """its GPU-hours at the pool's price"""

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class PoolSummary:
    """The pool over the span."""

    hardware: str
    gpus: int
    gpu_hours: float
    """pool.gpus x the span: what was paid for"""
    held_gpu_hours: float
    idle_gpu_hours: float
    """GPU-hours no deployment held"""
    allocation: float
    """held over paid GPU-hours"""
    utilization: float
    """busy GPU-seconds (any kernel running) over the pool's GPU-seconds"""
    peak_gpus_held: int
    """the most GPUs held at once (never above gpus)"""
    usd_per_gpu_hour: float
    price_source: str
    usd_per_hour: float
    cost_usd: float
    moves: int
    """replicas the policy started on GPUs another deployment gave up"""

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True, eq=False)
class MultiModelResult(ResultViews):
    """Outcome of a multi_model run: the pool and each deployment."""

    kind: ClassVar[str] = "multi_model"
    scenario: MultiModelScenario = field(repr=False, metadata=NOT_SUMMARY)
    name: str
    policy: str
    simulated_s: float
    pool: PoolSummary
    deployments: dict[str, DeploymentSummary]
    warnings: tuple[str, ...]
    results: dict[str, ServingResult] = field(repr=False, metadata=NOT_SUMMARY)
    """each deployment's serving result (latencies, frames) as ``capsim serve`` gives it"""
    allocation: pd.DataFrame = field(repr=False, metadata=NOT_SUMMARY)
    """GPUs held per deployment: one row per change (``t_s`` and a column per deployment)"""

    @property
    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "policy": self.policy, "simulated_s": self.simulated_s,
                "pool": self.pool.to_dict(), "deployments": {k: v.to_dict() for k, v in self.deployments.items()},
                "warnings": list(self.warnings)}

    def allocation_frame(self) -> pd.DataFrame:
        return self.allocation


def _pool_wording(w: str, sc: MultiModelScenario) -> str:
    """A deployment's warning as the pool reads it: under a moving policy the replica count is the pool's
    doing, so a fleet that flaps names the policy's keys, not an autoscaler's."""
    if sc.policy.kind != "static" and w.startswith("autoscaling oscillates"):
        return ("the pool's moves oscillate" + w.removeprefix("autoscaling oscillates").split(";")[0]
                + "; lengthen policy.cooldown_s or policy.window_s")
    return w


def build_multi_result(sc: MultiModelScenario, results: list[ServingResult], clusters: list[Cluster], pool: Pool,
                       *, span: float) -> MultiModelResult:
    """The result: each deployment's counts and SLO from its serving result, the GPUs from the pool's log."""
    hw = get_profile(sc.pool.hardware)
    usd_gpu_h, source = resolve_price(sc.pricing, hw, gpus_per_node=min(sc.pool.gpus, hw.nvlink_domain_gpus))
    span = max(span, 1e-12)
    names = [d.name for d in sc.deployments]
    deps: dict[str, DeploymentSummary] = {}
    busy_total = held_total = 0.0
    for i, (name, r, c) in enumerate(zip(names, results, clusters, strict=True)):
        svc, g = c.stages[0], pool.gprs[i]
        check_serving_counts(arrived=r.arrived, completed=r.completed, rejected=r.rejected, failed=r.failed,
                             in_flight=r.in_flight, finished_unarrived=0)
        busy = g * sum(busy_seconds(rep, span) for rep in svc.all)
        held = g * replica_seconds(svc.lives, span, "requested")   # to the pool's end (a fleet outlives its work)
        ready = g * replica_seconds(svc.lives, span, "ready")
        busy_total, held_total = busy_total + busy, held_total + held
        deps[name] = DeploymentSummary(
            model=r.model, arrived=r.arrived, completed=r.completed, rejected=r.rejected, failed=r.failed,
            in_flight=r.in_flight, slo_attainment=r.slo_attainment, slo_met=r.slo_met,
            throughput_rps=r.throughput_rps, output_tokens_per_s=r.output_tokens_per_s, ttft_s=r.ttft_s,
            tpot_s=r.tpot_s, e2e_s=r.e2e_s, gpus_per_replica=g, replicas=r.replicas, replica_hours=r.replica_hours,
            gpu_hours=rounded(held / 3600), gpu_utilization=rounded(busy / max(ready, 1e-12), 4),
            replicas_given=pool.moves[i], replicas_taken=pool.taken[i],
            cost_usd=rounded(held / 3600 * usd_gpu_h))
    paid = sc.pool.gpus * span
    log = np.array(pool.log_held, dtype=np.int64).reshape(len(pool.log_t), len(names))
    allocation = pd.DataFrame(log, columns=names).assign(t_s=pool.log_t)[["t_s", *names]]
    peak = int(log.sum(axis=1).max()) if len(log) else 0
    result = MultiModelResult(
        scenario=sc, name=sc.name, policy=sc.policy.kind, simulated_s=rounded(span),
        pool=PoolSummary(hardware=hw.name, gpus=sc.pool.gpus, gpu_hours=rounded(paid / 3600),
                         held_gpu_hours=rounded(held_total / 3600),
                         idle_gpu_hours=rounded(max(paid - held_total, 0.0) / 3600),
                         allocation=rounded(held_total / paid, 4), utilization=rounded(busy_total / paid, 4),
                         peak_gpus_held=peak, usd_per_gpu_hour=rounded(usd_gpu_h), price_source=source,
                         usd_per_hour=rounded(sc.pool.gpus * usd_gpu_h), cost_usd=rounded(paid / 3600 * usd_gpu_h),
                         moves=sum(pool.moves)),
        deployments=deps,
        warnings=tuple(f"{n}: {_pool_wording(w, sc)}" for n, r in zip(names, results, strict=True) for w in r.warnings),
        results=dict(zip(names, results, strict=True)), allocation=allocation)
    check_summary(result.summary, "multi_model")
    return result
