"""``plan train``: how many GPUs of which type, in what layout, to train a model on T tokens by a
deadline or within a budget, and what it costs.

The search crosses GPU types × GPU counts × every layout :func:`~simulator.sweep.evaluate.training_layouts`
enumerates with ``full=True`` (TP, PP, DP, CP, interleaving with a valid v, micro-batch, recompute,
ZeRO; EP added here for mixture-of-experts models). Nothing is simulated before two analytic prunes:

* a **lower bound** on every candidate's time and cost (:func:`step_lower_bound_s`): the step's
  FLOPs as capsim counts them (recomputation included) at the GPU's best GEMM efficiency, stretched
  by the pipeline bubble ``(m + (p-1)/v) / m``; failures and checkpoints only add to it. Candidates
  are visited cheapest bound first, and one whose bound (days, $) is already dominated by a simulated
  plan is skipped: it can be neither cheaper at the same speed nor faster at the same cost, so it
  cannot be on the frontier, the cheapest plan meeting the deadline or the fastest within the budget;
* **validity and memory fit** (the layout rules and the memory plan of ``capsim train``), checked only
  for the candidates the bound keeps.

The survivors run through the sweep executors (a local process pool or Ray) as full training-job
simulations (one step's pipeline, then the Monte Carlo of failures, restarts and checkpoints), so each
row is exactly what ``capsim train`` prints for its scenario (:attr:`PlanRow.scenario`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..catalog import get_model
from ..errors import CapsimError, unknown
from ..hardware import get_profile, profile_paths, resolve_price
from ..models import ModelSpec
from ..scenario import TrainingScenario, parse_scenario
from ..scenario.base import Pricing
from .bounds import work_bound_s

MAX_GPUS = 4096
"""the default count set's top: {8·2^k, 24·2^k} up to 4,096 GPUs (issue 18)"""
DEFAULT_COUNTS = tuple(sorted({b * 2**k for b in (8, 24) for k in range(10) if b * 2**k <= MAX_GPUS}))
GPUS_PER_NODE = 8
"""an HGX/DGX node, and the GPUs of the catalog's largest instance of each training GPU"""
DEFAULT_SEQ_LEN = 2048
"""GPT-3's context (Brown et al. 2020), the simulator's own default"""
DEFAULT_GLOBAL_BATCH = 1536
"""GPT-3 175B's batch in sequences (3.2M tokens at 2,048; Brown et al. 2020, Table 2.1); 1536 = 2^9·3
divides the data-parallel sizes of both count families (8·2^k and 24·2^k)"""
LLAMA3_NODE_MTBF_HOURS = 16384 / 8 * 54 * 24 / 419
"""6,335 h: Llama 3 405B's 419 unexpected interruptions in 54 days on 2,048 nodes of 8 H100s
(Dubey et al. 2024, Table 5; shared/reference/llama3_405b_interruptions.csv)"""
DEFAULT_RESTART_MINUTES = 10.0
"""the scenario's default restart time (simulator/scenario/training.py, assumed)"""
ROUND = 32
"""candidates bounded per round (per worker) before the survivors are simulated, cheapest first"""

Progress = Callable[[float, int], None] | None


@dataclass(frozen=True, slots=True)
class PlanLayout:
    """The parallel layout of one plan (as ``capsim train`` resolves it)."""

    tp: int
    pp: int
    dp: int
    cp: int
    ep: int
    micro_batch: int
    virtual_stages: int
    schedule: str
    zero_stage: int
    recompute: str
    sequence_parallel: bool

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "pp": self.pp, "dp": self.dp, "cp": self.cp, "ep": self.ep,
                "micro_batch": self.micro_batch, "virtual_stages": self.virtual_stages, "schedule": self.schedule,
                "zero_stage": self.zero_stage, "recompute": self.recompute,
                "sequence_parallel": self.sequence_parallel}

    def label(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}", f"DP{self.dp}"]
        parts += [f"CP{self.cp}"] if self.cp > 1 else []
        parts += [f"EP{self.ep}"] if self.ep > 1 else []
        parts += [f"v{self.virtual_stages}"] if self.virtual_stages > 1 else []
        parts += [f"mb{self.micro_batch}", f"ZeRO-{self.zero_stage}", f"rc:{self.recompute}"]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One simulated candidate: a GPU type, a count and a layout, with the whole run's time and cost."""

    hardware: str
    gpus: int
    nodes: int
    layout: PlanLayout
    time_to_train_days: float
    """mean wall-clock days over the job's Monte Carlo runs: failures, restarts and checkpoints included"""
    compute_days_without_failures: float
    """iterations × step time: the steps alone"""
    gpu_hours: float
    cost_usd: float
    usd_per_gpu_hour: float
    mfu: float
    memory_gib: float
    """per GPU, most loaded stage"""
    iteration_time_s: float
    tokens_per_s: float
    energy_kwh: float | None
    lower_bound_days: float
    """the analytic bound the search compared before simulating (≤ compute_days_without_failures): the
    roofline bound, or the stages' work bound where it is tighter"""
    meets_deadline: bool
    meets_budget: bool
    pareto: bool = False
    scenario: dict[str, Any] = field(default_factory=dict, repr=False)
    """the scenario document ``capsim train`` reproduces this row from"""

    @property
    def meets(self) -> bool:
        return self.meets_deadline and self.meets_budget

    def to_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "gpus": self.gpus, "nodes": self.nodes, "layout": self.layout.to_dict(),
                "time_to_train_days": self.time_to_train_days,
                "compute_days_without_failures": self.compute_days_without_failures, "gpu_hours": self.gpu_hours,
                "cost_usd": self.cost_usd, "usd_per_gpu_hour": self.usd_per_gpu_hour, "mfu": self.mfu,
                "memory_gib": self.memory_gib, "iteration_time_s": self.iteration_time_s,
                "tokens_per_s": self.tokens_per_s, "energy_kwh": self.energy_kwh,
                "lower_bound_days": self.lower_bound_days, "meets_deadline": self.meets_deadline,
                "meets_budget": self.meets_budget, "pareto": self.pareto}


@dataclass(frozen=True, slots=True)
class SearchCounts:
    """How many candidates each stage of the search saw."""

    enumerated: int
    pruned_by_bound: int
    invalid: int
    out_of_memory: int
    simulated: int
    failed: int

    def to_dict(self) -> dict[str, int]:
        return {"enumerated": self.enumerated, "pruned_by_bound": self.pruned_by_bound, "invalid": self.invalid,
                "out_of_memory": self.out_of_memory, "simulated": self.simulated, "failed": self.failed}


@dataclass(frozen=True)
class TrainingPlan:
    """The answer of :func:`plan_training`; ``rows`` are ranked: plans meeting every goal first, cheapest first."""

    model: str
    params_b: float
    total_tokens: float
    deadline_days: float | None
    budget_usd: float | None
    market: str
    provider: str | None
    rows: list[PlanRow]
    counts: SearchCounts
    skipped_gpus: dict[str, str]
    """GPU types left out, with why (no price, cannot train this precision)"""
    model_flops_per_step: float
    """the step's model FLOPs as capsim counts them (no recomputation), all GPUs together"""
    iterations: int

    @property
    def cheapest_meeting_deadline(self) -> PlanRow | None:
        ok = [r for r in self.rows if r.meets]
        return min(ok, key=lambda r: (r.cost_usd, r.time_to_train_days)) if ok and self.deadline_days else None

    @property
    def fastest_within_budget(self) -> PlanRow | None:
        ok = [r for r in self.rows if r.meets]
        return min(ok, key=lambda r: (r.time_to_train_days, r.cost_usd)) if ok and self.budget_usd else None

    @property
    def best(self) -> PlanRow | None:
        """With a deadline: the cheapest plan meeting it (and the budget); with a budget only: the fastest
        within it; with neither: the cheapest plan."""
        if self.deadline_days:
            return self.cheapest_meeting_deadline
        if self.budget_usd:
            return self.fastest_within_budget
        return min(self.rows, key=lambda r: (r.cost_usd, r.time_to_train_days)) if self.rows else None

    @property
    def pareto(self) -> list[PlanRow]:
        return sorted((r for r in self.rows if r.pareto), key=lambda r: r.time_to_train_days)

    def misses(self, n: int = 5) -> list[tuple[PlanRow, str]]:
        """The plans closest to the goals, each with what it misses by (when none meets them)."""
        def gap(r: PlanRow) -> float:
            g = 0.0
            if self.deadline_days:
                g += max(0.0, r.time_to_train_days / self.deadline_days - 1)
            if self.budget_usd:
                g += max(0.0, r.cost_usd / self.budget_usd - 1)
            return g

        out = []
        for r in sorted(self.rows, key=lambda r: (gap(r), r.cost_usd))[:n]:
            why = []
            if self.deadline_days and not r.meets_deadline:
                why.append(f"{r.time_to_train_days:,.1f} days > {self.deadline_days:g}")
            if self.budget_usd and not r.meets_budget:
                why.append(f"${r.cost_usd:,.0f} > ${self.budget_usd:,.0f}")
            out.append((r, "; ".join(why)))
        return out

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"kind": "plan_train", "model": self.model, "params_b": self.params_b,
                "total_tokens": self.total_tokens, "deadline_days": self.deadline_days, "budget_usd": self.budget_usd,
                "market": self.market, "provider": self.provider, "iterations": self.iterations,
                "model_flops_per_step": self.model_flops_per_step,
                "best": best.to_dict() if best else None,
                "cheapest_meeting_deadline": (r.to_dict() if (r := self.cheapest_meeting_deadline) else None),
                "fastest_within_budget": (r.to_dict() if (r := self.fastest_within_budget) else None),
                "pareto": [r.to_dict() for r in self.pareto], "search": self.counts.to_dict(),
                "skipped_gpus": self.skipped_gpus, "candidates": [r.to_dict() for r in self.rows]}

    def to_json(self, indent: int | None = 2) -> str:
        from ..invariants import strict_json

        return strict_json(self.to_dict(), indent)


# ---- the candidates -------------------------------------------------------------------------------
def priced_gpus(pricing: Pricing, precision: str) -> tuple[list[str], dict[str, str]]:
    """Every profile with a catalog price that trains ``precision``; the others with why not."""
    ok, skipped = [], {}
    for name in sorted(profile_paths()):
        hw = get_profile(name)
        try:
            resolve_price(pricing, hw, gpus_per_node=GPUS_PER_NODE)
        except CapsimError as e:
            skipped[name] = str(e).split(";")[0]
            continue
        if not hw.supports(precision, training=True):
            skipped[name] = f"cannot train {precision}"
            continue
        ok.append(name)
    return ok, skipped


def _base_doc(*, model: str | dict[str, Any], hardware: str, gpus: int, tokens: float, seq_len: int,
              global_batch: int, precision: str, pricing: Pricing, node_mtbf_hours: float | None,
              restart_minutes: float, seed: int, framework: str | None = None) -> dict[str, Any]:
    gpn = min(gpus, GPUS_PER_NODE)
    if gpus % gpn:
        raise CapsimError(f"--gpus {gpus}: give a multiple of {GPUS_PER_NODE} (whole nodes), or fewer than "
                          f"{GPUS_PER_NODE} GPUs in one node")
    rel: dict[str, Any] = {"restart_minutes": restart_minutes}
    if node_mtbf_hours:
        rel["node_mtbf_hours"] = node_mtbf_hours
    return {"kind": "training", "name": f"plan-{hardware}-{gpus}", "model": model, "hardware": hardware,
            "cluster": {"nodes": gpus // gpn, "gpus_per_node": gpn}, "parallelism": {},
            "training": {"seq_len": seq_len, "global_batch": global_batch, "precision": precision,
                         "micro_batch": 1, "total_tokens": tokens, **({"framework": framework} if framework else {})},
            "reliability": rel, "pricing": pricing.model_dump(exclude_none=True, exclude_defaults=False), "seed": seed}


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    doc[section][name] = value


def _doc_for(base: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in config.items():
        _set(d, k, v)
    par = d["parallelism"]
    if d["training"].get("framework"):
        return d                                  # every layout key stays written: a framework preset fills the rest
    if par.get("virtual_stages", 1) == 1:         # the plain 1F1B default: written only when interleaved
        par.pop("virtual_stages", None)
        par.pop("schedule", None)
    for k, default in (("cp", 1), ("ep", 1), ("zero_stage", 0)):
        if par.get(k) == default:
            par.pop(k)
    if not par.get("sequence_parallel"):
        par.pop("sequence_parallel", None)
    return d


def _with_ep(model: ModelSpec, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mixture-of-experts models: each layout again with every EP (a power of 2 dividing the experts and DP)."""
    if not model.moe:
        return configs
    out = []
    for c in configs:
        out.append(c)
        ep = 2
        while ep <= c["parallelism.dp"] and model.moe.num_experts % ep == 0:
            if c["parallelism.dp"] % ep == 0:
                out.append({**c, "parallelism.ep": ep})
            ep *= 2
    return out


@dataclass(frozen=True, slots=True)
class Candidate:
    hardware: str
    gpus: int
    config: dict[str, Any]
    lb_days: float
    lb_cost: float


def step_flops(model: ModelSpec, hardware: str, seq_len: int, global_batch: int, precision: str,
               recompute: str) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs with ``recompute``) of one step, all GPUs together, as the training
    simulator counts them (from one GPU holding the whole model: the FLOPs do not depend on the layout)."""
    from ..training.layout import resolve_layout
    from ..training.simulate import plan_step

    doc = {"kind": "training", "model": model.name if model.name != "inline" else model.model_dump(),
           "hardware": hardware, "cluster": {"nodes": 1, "gpus_per_node": 1},
           "training": {"seq_len": seq_len, "global_batch": global_batch, "precision": precision,
                        "micro_batch": 1, "recompute": recompute}}
    sc = parse_scenario(doc)
    assert isinstance(sc, TrainingScenario)
    hw = get_profile(hardware)
    lay, mb = resolve_layout(sc, model, hw)
    work = plan_step(model, hw, lay, mb, sc).work
    return work.model_flops_per_gpu, work.hardware_flops_per_gpu


def step_lower_bound_s(hw_flops_per_step: float, *, gpus: int, peak_flops: float, gemm_eff: float, pp: int,
                       virtual_stages: int, microbatches: int) -> float:
    """No step is shorter than its FLOPs spread over every GPU at the best GEMM efficiency, stretched by
    the pipeline bubble: ``(m + (p-1)/v) / m`` (Narayanan et al. 2021, section 2.2)."""
    ideal = hw_flops_per_step / (gpus * peak_flops * gemm_eff)
    return ideal * (microbatches + (pp - 1) / virtual_stages) / microbatches


def _candidates(model: ModelSpec, model_ref: str | dict[str, Any], hardware: str, counts: list[int], *,
                tokens: float, seq_len: int, global_batch: int, precision: str, pricing: Pricing,
                node_mtbf_hours: float | None, restart_minutes: float, seed: int, framework: str | None = None
                ) -> tuple[list[Candidate], dict[int, dict[str, Any]], int]:
    from ..sweep.evaluate import training_layouts

    hw = get_profile(hardware)
    price, _ = resolve_price(pricing, hw, gpus_per_node=GPUS_PER_NODE)
    peak, eff = hw.peak_flops(precision), hw.gemm_max(precision)
    flops = {rc: step_flops(model, hardware, seq_len, global_batch, precision, rc)[1]
             for rc in ("none", "selective", "full")}
    iterations = math.ceil(tokens / (global_batch * seq_len))
    out, bases = [], {}
    for n in counts:
        base = _base_doc(model=model_ref, hardware=hardware, gpus=n, tokens=tokens, seq_len=seq_len,
                         global_batch=global_batch, precision=precision, pricing=pricing,
                         node_mtbf_hours=node_mtbf_hours, restart_minutes=restart_minutes, seed=seed,
                         framework=framework)
        bases[n] = base
        sc = parse_scenario(base)
        assert isinstance(sc, TrainingScenario)
        for c in _with_ep(model, training_layouts(sc, full=True)):
            m = global_batch // (c["parallelism.dp"] * c["training.micro_batch"])
            step = step_lower_bound_s(flops[c["training.recompute"]], gpus=n, peak_flops=peak, gemm_eff=eff,
                                      pp=c["parallelism.pp"], virtual_stages=c["parallelism.virtual_stages"],
                                      microbatches=m)
            days = iterations * step / 86400
            out.append(Candidate(hardware, n, c, days, days * 24 * n * price))
    return out, bases, iterations


def _check(doc: dict[str, Any]) -> tuple[str | None, float]:
    """Before simulating: why the candidate cannot run ("invalid: ...", "memory"; None when it can) and,
    when it can, a lower bound on its step from the work each stage must do (:func:`work_bound_s`)."""
    from ..training.layout import resolve_layout
    from ..training.simulate import plan_step, step_parts

    try:
        sc = _scenario(doc)
        model, hw = _model_hw(doc)
        lay, mb = resolve_layout(sc, model, hw)
        parts = step_parts(model, lay, mb, sc)
        if parts[2].total > hw.memory_bytes:
            return "memory", 0.0
        sm = plan_step(model, hw, lay, mb, sc, parts)
    except CapsimError as e:
        return f"invalid: {e}", 0.0
    return None, work_bound_s(sm.work.stages, sm.schedule, p2p=sm.work.p2p)


def _check_many(docs: list[dict[str, Any]]) -> list[tuple[str | None, float]]:
    return [_check(d) for d in docs]


_BASES: dict[str, TrainingScenario] = {}


def _scenario(doc: dict[str, Any]) -> TrainingScenario:
    """``parse_scenario(doc)`` for a candidate, cheaply: the parts every layout of one GPU type and count
    share are parsed once, and the layout's keys are validated on their own (the parallelism config of
    its schedule, the recompute mode); the same scenario, a tenth of the time."""
    from ..training.schedules.interleaved import InterleavedConfig
    from ..training.schedules.one_f_one_b import OneFOneBConfig

    tr = doc["training"]
    if tr.get("framework"):
        # a framework preset's rules read the layout (ZeRO stage, TP): parse each candidate whole
        sc = parse_scenario(doc)
        assert isinstance(sc, TrainingScenario)
        return sc
    shared = {k: v for k, v in doc.items() if k not in ("parallelism", "training", "name")}
    key = repr((shared, {k: v for k, v in tr.items() if k not in ("micro_batch", "recompute")}))
    base = _BASES.get(key)
    if base is None:
        parsed = parse_scenario({**shared, "training": {**tr, "micro_batch": 1, "recompute": "none"}})
        assert isinstance(parsed, TrainingScenario)
        base = _BASES[key] = parsed
    par = dict(doc["parallelism"])
    cfg = (InterleavedConfig if par.get("schedule") == "interleaved" else OneFOneBConfig)(**par)
    training = base.training.model_copy(update={"micro_batch": int(tr["micro_batch"]),
                                                "recompute": tr.get("recompute", "none")})
    return base.model_copy(update={"parallelism": cfg, "training": training, "name": doc.get("name", base.name)})


_MODEL_HW: dict[str, tuple[ModelSpec, Any]] = {}


def _model_hw(doc: dict[str, Any]) -> tuple[ModelSpec, Any]:
    """The model and profile of a candidate, loaded once per search (every candidate shares them)."""
    key = f"{doc['model']!r}|{doc['hardware']}"
    if key not in _MODEL_HW:
        _MODEL_HW[key] = (get_model(doc["model"]), get_profile(doc["hardware"]))
    return _MODEL_HW[key]


def _dominated(t: float, c: float, pts: np.ndarray) -> bool:
    return bool(len(pts)) and bool(np.any((pts[:, 0] <= t) & (pts[:, 1] <= c)))


def plan_training(*, model: str | dict[str, Any], tokens: float, days: float | None = None,
                  budget_usd: float | None = None, gpus: list[str] | None = None, provider: str | None = None,
                  market: str = "on_demand", gpu_counts: list[int] | None = None, seq_len: int = DEFAULT_SEQ_LEN,
                  global_batch: int = DEFAULT_GLOBAL_BATCH, precision: str = "bf16",
                  node_mtbf_hours: float | None = LLAMA3_NODE_MTBF_HOURS,
                  restart_minutes: float = DEFAULT_RESTART_MINUTES, seed: int = 0, executor: str = "local",
                  workers: int | None = None, progress: Progress = None, framework: str | None = None) -> TrainingPlan:
    """Search GPU type × GPU count × layout for training ``model`` on ``tokens`` tokens: the cheapest
    plan meeting ``days``, the fastest within ``budget_usd``, the ranked plans and their frontier.
    ``framework``: the training stack's preset (``training.framework``) every candidate runs with."""
    if framework is not None:
        from ..training.frameworks import PRESETS

        if framework not in PRESETS:
            raise unknown("--framework", framework, PRESETS)
    if tokens <= 0 or not math.isfinite(tokens):
        raise CapsimError(f"--tokens {tokens}: give the number of training tokens, > 0 (e.g. 2e12)")
    if days is not None and days <= 0:
        raise CapsimError(f"--days {days}: give a deadline in days, > 0")
    if budget_usd is not None and budget_usd <= 0:
        raise CapsimError(f"--budget {budget_usd}: give a budget in US dollars, > 0")
    if market not in ("on_demand", "spot"):
        raise CapsimError(f"--market {market!r}: use on_demand or spot")
    counts = sorted(set(gpu_counts or DEFAULT_COUNTS))
    if any(n < 1 for n in counts):
        raise CapsimError(f"--gpus {counts}: every GPU count must be >= 1")
    spec = get_model(model)
    pricing = Pricing(provider=provider, market=market)  # type: ignore[arg-type]
    skipped: dict[str, str] = {}
    if gpus:
        names = []
        for g in gpus:
            hw = get_profile(g)                                   # an unknown name: the closest ones
            resolve_price(pricing, hw, gpus_per_node=GPUS_PER_NODE)   # no price: says so, names the key
            hw.check_precision(precision, key="--precision", training=True)
            names.append(hw.name)
    else:
        names, skipped = priced_gpus(pricing, precision)
    cands: list[Candidate] = []
    bases: dict[tuple[str, int], dict[str, Any]] = {}
    iterations = 0
    for name in names:
        cs, b, iterations = _candidates(spec, model, name, counts, tokens=tokens, seq_len=seq_len,
                                        global_batch=global_batch, precision=precision, pricing=pricing,
                                        node_mtbf_hours=node_mtbf_hours, restart_minutes=restart_minutes, seed=seed,
                                        framework=framework)
        cands += cs
        bases.update({(name, n): d for n, d in b.items()})
    if not cands:
        raise CapsimError(f"no layout of {spec.name} divides any of the GPU counts {counts} with global batch "
                          f"{global_batch}; give other --gpus or --global-batch")
    cands.sort(key=lambda c: (c.lb_cost, c.lb_days))
    with _Runner(executor, workers) as run:
        rows, tally = _search(cands, bases, run, iterations, days, budget_usd, progress)
    invalid, oom, pruned, failed = tally
    n = len(cands)
    rows = _ranked(rows)
    return TrainingPlan(model=spec.name, params_b=round(spec.total_params() / 1e9, 3), total_tokens=tokens,
                        deadline_days=days, budget_usd=budget_usd, market=market, provider=provider, rows=rows,
                        counts=SearchCounts(n, pruned, invalid, oom, len(rows) + failed, failed),
                        skipped_gpus=skipped,
                        model_flops_per_step=step_flops(spec, names[0], seq_len, global_batch, precision, "none")[0],
                        iterations=iterations)


class _Runner:
    """Simulates a round of scenario documents: in this process (one worker), on one process pool kept
    for the whole search (started once: a pool per round would pay its start-up every round), or on Ray."""

    def __init__(self, executor: str, workers: int | None) -> None:
        import os

        self.executor = executor
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.pool: Any = None

    def __enter__(self) -> _Runner:
        if self.executor == "local" and self.workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            from ..sweep.executors import _ignore_sigint

            self.pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_ignore_sigint)
        elif self.executor != "local" and self.executor != "ray" and not self.executor.startswith("ray:"):
            raise CapsimError(f"unknown executor {self.executor!r}; use local, ray or ray:ADDRESS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def check(self, docs: list[dict[str, Any]]) -> list[tuple[str | None, float]]:
        """:func:`_check` of each document, on the pool when there is one."""
        if self.pool is None or len(docs) < 2 * self.workers:
            return [_check(d) for d in docs]
        size = math.ceil(len(docs) / self.workers)
        futures = [self.pool.submit(_check_many, docs[k:k + size]) for k in range(0, len(docs), size)]
        return [r for f in futures for r in f.result()]

    def __call__(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from .. import workbound
        from ..sweep.evaluate import evaluate
        from ..sweep.executors import _chunk, run_configs

        if self.executor != "local":
            return run_configs(docs, executor=self.executor)
        if self.pool is None:
            return [evaluate(d) for d in docs]
        size = max(1, math.ceil(len(docs) / self.workers))
        force = workbound.forced()
        futures = [self.pool.submit(_chunk, docs[k:k + size], False, force) for k in range(0, len(docs), size)]
        return [row for f in futures for row in f.result()]


def _search(cands: list[Candidate], bases: dict[tuple[str, int], dict[str, Any]], run: _Runner, iterations: int,
            days: float | None, budget_usd: float | None, progress: Progress
            ) -> tuple[list[PlanRow], tuple[int, int, int, int]]:
    """Visit the candidates cheapest roofline bound first, in rounds: skip those a simulated plan
    dominates; check the rest's layout and memory and bound them again from their stages' work (a
    tighter bound, a few milliseconds each); simulate the survivors cheapest first, pruning again
    after each handful with the plans just simulated."""
    pts = np.empty((0, 2))
    rows: list[PlanRow] = []
    invalid = oom = pruned = failed = 0
    per_round, per_call = ROUND * run.workers, 2 * run.workers
    i = 0
    n = len(cands)
    while i < n:
        pool: list[tuple[float, float, Candidate, dict[str, Any]]] = []
        batch: list[tuple[Candidate, dict[str, Any]]] = []
        while i < n and len(batch) < per_round:
            c = cands[i]
            i += 1
            if _dominated(c.lb_days, c.lb_cost, pts):
                pruned += 1
                continue
            batch.append((c, _doc_for(bases[(c.hardware, c.gpus)], c.config)))
        for (c, doc), (why, step_lb) in zip(batch, run.check([d for _, d in batch]), strict=True):
            if why == "memory":
                oom += 1
                continue
            if why is not None:
                invalid += 1
                continue
            d2 = max(c.lb_days, iterations * step_lb / 86400)
            c2 = d2 * c.lb_cost / c.lb_days
            if _dominated(d2, c2, pts):
                pruned += 1
                continue
            pool.append((c2, d2, replace(c, lb_days=d2, lb_cost=c2), doc))
        pool.sort(key=lambda x: (x[0], x[1]))
        for k in range(0, len(pool), per_call):
            batch = [(c, doc) for c2, d2, c, doc in pool[k:k + per_call] if not _dominated(d2, c2, pts)]
            pruned += min(per_call, len(pool) - k) - len(batch)
            if not batch:
                continue
            for (c, doc), res in zip(batch, run([d for _, d in batch]), strict=True):
                if not res.get("feasible") or res.get("time_to_train_days") is None:
                    failed += 1
                    continue
                row = _row(c, doc, res, iterations, days, budget_usd)
                rows.append(row)
                pts = np.vstack([pts, [row.time_to_train_days, row.cost_usd]])
        if progress:
            progress(i, n)
    return rows, (invalid, oom, pruned, failed)


def _row(c: Candidate, doc: dict[str, Any], res: dict[str, Any], iterations: int, days: float | None,
         budget: float | None) -> PlanRow:
    cfg = c.config
    lay = PlanLayout(tp=cfg["parallelism.tp"], pp=cfg["parallelism.pp"], dp=cfg["parallelism.dp"],
                     cp=cfg.get("parallelism.cp", 1), ep=cfg.get("parallelism.ep", 1),
                     micro_batch=cfg["training.micro_batch"], virtual_stages=cfg.get("parallelism.virtual_stages", 1),
                     schedule=cfg.get("parallelism.schedule", "1f1b"), zero_stage=cfg["parallelism.zero_stage"],
                     recompute=cfg["training.recompute"], sequence_parallel=cfg["parallelism.sequence_parallel"])
    t, cost = float(res["time_to_train_days"]), float(res["cost_usd"])
    return PlanRow(hardware=c.hardware, gpus=c.gpus, nodes=doc["cluster"]["nodes"], layout=lay,
                   time_to_train_days=t, compute_days_without_failures=iterations * res["iteration_time_s"] / 86400,
                   gpu_hours=float(res["gpu_hours"]), cost_usd=cost, usd_per_gpu_hour=cost / float(res["gpu_hours"]),
                   mfu=float(res["mfu"]), memory_gib=float(res["memory_gib"]),
                   iteration_time_s=float(res["iteration_time_s"]), tokens_per_s=float(res["tokens_per_s"]),
                   energy_kwh=res.get("energy_kwh"), lower_bound_days=c.lb_days,
                   meets_deadline=days is None or t <= days, meets_budget=budget is None or cost <= budget,
                   scenario=doc)


def _ranked(rows: list[PlanRow]) -> list[PlanRow]:
    """Plans meeting the goals first, then by cost and time; the Pareto frontier (days, $) marked."""
    from ..sweep import pareto_mask

    if not rows:
        return rows
    par = pareto_mask(np.array([r.time_to_train_days for r in rows]), np.array([r.cost_usd for r in rows]))
    marked = [replace(r, pareto=bool(p)) for r, p in zip(rows, par, strict=True)]
    return sorted(marked, key=lambda r: (not r.meets, r.cost_usd, r.time_to_train_days, r.hardware, r.gpus,
                                         r.layout.label()))


def emit_scenarios(plan: TrainingPlan, rows: list[PlanRow], folder: str) -> list[str]:
    """Write each row's scenario as YAML in ``folder`` (``capsim train FILE`` reproduces the row)."""
    from pathlib import Path

    import yaml

    from ..files import write_atomic

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, r in enumerate(rows, 1):
        lay = r.layout
        name = f"plan-{k:02d}-{r.hardware}-{r.gpus}-tp{lay.tp}-pp{lay.pp}-dp{lay.dp}"
        doc = {**r.scenario, "name": name}
        head = (f"# capsim plan train: {plan.model} on {plan.total_tokens:.4g} tokens, row {k}: {r.hardware} × "
                f"{r.gpus}, {lay.label()}\n# predicted {r.time_to_train_days:.2f} days, ${r.cost_usd:,.0f}, "
                f"MFU {r.mfu:.3f}; reproduce with: capsim train {name}.yaml\n")
        p = out / f"{name}.yaml"
        write_atomic(p, head + yaml.safe_dump(doc, sort_keys=False), "--emit-scenario")
        paths.append(str(p))
    return paths
