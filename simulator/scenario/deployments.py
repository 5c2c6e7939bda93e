"""Several models on one GPU budget (``kind: multi_model``): a fixed pool of GPUs, the serving
deployments that share it (each a serving scenario's body: its model, replica, workload, scaling
and SLO) and the pool's policy, which may move replicas from one deployment to another.

What runs is in ``simulator/serving/deployments.py``; here are the keys and the checks that need
no simulation: names unique, one horizon for all, the replicas at the start fit in the pool (the
sum of initial replicas x GPUs per replica <= ``pool.gpus``), per-deployment bounds that only the
moving policy reads, and per-deployment autoscaling only where the pool does not move replicas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from ..errors import CapsimError
from .base import HARDWARE_DOC, MODEL_DOC, Precision, Pricing, Variants, _Strict
from .serving import (
    _AUTOSCALING,
    _REPLICA_DOC,
    SLO,
    AutoscalingUnion,
    ReplicaKeys,
    ServingCluster,
    ServingScenario,
)
from .workload import Workload

if TYPE_CHECKING:
    from ..serving.autoscalers.base import AutoscalingConfig
from ..serving.autoscalers.registry import AUTOSCALERS
from ..serving.engines.base import ENGINES


class GpuPool(_Strict):
    """The GPUs every deployment draws its replicas from: a fixed reservation, paid whole for the span."""

    hardware: str = Field(description=HARDWARE_DOC + "; every deployment's replicas run on it")
    gpus: int = Field(ge=1, description="GPUs in the pool; replicas starting, serving or draining never hold more")


class PoolPolicyBase(_Strict):
    """What every pool policy shares: its name."""

    kind: str = Field(description="static (fixed shares) or proportional (re-divide the pool by measured load)")


class StaticPolicy(PoolPolicyBase):
    """Fixed shares: each deployment keeps the replicas it starts with (and its own autoscaler, if it has
    one, grows only into GPUs of the pool nobody holds). Nothing moves between deployments."""

    kind: Literal["static"] = Field(default="static", description="fixed shares: nothing moves between deployments")


class ProportionalPolicy(PoolPolicyBase):
    """Every ``period_s`` the pool measures each deployment's load over the last ``window_s`` and
    re-divides its GPUs in proportion to the GPUs that load needs (``signal``), within each
    deployment's min_replicas..max_replicas. It moves replicas at most once per ``cooldown_s``: a
    replica taken away drains (its GPUs free when its last request finishes), a replica given starts
    cold (the deployment's autoscaling.node_provision_s + model_load_s) on GPUs that are free."""

    kind: Literal["proportional"] = Field(default="proportional", description=(
        "re-divide the pool's GPUs by the deployments' measured load"))
    signal: Literal["load", "outstanding"] = Field(default="load", description=(
        "load (default): the arrival rate over one replica's modelled capacity within its TPOT bound "
        "(plan.capacity.steady_state) x its GPUs; "
        "outstanding: requests queued or running over max_num_seqs x its GPUs (the batch slots they fill)"))
    period_s: float = Field(default=30.0, ge=1, description=(
        "s between the pool's measurements and decisions; default 30 s (capsim's, twice Kubernetes HPA's 15 s sync)"))
    window_s: float = Field(default=120.0, gt=0, description=(
        "s of measurements averaged into a deployment's load; default 120 s (capsim's; two of Knative KPA's 60 s "
        "stable windows)"))
    cooldown_s: float = Field(default=300.0, ge=0, description=(
        "s after a move before the next; default 300 s (Kubernetes HPA's scale-down stabilization window)"))


POOL_POLICIES: Variants[PoolPolicyBase] = Variants("kind", default="static", what="pool policy")
POOL_POLICIES.register(StaticPolicy)
POOL_POLICIES.register(ProportionalPolicy)
if TYPE_CHECKING:
    PoolPolicyKeys = PoolPolicyBase
else:
    PoolPolicyKeys = POOL_POLICIES.annotation()


class Deployment(_Strict):
    """One model's serving deployment in the pool: a serving scenario's body without the keys the pool
    owns (hardware and pricing are the pool's, seed the scenario's plus the deployment's index)."""

    name: str = Field(description="the deployment's label (unique within the pool)")
    model: str | dict[str, Any] = Field(description=MODEL_DOC)
    precision: Precision = Field(default="bf16", description="number format of the weights and GEMMs; default bf16")
    replica: ReplicaKeys = ENGINES.field(description=_REPLICA_DOC)
    workload: Workload = Field(default_factory=Workload, description="its arrivals and request lengths")
    cluster: ServingCluster = Field(default_factory=ServingCluster, description="its replicas at the start and router")
    autoscaling: AutoscalingUnion = AUTOSCALERS.field(description=(
        _AUTOSCALING + "; with policy proportional only none (the pool scales), whose keys give a moved "
                       "replica's start-up"))
    slo: SLO = Field(default_factory=SLO, description="its latency bounds")
    min_replicas: int | None = Field(default=None, ge=1, description=(
        "policy proportional: the fewest replicas it keeps; default 1"))
    max_replicas: int | None = Field(default=None, ge=1, description=(
        "policy proportional: the most replicas it gets; default as many as the pool holds"))

    @property
    def gpus_per_replica(self) -> int:
        r = self.replica
        return r.tp * r.attention_dp * r.pp

    def initial_replicas(self) -> int:
        """``cluster.replicas`` within the autoscaler's bounds (an autoscaler starts clamped to them)."""
        a: AutoscalingConfig = self.autoscaling
        n = self.cluster.replicas
        lo, hi = getattr(a, "min_replicas", None), getattr(a, "max_replicas", None)
        if lo is not None and hi is not None:
            n = max(lo, min(hi, n))
        return n


class MultiModelScenario(_Strict):
    """Several serving deployments on one fixed pool of GPUs, and the policy that shares it."""

    kind: Literal["multi_model"] = Field(default="multi_model", description="multi_model (or serving, training)")
    name: str = Field(default="multi_model", description="label in results and reports")
    pool: GpuPool = Field(description="the GPUs the deployments share")
    deployments: list[Deployment] = Field(min_length=1, description="the models served from the pool")
    policy: PoolPolicyKeys = POOL_POLICIES.field(description=(
        "how the pool is shared: kind static (default: fixed shares) or proportional (replicas move to the load)"))
    pricing: Pricing = Field(default_factory=Pricing, description="where the pool's GPU-hours are bought")
    seed: int = Field(default=0, description="seed of every random stream; deployment N draws from seed + N")

    @model_validator(mode="after")
    def _fits(self) -> MultiModelScenario:
        names = [d.name for d in self.deployments]
        if len(set(names)) != len(names):
            raise ValueError(f"deployments: names must be unique (got {', '.join(names)})")
        horizons = {d.workload.horizon_s for d in self.deployments}
        if len(horizons) > 1:
            raise ValueError("deployments.N.workload.horizon_s must be the same for every deployment (the pool runs "
                             f"one clock); got {', '.join(f'{d.name}: {d.workload.horizon_s}' for d in self.deployments)}")
        moving = self.policy.kind != "static"
        for i, d in enumerate(self.deployments):
            if not moving and (d.min_replicas is not None or d.max_replicas is not None):
                key = "min_replicas" if d.min_replicas is not None else "max_replicas"
                raise ValueError(f"deployments.{i}.{key} ({d.name}) is read by a policy that moves replicas; policy "
                                 "static keeps each deployment's cluster.replicas: remove it or set policy.kind: "
                                 "proportional")
            if moving and d.autoscaling.policy != "none":
                raise ValueError(f"deployments.{i}.autoscaling.policy is {d.autoscaling.policy!r} ({d.name}): with "
                                 f"policy {self.policy.kind} the pool sets every deployment's replicas; use "
                                 "autoscaling.policy none (its node_provision_s and model_load_s still time a "
                                 "moved replica's start) or policy.kind static")
            lo, hi, n = self.bounds(i)
            if not lo <= n <= hi:
                raise ValueError(f"deployments.{i}.cluster.replicas is {n} ({d.name}): outside its "
                                 f"min_replicas..max_replicas {lo}..{hi}")
        used = [(d.name, d.initial_replicas(), d.gpus_per_replica) for d in self.deployments]
        need = sum(n * g for _, n, g in used)
        if need > self.pool.gpus:
            parts = " + ".join(f"{name} {n} x {g}" for name, n, g in used)
            raise ValueError(f"pool.gpus is {self.pool.gpus} but the deployments start with {need} GPUs "
                             f"(replicas x GPUs per replica: {parts}); raise pool.gpus to {need} or start fewer "
                             "replicas (deployments.N.cluster.replicas)")
        if moving:
            least = sum(self.bounds(i)[0] * d.gpus_per_replica for i, d in enumerate(self.deployments))
            if least > self.pool.gpus:
                raise ValueError(f"pool.gpus is {self.pool.gpus} but the deployments' min_replicas need {least} GPUs")
        return self

    def bounds(self, i: int) -> tuple[int, int, int]:
        """Deployment ``i``'s (min, max, initial) replicas under the pool's policy."""
        d = self.deployments[i]
        n = d.initial_replicas()
        if self.policy.kind == "static":
            return n, n, n
        lo = d.min_replicas or 1
        hi = d.max_replicas if d.max_replicas is not None else max(self.pool.gpus // d.gpus_per_replica, lo)
        return lo, hi, n

    def serving_scenario(self, i: int) -> ServingScenario:
        """Deployment ``i`` as the serving scenario it would be alone: the pool's hardware and pricing,
        seed ``seed + i`` (so each deployment draws its own streams)."""
        from .loading import parse_scenario

        d = self.deployments[i]
        doc = d.model_dump(mode="json", exclude_none=True, exclude={"min_replicas", "max_replicas"})
        doc.update(kind="serving", hardware=self.pool.hardware, seed=self.seed + i,
                   pricing=self.pricing.model_dump(mode="json", exclude_none=True))
        sc = parse_scenario(doc, where=f"deployments[{d.name}]")
        if not isinstance(sc, ServingScenario):   # kind: serving is set above
            raise CapsimError(f"deployments[{d.name}] is not a serving scenario")
        return sc


ENGINES.hosted_by(Deployment, "replica")
AUTOSCALERS.hosted_by(Deployment, "autoscaling")
POOL_POLICIES.hosted_by(MultiModelScenario, "policy")
