"""Lower bounds on a training step that the planner computes before it simulates a candidate.

:func:`work_bound_s` is the pipeline's critical path without the data-parallel traffic: each stage runs
its passes in the schedule's order, each for the time the step engine charges it, and a pass starts only
once the pass it depends on has finished and its output crossed the link. Which slot waits for which is
a property of the schedule's shape alone (its class, stages, chunks and micro-batches), not of the
candidate's times, so it is worked out once per shape (:func:`_program`: the slots in one order that
respects every dependency) and each candidate then costs one pass over a flat list of floats. The
planner checks tens of thousands of candidates sharing a few hundred shapes; walking each schedule's
dependency graph afresh per candidate was most of ``capsim plan train``'s time.

:func:`busy_bound_s` is the cheaper, looser bound used above :data:`CRITICAL_PATH_PASSES` passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import CapsimError

CRITICAL_PATH_PASSES = 4000
"""passes (2·p·v·m) up to which the step's bound walks the pipeline's critical path; above it the walk
costs as much as the simulation and the bubble is a small share of the step (:func:`busy_bound_s`)"""

@dataclass(frozen=True, slots=True)
class _Program:
    """A schedule's slots in one global order that respects every dependency. Slot ``j`` runs on
    ``stage[j]``, is made of the passes ``parts[j]`` ((kind, chunk) each: one, or several that the
    schedule overlaps) and waits for the slots ``deps[j]`` (index, whether its output crosses to
    another stage)."""

    stage: tuple[int, ...]
    parts: tuple[tuple[tuple[str, int], ...], ...]
    deps: tuple[tuple[tuple[int, bool], ...], ...]
    distinct: tuple[tuple[tuple[str, int], ...], ...] = ()   # the distinct ``parts``, in first-seen order
    part_of: tuple[int, ...] = ()                            # slot j's parts: ``distinct[part_of[j]]``


_PROGRAMS: dict[tuple[type, int, int, int], _Program] = {}


def _compile(schedule: Any) -> _Program:
    """Walk the schedule's dependency graph once: every stage advances through its order while the
    passes its next slot waits for have run (the step engine's own order, simulator/training/step.py)."""
    from ..training.step import slot_works

    p, v = schedule.stages, schedule.chunks
    home = {schedule.virtual_stage(s, c): s for s in range(p) for c in range(v)}
    vss = [[schedule.virtual_stage(s, c) for c in range(v)] for s in range(p)]
    per_stage = [slot_works(schedule, s) for s in range(p)]
    slot_of: dict[tuple[str, int, int], int] = {}
    stage: list[int] = []
    parts: list[tuple[tuple[str, int], ...]] = []
    deps: list[tuple[tuple[int, bool], ...]] = []
    at, left = [0] * p, sum(len(o) for o in per_stage)
    while left:
        moved = False
        for s in range(p):
            order = per_stage[s]
            while at[s] < len(order):
                works = order[at[s]]
                keys = [(kind, vss[s][c], i) for kind, c, i in works]
                waits: list[tuple[int, bool]] = []
                for key in keys:
                    dep = schedule.depends_on(*key)
                    if dep is None or dep in keys:
                        continue
                    if dep not in slot_of:
                        break
                    waits.append((slot_of[dep], home[dep[1]] != s))
                else:
                    j = len(stage)
                    stage.append(s)
                    parts.append(tuple((kind, c) for kind, c, _ in works))
                    deps.append(tuple(waits))
                    for key in keys:
                        slot_of[key] = j
                    at[s] += 1
                    left -= 1
                    moved = True
                    continue
                break
        if not moved:
            raise CapsimError("the pipeline schedule deadlocks: a pass waits for one that never runs")
    distinct = list(dict.fromkeys(parts))
    index = {pt: k for k, pt in enumerate(distinct)}
    return _Program(tuple(stage), tuple(parts), tuple(deps), tuple(distinct), tuple(index[pt] for pt in parts))


def _program(schedule: Any) -> _Program:
    """The schedule's program, memoised per shape when its order depends on nothing else."""
    from ..training.schedules.base import shape_key

    key = shape_key(schedule)
    if key is None:
        return _compile(schedule)
    prog = _PROGRAMS.get(key)
    if prog is None:
        prog = _PROGRAMS[key] = _compile(schedule)
    return prog


def work_bound_s(stages: list[Any], schedule: Any, *, p2p: float = 0.0) -> float:
    """A lower bound on the step: the pipeline's critical path without the data-parallel traffic.

    Each stage runs its passes in the schedule's order, one after another, each for the time the step
    engine charges it (its compute, TP/CP/EP collectives, host floor and exposed ZeRO traffic), and a
    pass starts only once the pass it depends on has finished and its output crossed the link; then
    the stage's optimizer. That is the step engine's own timeline (simulator/training/step.py) without
    the gradient buckets' reduction and the compute they slow down, which only add: a few milliseconds
    of arithmetic where the simulation takes tens.

    Above :data:`CRITICAL_PATH_PASSES` passes (many micro-batches: the walk costs as much as the
    simulation, and the bubble is a small share of the step) it is :func:`busy_bound_s` instead."""
    from ..training.step import joint_time

    p, v = schedule.stages, schedule.chunks
    if 2 * p * v * schedule.microbatches > CRITICAL_PATH_PASSES:
        return busy_bound_s(stages, schedule)
    prog = _program(schedule)
    # each slot's length: a pass's time, or the joint time of passes the schedule overlaps (dualpipe),
    # per stage and distinct parts, then per slot
    table: list[list[float]] = []
    for st in stages:
        times = {kind: st.pass_times(kind) for kind in schedule.passes}
        row = []
        for pt in prog.distinct:
            passes = [(times[kind] if kind in times else st.pass_times(kind))[c] for kind, c in pt]
            row.append(passes[0].total if len(passes) == 1 else joint_time(passes, st.overlap_slowdown).total)
        table.append(row)
    lengths = [table[s][k] for s, k in zip(prog.stage, prog.part_of, strict=True)]
    finish = [0.0] * len(prog.stage)
    clock = [0.0] * p
    for j, (s, deps) in enumerate(zip(prog.stage, prog.deps, strict=True)):
        start = clock[s]
        for d, cross in deps:
            t = finish[d] + p2p if cross else finish[d]
            if t > start:
                start = t
        clock[s] = finish[j] = start + lengths[j]
    return max(clock[s] + st.optimizer + st.post_optimizer_comm for s, st in enumerate(stages))


def busy_bound_s(stages: list[Any], schedule: Any) -> float:
    """A cheaper, looser bound: every stage runs all its passes one after another, then its optimizer;
    the last stage first waits for the first micro-batch's forward through the stages before it; and
    under plain 1F1B the first stage, whose order is p-1 forwards, forward/backward pairs, then
    backwards, ends its last forward after m forwards and m-p backwards, and its last backward after
    that micro-batch's forward and backward through every later stage."""
    def after(st: Any) -> float:
        return st.optimizer + st.post_optimizer_comm

    def busy(st: Any) -> float:
        return m * sum(f.total + b.total for f, b in zip(st.fwd, st.bwd, strict=True)) + after(st)

    from ..training.step import stage_slots

    m, p = schedule.microbatches, schedule.stages
    if any(schedule.joined(s) for s in range(p)):      # overlapped slots (dualpipe): their own lengths
        return max(sum(pt.total for _, pt in stage_slots(schedule, s, st)) + after(st) for s, st in enumerate(stages))
    warmup = sum(st.fwd[0].total for st in stages[:-1])
    bound = max(max(busy(st) for st in stages), warmup + busy(stages[-1]))
    from ..training.schedules.one_f_one_b import OneFOneB

    if type(schedule) is OneFOneB and p > 1 and m >= p:
        first = stages[0]
        chain = sum(st.fwd[0].total + st.bwd[0].total for st in stages[1:])
        bound = max(bound, m * first.fwd[0].total + (m - p + 1) * first.bwd[0].total + chain + after(first))
    return bound
