"""One configuration of a sweep: simulate it and reduce the result to a row of numbers.

Runs in worker processes (local pool or Ray): ``evaluate_row`` gives the typed row (``rows``),
``evaluate`` the same row as plain data, which is what crosses the process boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..catalog import get_model
from ..errors import CapsimError
from ..scenario import ServingScenario, TrainingScenario, parse_scenario
from ..training.schedules import OneFOneBConfig, make_schedule
from ..workbound import Unstable
from .rows import FailedRow, MaxRate, OutOfMemoryRow, ServingSweepRow, SweepRow, TrainingSweepRow

RATE_STEPS = 7          # bisection steps for the maximum sustainable rate
MAX_RATE_FACTOR = 64.0  # search up to 64× the scenario's rate


def _training_row(sc: TrainingScenario) -> TrainingSweepRow | OutOfMemoryRow:
    from ..training.layout import resolve_layout
    from ..training.simulate import cluster_profile, simulate_training, step_memory

    model, hw = get_model(sc.model), cluster_profile(sc)
    if sc.training.micro_batch != "auto":
        # prune what cannot fit before simulating the pipeline
        lay, mb = resolve_layout(sc, model, hw)
        mem = step_memory(model, hw, lay, mb, sc)
        if mem.total > hw.memory_bytes:
            return OutOfMemoryRow(memory_gib=mem.total / 2**30, capacity_gib=hw.memory_gib)
    return TrainingSweepRow.of(simulate_training(sc))


def _meets(doc: dict[str, Any], rate: float) -> bool:
    from ..serving import simulate_serving

    d = {**doc, "workload": {**doc["workload"], "arrival": {**doc["workload"]["arrival"], "rate_rps": rate}}}
    sc = parse_scenario(d)
    assert isinstance(sc, ServingScenario)
    try:
        return bool(simulate_serving(sc).slo_met)
    except Unstable:           # far beyond the replicas' capacity: certainly not within the SLO
        return False


MAX_RATE_SIMULATIONS = int(math.log2(MAX_RATE_FACTOR)) + 2 + RATE_STEPS   # the most a search runs


def max_sustainable_rate(doc: dict[str, Any], on_step: Callable[[float], None] | None = None) -> tuple[float, bool]:
    """Largest arrival rate meeting the SLO (doubling, then bisection over RATE_STEPS steps), and
    whether the search stopped at its limit, MAX_RATE_FACTOR × the scenario's rate (the real maximum
    may be higher: the row says so, ``max_rate_at_limit``). ``on_step(fraction)`` after each
    simulation: the share of the most the search can run."""
    arrival = doc["workload"]["arrival"]
    if "rate_rps" not in arrival:
        raise CapsimError("max-rate search needs an arrival process with rate_rps (poisson or gamma)")
    r0 = float(arrival["rate_rps"])
    runs = 0

    def meets(rate: float) -> bool:
        nonlocal runs
        ok = _meets(doc, rate)
        runs += 1
        if on_step is not None:
            on_step(min(runs / MAX_RATE_SIMULATIONS, 1.0))
        return ok

    lo, hi = 0.0, r0
    while meets(hi):
        lo, hi = hi, hi * 2
        if hi > r0 * MAX_RATE_FACTOR:
            return lo, True
    for _ in range(RATE_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo, False


def evaluate_row(doc: dict[str, Any], max_rate: bool = False,
                 on_step: Callable[[float], None] | None = None) -> SweepRow:
    """Simulate one configuration; errors become a ``FailedRow`` with the message."""
    try:
        sc = parse_scenario(doc)
        if isinstance(sc, TrainingScenario):
            return _training_row(sc)
        assert isinstance(sc, ServingScenario)
        from ..serving import simulate_serving

        r = simulate_serving(sc)
        if not max_rate:
            return ServingSweepRow.of(r)
        if not sc.slo.model_dump(exclude_none=True):
            raise CapsimError("max-rate search needs an SLO (slo.ttft_p99_s, tpot_p99_s or e2e_p99_s)")
        best, at_limit = max_sustainable_rate(doc, on_step)
        found = MaxRate(max_rate_rps=best, base_rps=float(doc["workload"]["arrival"]["rate_rps"]), at_limit=at_limit)
        return ServingSweepRow.of(r, found)
    except CapsimError as e:
        return FailedRow(str(e))


def evaluate(doc: dict[str, Any], max_rate: bool = False,
             on_step: Callable[[float], None] | None = None) -> dict[str, Any]:
    """``evaluate_row`` as plain data: what worker processes and Ray tasks send back."""
    return evaluate_row(doc, max_rate, on_step).to_dict()


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def training_layouts(sc: TrainingScenario, *, full: bool = False) -> list[dict[str, Any]]:
    """Every layout of the model on the scenario's GPUs: TP (inside a node, dividing the heads), PP
    (dividing the layers), DP (the rest, dividing the global batch), micro-batch (dividing the
    per-rank batch, up to 8), recompute, ZeRO stage (1-3 only with DP > 1; not 2 with PP > 1, where
    gradients accumulate unsharded and ZeRO-2 is ZeRO-1); sequence parallelism
    with TP > 1, as Megatron runs it. ``full`` adds context parallelism (2, 4 dividing the sequence,
    with TP·CP inside a node) and interleaved schedules (2 or 4 virtual stages per GPU).

    Without ``full``, a scenario with an interleaved schedule (``virtual_stages`` v > 1) keeps it
    where the layout allows it and otherwise takes the largest valid v below it (1: plain 1F1B): each
    layout's ``parallelism.virtual_stages`` and ``parallelism.schedule`` say which. Interleaving needs
    PP > 1, PP·v dividing the layers and the micro-batches per iteration in multiples of PP (Megatron's
    rules), so GPT-3's v = 3 cannot run on PP 1 or 3, or with 12 micro-batches on PP 8."""
    model = get_model(sc.model)
    gpus = sc.cluster.nodes * sc.cluster.gpus_per_node
    gb, seq = sc.training.global_batch, sc.training.seq_len
    out: list[dict[str, Any]] = []
    v0 = sc.parallelism.chunks_per_stage
    cps = [c for c in (1, 2, 4) if seq % c == 0] if full else [1]
    for tp in _divisors(sc.cluster.gpus_per_node):
        if model.heads % tp or gpus % tp:
            continue
        for cp in cps:
            if tp * cp > sc.cluster.gpus_per_node and cp > 1:
                continue
            for pp in _divisors(model.layers):
                if gpus % (tp * cp * pp):
                    continue
                dp = gpus // (tp * cp * pp)
                if gb % dp:
                    continue
                per_rank = gb // dp
                vs = [v for v in ((1, 2, 4) if full and pp > 1 else (1,)) if model.layers % (pp * v) == 0]
                for v in vs:
                    for mb in [b for b in _divisors(per_rank) if b <= 8]:
                        if make_schedule(OneFOneBConfig(pp=pp, virtual_stages=v), per_rank // mb).problems():
                            continue               # e.g. interleaving needs micro-batches in multiples of PP
                        kept = {} if full or v0 == 1 else _kept_interleaving(model.layers, pp, per_rank // mb, v0,
                                                                               sc.parallelism.schedule)
                        for rec in ("none", "selective", "full"):
                            for zero in ((0, 1, 2, 3) if dp > 1 and pp == 1 else (0, 1, 3) if dp > 1 else (0,)):
                                c = {"parallelism.tp": tp, "parallelism.pp": pp, "parallelism.dp": dp,
                                     "parallelism.sequence_parallel": tp > 1, "parallelism.zero_stage": zero,
                                     "training.micro_batch": mb, "training.recompute": rec}
                                if full:
                                    c.update({"parallelism.cp": cp, "parallelism.virtual_stages": v,
                                              "parallelism.schedule": "interleaved" if v > 1 else "1f1b"})
                                c.update(kept)
                                out.append(c)
    return out


def _kept_interleaving(layers: int, pp: int, microbatches: int, v0: int, schedule: str) -> dict[str, Any]:
    """The scenario's interleaving (v0 chunks per stage) on one layout: the largest v <= v0 it allows."""
    for v in range(v0, 1, -1):
        if pp > 1 and layers % (pp * v) == 0 and not make_schedule(
                OneFOneBConfig(pp=pp, virtual_stages=v), microbatches).problems():
            return {"parallelism.virtual_stages": v, "parallelism.schedule": schedule}
    return {"parallelism.virtual_stages": 1, "parallelism.schedule": "1f1b"}
