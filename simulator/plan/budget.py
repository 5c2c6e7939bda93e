"""``plan budget``: a year (or any months) of GPU-hours and dollars for one pre-training run, a
retraining cadence and growing serving demand, month by month, on-demand against spot (and reserved
where the price catalog lists a reserved price).

A budget file names scenario files for the jobs (their GPUs, layout, reliability) and says how much
of each: tokens of the pre-training run, tokens of each retraining run and how often, the serving
peak in the first month and its monthly growth. Each training run is simulated once per market
(spot preemptions lengthen it) and its GPU-hours are spread over the months its wall-clock time
covers; serving is provisioned statically for each month's peak, with replicas = ceil(peak / one
replica's capacity under the SLO), the capacity found by simulation (:func:`replica_capacity_rps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import CapsimError
from ..files import read_yaml
from ..scenario import ServingScenario, TrainingScenario, parse_scenario


class _Strict(BaseModel):
    """A budget file's mapping: unknown keys are errors; every number has its range here (the budget is
    not a scenario, so simulator.limits does not hold its keys)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

HOURS_PER_MONTH = 365 * 24 / 12
"""730 h: a twelfth of a 365-day year (the cloud providers' monthly-billing convention)"""
HOURS_PER_WEEK = 168.0
MARKETS = ("on_demand", "spot")
"""bisection steps of the per-replica capacity: the answer within 1/128 of the first bracket"""


class PretrainingPlan(_Strict):
    """One pre-training run."""

    scenario: str = Field(description="a training scenario file (model, GPUs, layout, reliability); relative to "
                                      "the budget file")
    tokens: float = Field(gt=0, le=1e15, description="tokens to train on (overrides the scenario's "
                                                      "training.total_tokens)")
    start_month: int = Field(default=1, ge=1, le=120, description="the month it starts in (1: the first)")


class RetrainingPlan(_Strict):
    """Fine-tuning or retraining runs at a fixed cadence (as data drifts)."""

    scenario: str = Field(description="a training scenario file; relative to the budget file")
    tokens: float = Field(gt=0, le=1e15, description="tokens of each run")
    every_weeks: float = Field(ge=0.1, le=520, description="weeks between the starts of two runs")
    start_month: int = Field(default=1, ge=1, le=120, description="the month of the first run")


class ServingPlan(_Strict):
    """Serving demand: a peak rate in the first month that grows every month."""

    scenario: str = Field(description="a serving scenario file (model, GPU, replica, request lengths); relative "
                                      "to the budget file")
    peak_rps: float = Field(gt=0, le=1e6, description="peak arrival rate in the first month, requests/s")
    monthly_growth: float = Field(default=0.0, ge=-0.99, le=10, description="growth of the peak per month "
                                                                             "(0.1: +10% a month)")
    slo: dict[str, float] = Field(default_factory=dict, description="SLO keys of the serving scenario "
                                                                     "(ttft_p99_s: 2, ...); default: the scenario's")
    start_month: int = Field(default=1, ge=1, le=120, description="the month serving starts")


class BudgetFile(_Strict):
    """A plan of a year's training and serving."""

    name: str = Field(default="budget", description="label in the table and report")
    months: int = Field(default=12, ge=1, le=120, description="months to budget")
    pretraining: PretrainingPlan | None = None
    retraining: RetrainingPlan | None = None
    serving: ServingPlan | None = None


@dataclass(frozen=True, slots=True)
class Month:
    """One month's GPU-hours (per market: spot runs take longer) and dollars."""

    month: int
    gpu_hours: dict[str, dict[str, float]]
    """market → part (pretraining, retraining, serving) → GPU-hours"""
    cost_usd: dict[str, float]
    """market (on_demand, spot, reserved where priced) → $"""
    serving_replicas: int
    serving_peak_rps: float

    def to_dict(self) -> dict[str, Any]:
        return {"month": self.month, "gpu_hours": self.gpu_hours, "cost_usd": self.cost_usd,
                "serving_replicas": self.serving_replicas, "serving_peak_rps": self.serving_peak_rps}


@dataclass(frozen=True)
class Budget:
    name: str
    months: list[Month]
    notes: list[str] = field(default_factory=list)
    """what each part was simulated as (days per run, capacity per replica, prices)"""
    capacity_rps: float | None = None

    def total(self, market: str) -> float:
        return sum(m.cost_usd.get(market, 0.0) for m in self.months)

    def to_dict(self) -> dict[str, Any]:
        markets = sorted({k for m in self.months for k in m.cost_usd})
        return {"kind": "plan_budget", "name": self.name, "months": [m.to_dict() for m in self.months],
                "total_cost_usd": {k: self.total(k) for k in markets}, "capacity_rps_per_replica": self.capacity_rps,
                "notes": self.notes}


def load_budget(path: str | Path) -> BudgetFile:
    doc = read_yaml(path, "budget file")
    if not isinstance(doc, dict):
        raise CapsimError(f"{path}: a budget file is a mapping (name, months, pretraining, retraining, serving)")
    try:
        return BudgetFile(**doc)
    except ValidationError as e:
        errs = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")   # a typo first: it explains the rest
        err = errs[0]
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            model: Any = BudgetFile
            for part in err["loc"][:-1]:
                model = model.model_fields[str(part)].annotation.__args__[0]   # X | None -> X
            allowed = ", ".join(model.model_fields)
            raise CapsimError(f"{path}: unknown key {loc!r} in the budget file; allowed there: {allowed}") from None
        raise CapsimError(f"{path}: {loc}: {err['msg']}") from None


def _spread(start_h: float, wall_h: float, gpus: int, months: int) -> list[float]:
    """GPU-hours of a job running ``gpus`` GPUs from ``start_h`` for ``wall_h`` hours, per month."""
    out = [0.0] * months
    for k in range(months):
        lo, hi = k * HOURS_PER_MONTH, (k + 1) * HOURS_PER_MONTH
        out[k] = max(0.0, min(hi, start_h + wall_h) - max(lo, start_h)) * gpus
    return out


def _training_run(path: Path, tokens: float, market: str) -> tuple[float, int, float]:
    """(wall-clock hours, GPUs, $ per GPU-hour) of the scenario's run on ``tokens`` tokens in ``market``."""
    from ..scenario import load_scenario
    from ..training import simulate_training

    sc = load_scenario(path, [f"training.total_tokens={tokens!r}", f"pricing.market={market}"])
    if not isinstance(sc, TrainingScenario):
        raise CapsimError(f"{path}: a training scenario is needed here (kind: training)")
    r = simulate_training(sc)
    if r.job is None:
        raise CapsimError(f"{path}: the layout does not fit in memory ({r.infeasible_reason})")
    return r.job.time_to_train_days * 24, r.gpus, r.job.usd_per_gpu_hour


def reserved_usd_per_gpu_hour(hardware: str) -> float | None:
    """A reserved price for the GPU where the catalog lists one (an instance named 'reserved'), else None."""
    from ..hardware import price_catalog

    rows = [i for i in price_catalog() if i.gpu == hardware and "reserved" in i.instance.lower()
            and i.on_demand_usd_per_hour]
    return min(i.on_demand_usd_per_hour / i.gpus for i in rows) if rows else None  # type: ignore[operator]


def replica_capacity_rps(doc: dict[str, Any]) -> float:
    """The highest Poisson rate one replica of the serving scenario ``doc`` sustains under its SLO,
    from the serving planner's capacity search (:func:`simulator.plan.capacity.max_rate_per_replica`:
    the cost model's estimate, then simulations long enough that a burst the replica absorbs is not
    taken for a rate it sustains)."""
    from .capacity import max_rate_per_replica

    d = {k: v for k, v in doc.items() if k != "autoscaling"}
    found = max_rate_per_replica(d)
    if found.max_rate_rps <= 0:
        raise CapsimError(f"one replica cannot meet the SLO even at {found.bracket_rps[1]:.3g} requests/s: relax "
                          "serving.slo or use a larger replica")
    return found.max_rate_rps


def plan_budget(plan: BudgetFile, *, base_dir: Path) -> Budget:
    """Month by month GPU-hours and dollars of ``plan`` (files relative to ``base_dir``)."""
    from ..hardware import get_profile, resolve_price

    n = plan.months
    parts: dict[str, dict[str, list[float]]] = {mk: {} for mk in MARKETS}
    price: dict[str, dict[str, float]] = {mk: {} for mk in MARKETS}
    reserved: dict[str, float | None] = {}
    notes: list[str] = []
    for part, item in (("pretraining", plan.pretraining), ("retraining", plan.retraining)):
        if item is None:
            continue
        path = base_dir / item.scenario
        for mk in MARKETS:
            wall_h, gpus, usd = _training_run(path, item.tokens, mk)
            start = (item.start_month - 1) * HOURS_PER_MONTH
            if isinstance(item, RetrainingPlan):
                runs = [start + j * item.every_weeks * HOURS_PER_WEEK
                        for j in range(math.ceil((n * HOURS_PER_MONTH - start) / (item.every_weeks * HOURS_PER_WEEK)))]
            else:
                runs = [start]
            hours = [0.0] * n
            for t0 in runs:
                hours = [a + b for a, b in zip(hours, _spread(t0, wall_h, gpus, n), strict=True)]
            parts[mk][part] = hours
            price[mk][part] = usd
            notes.append(f"{part} ({mk.replace('_', '-')}): {item.scenario}, {item.tokens:.3g} tokens on {gpus:,} GPUs, "
                         f"{wall_h / 24:,.1f} days per run, {len(runs)} run(s), ${usd:.2f}/GPU-hour")
        sc = parse_scenario(read_yaml(path, "scenario file"))
        assert isinstance(sc, TrainingScenario)
        reserved[part] = reserved_usd_per_gpu_hour(get_profile(sc.hardware).name)
    replicas = [0] * n
    peaks = [0.0] * n
    capacity = None
    if plan.serving is not None:
        s = plan.serving
        path = base_dir / s.scenario
        doc = read_yaml(path, "scenario file")
        doc = dict(doc or {})
        if s.slo:
            doc["slo"] = dict(s.slo)
        sc = parse_scenario(doc, where=str(path))
        if not isinstance(sc, ServingScenario):
            raise CapsimError(f"{path}: serving.scenario must be a serving scenario (kind: serving)")
        if not sc.slo.model_dump(exclude_none=True):
            raise CapsimError(f"{path}: the serving plan needs an SLO (serving.slo or the scenario's slo)")
        capacity = replica_capacity_rps(doc)
        gpus_per_replica = sc.replica.tp * sc.replica.pp
        hw = get_profile(sc.hardware)
        for mk in MARKETS:
            usd, _ = resolve_price(sc.pricing.model_copy(update={"market": mk}), hw, gpus_per_node=gpus_per_replica)
            price[mk]["serving"] = usd
        reserved["serving"] = reserved_usd_per_gpu_hour(hw.name)
        hours = [0.0] * n
        for k in range(s.start_month - 1, n):
            peaks[k] = s.peak_rps * (1 + s.monthly_growth) ** (k - s.start_month + 1)
            replicas[k] = math.ceil(peaks[k] / capacity)
            hours[k] = replicas[k] * gpus_per_replica * HOURS_PER_MONTH
        for mk in MARKETS:
            parts[mk]["serving"] = hours
        notes.append(f"serving: {s.scenario}, {capacity:.2f} requests/s per replica under the SLO "
                     f"({gpus_per_replica} GPU(s) each), static provisioning for each month's peak; spot priced "
                     "without preemptions")
    months = []
    for k in range(n):
        gh = {mk: {p: v[k] for p, v in parts[mk].items()} for mk in MARKETS}
        cost = {mk: sum(gh[mk][p] * price[mk][p] for p in gh[mk]) for mk in MARKETS}
        rates = [reserved.get(p) for p in gh["on_demand"]]
        if rates and all(r is not None for r in rates):
            cost["reserved"] = sum(gh["on_demand"][p] * (reserved[p] or 0.0) for p in gh["on_demand"])
        months.append(Month(k + 1, gh, cost, replicas[k], peaks[k]))
    return Budget(plan.name, months, notes, capacity)
