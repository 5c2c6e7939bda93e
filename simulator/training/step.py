"""One training iteration as a discrete-event simulation of a pipeline: the engine that runs what
a :class:`~.schedules.Schedule` says.

Each pipeline stage is a simpy process that walks its schedule's order, waiting for the pass its
schedule says it depends on (the neighbouring virtual stage's activation or gradient) plus the
point-to-point transfer when that pass ran on another stage. Gradient buckets are reduced over
data parallelism on a separate communication stream as the pass that completes a chunk's
gradients produces them, so only the part that outlasts the backward is exposed. One pipeline
stands for all DP replicas (they are symmetric), so the cost of a step does not grow with the
data-parallel degree. A schedule may run passes overlapped in one slot (:meth:`Schedule.joined`,
dualpipe's forward-and-backward): the slot starts once every pass in it has its input and lasts
:func:`joint_time`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import Event

from .schedules.base import Schedule, Work

BUSY = ("compute", "tp_comm", "cp_comm", "ep_comm", "host", "dp")   # what a stage's passes are made of


@dataclass(frozen=True, slots=True)
class PassTime:
    """Duration of one pass (forward, backward) of one micro-batch through one model chunk, split
    into what it is made of (for the time breakdown)."""

    total: float
    compute: float = 0.0
    tp_comm: float = 0.0       # tensor-parallel collectives inside the pass
    cp_comm: float = 0.0       # context-parallel key/value exchanges
    ep_comm: float = 0.0       # expert-parallel all-to-alls
    host: float = 0.0          # GPU idle waiting for the host to issue kernels
    dp: float = 0.0            # ZeRO parameter gathers and gradient reductions the pass exposes

    @staticmethod
    def of(compute: float, tp_comm: float = 0.0, host_floor: float = 0.0, dp: float = 0.0, *,
           cp_comm: float = 0.0, ep_comm: float = 0.0) -> PassTime:
        """``host_floor``: the wall time of issuing the pass's kernels; ``dp`` adds on top."""
        gpu = compute + tp_comm + cp_comm + ep_comm
        total = max(gpu, host_floor)
        return PassTime(total + dp, compute, tp_comm, cp_comm, ep_comm, total - gpu, dp)


def joint_time(passes: Sequence[PassTime], slowdown: float = 0.0) -> PassTime:
    """Passes of two micro-batches overlapped on one GPU (DeepSeek-V3's forward-and-backward chunks):
    one stream computes both passes' kernels while the other runs both passes' collectives, so the
    slot lasts the longer of the two, plus ``slowdown`` (the profile's compute lost per second of
    overlapped communication, as for gradient buckets) of the communication it hid, plus each pass's
    wait for the host to issue its small kernels and its exposed ZeRO traffic. The breakdown keeps
    only the exposed part of the collectives, so a slot's parts add up to its length."""
    if len(passes) == 1:
        return passes[0]
    compute = sum(pt.compute for pt in passes)
    comm = {k: sum(getattr(pt, k) for pt in passes) for k in ("tp_comm", "cp_comm", "ep_comm")}
    total_comm = sum(comm.values())
    hidden = min(compute, total_comm)
    gpu = max(compute, total_comm) + hidden * slowdown
    host, dp = sum(pt.host for pt in passes), sum(pt.dp for pt in passes)
    share = (total_comm - hidden) / total_comm if total_comm > 0 else 0.0
    return PassTime(gpu + host + dp, compute + hidden * slowdown, comm["tp_comm"] * share,
                    comm["cp_comm"] * share, comm["ep_comm"] * share, host, dp)


def stage_slots(schedule: Schedule, stage: int, spec: StageSpec) -> list[tuple[list[Work], PassTime]]:
    """The passes of ``stage`` in its order, grouped into the slots they run in (one pass each, unless
    the schedule overlaps some: :meth:`Schedule.joined`), each slot with its time."""
    times = {kind: spec.pass_times(kind) for kind in schedule.passes}
    return [(works, joint_time([times[kind][c] for kind, c, _ in works], spec.overlap_slowdown))
            for works in slot_works(schedule, stage)]


def slot_works(schedule: Schedule, stage: int) -> list[list[Work]]:
    """The passes of ``stage`` in its order, grouped into the slots they run in (a pass the schedule
    overlaps with the one before it joins that one's slot: :meth:`Schedule.joined`)."""
    joined = schedule.joined(stage)
    slots: list[list[Work]] = []
    for j, work in enumerate(schedule.order(stage)):
        if j in joined and slots:
            slots[-1].append(work)
        else:
            slots.append([work])
    return slots


@dataclass(frozen=True, slots=True)
class StageSpec:
    """Everything one pipeline stage does in an iteration."""

    fwd: Sequence[PassTime]                 # per chunk (virtual stage held by this device)
    bwd: Sequence[PassTime]                 # per chunk, recompute included
    grad_buckets: Sequence[Sequence[float]] = ()   # per chunk: reduction time of each bucket
    optimizer: float = 0.0
    post_optimizer_comm: float = 0.0        # e.g. ZeRO-1 parameter all-gather
    overlap_grad: bool = True               # buckets reduce during the backward, else after it
    overlap_slowdown: float = 0.0           # compute lost while a bucket's reduction overlaps it
    wgt: Sequence[PassTime] = ()            # per chunk, weight gradients as a pass of their own (zero bubble)

    def pass_times(self, kind: str) -> Sequence[PassTime]:
        """Per chunk, the time of a pass of ``kind``."""
        if kind == "F":
            return self.fwd
        if kind == "B":
            return self.bwd
        if kind == "W" and self.wgt:
            return self.wgt
        raise ValueError(f"the stage work has no {kind!r} pass (built: F, B{', W' if self.wgt else ''})")


@dataclass(slots=True)
class StepTrace:
    iteration_time: float
    stage_end: list[float]
    compute_end: list[float]
    dp_end: list[float]
    contention: list[float] = field(default_factory=list)   # compute slowed by overlapped reduction
    timeline: list[tuple[int, str, int, int, float, float]] = field(default_factory=list)  # stage, pass, chunk, mb, start, end
    busy: list[dict[str, float]] = field(default_factory=list)   # per stage: seconds of each of BUSY


def simulate_step(stages: Sequence[StageSpec], schedule: Schedule, *, p2p: float = 0.0,
                  record: bool = True) -> StepTrace:
    """Run one iteration; ``stages[s].fwd[c]`` is chunk ``c`` of stage ``s``."""
    p, v = schedule.stages, schedule.chunks
    if len(stages) != p or any(len(st.fwd) != v or len(st.bwd) != v for st in stages):
        raise ValueError(f"the schedule runs {p} stages of {v} chunks; the stage work has "
                         f"{[len(st.fwd) for st in stages]} chunks per stage")
    env = simpy.Environment()
    home = {schedule.virtual_stage(s, c): s for s in range(p) for c in range(v)}
    done: dict[tuple[str, int, int], simpy.Event] = {}
    finish: dict[tuple[str, int, int], float] = {}
    trace = StepTrace(0.0, [0.0] * p, [0.0] * p, [0.0] * p)
    grad_ready: list[simpy.Store] = [simpy.Store(env) for _ in range(p)]
    compute_done: list[simpy.Event] = [env.event() for _ in range(p)]

    def plan(s: int, spec: StageSpec) -> list[tuple]:
        """The stage's slots with what their passes wait for, resolved before the clock starts."""
        vss = [schedule.virtual_stage(s, c) for c in range(v)]
        ready = ({(kind, vss[c], i) for c in range(v) for kind, i in [schedule.grads_ready(s, c)]}
                 if spec.grad_buckets else set())
        depends_on = schedule.depends_on
        steps = []
        for works, pt in stage_slots(schedule, s, spec):
            keys = [(kind, vss[c], i) for kind, c, i in works]
            waits = []
            for key in keys:
                done[key] = Event(env)
                dep = depends_on(*key)
                if dep is not None and dep not in keys:
                    waits.append((dep, p2p if home[dep[1]] != s else 0.0))   # a neighbour's output crosses a link
            completes = [c for (_, c, _), key in zip(works, keys, strict=True) if key in ready]
            steps.append((works, keys, waits, pt, completes))
        return steps

    def stage_proc(s: int, steps: list[tuple]) -> Generator[Event, object, None]:
        compute = tp = cp = ep = host = dp = 0.0
        for works, keys, waits, pt, completes in steps:
            for dep, link in waits:
                ev = done[dep]
                if not ev.triggered:
                    yield ev
                wait = finish[dep] + link - env.now
                if wait > 0:
                    yield env.timeout(wait)
            start = env.now
            for c in completes:
                grad_ready[s].put((start, pt.total, c))
            yield env.timeout(pt.total)
            compute += pt.compute
            tp += pt.tp_comm
            cp += pt.cp_comm
            ep += pt.ep_comm
            host += pt.host
            dp += pt.dp
            for (kind, c, i), key in zip(works, keys, strict=True):
                finish[key] = env.now
                done[key].succeed()
                if record:
                    trace.timeline.append((s, kind, c, i, start, env.now))
        trace.compute_end[s] = env.now
        compute_done[s].succeed()
        trace.busy.append({"stage": s, **dict(zip(BUSY, (compute, tp, cp, ep, host, dp), strict=True))})

    def dp_proc(s: int, spec: StageSpec) -> Generator[Event, Any, None]:
        free = 0.0
        if spec.grad_buckets and not spec.overlap_grad:
            yield compute_done[s]             # reduce only once every chunk's backward is done
        for _ in range(v if spec.grad_buckets else 0):
            start, dur, c = yield grad_ready[s].get()
            buckets = spec.grad_buckets[c]
            for j, t in enumerate(buckets):
                ready = start + dur * (j + 1) / len(buckets)
                begin = max(ready, free, env.now)
                if begin > env.now:
                    yield env.timeout(begin - env.now)
                yield env.timeout(t)
                free = env.now
        trace.dp_end[s] = free

    plans = [plan(s, spec) for s, spec in enumerate(stages)]
    for s, spec in enumerate(stages):
        env.process(stage_proc(s, plans[s]))
        env.process(dp_proc(s, spec))
    env.run()
    trace.contention = [0.0] * p
    for s, spec in enumerate(stages):
        exposed = max(0.0, trace.dp_end[s] - trace.compute_end[s])
        reduced = sum(sum(b) for b in spec.grad_buckets)
        trace.contention[s] = max(0.0, reduced - exposed) * spec.overlap_slowdown
        end = max(trace.compute_end[s], trace.dp_end[s]) + trace.contention[s]
        trace.stage_end[s] = end + spec.optimizer + spec.post_optimizer_comm
    trace.iteration_time = max(trace.stage_end)
    trace.busy.sort(key=lambda d: d["stage"])
    return trace
