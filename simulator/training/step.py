"""One training iteration as a discrete-event simulation of a pipeline.

Each pipeline stage is a simpy process that walks its schedule (GPipe, 1F1B or interleaved 1F1B),
waiting for the activation (forward) or gradient (backward) of the neighbouring virtual stage plus
the point-to-point transfer. Gradient buckets are reduced over data parallelism on a separate
communication stream as the last micro-batch's backward produces them, so only the part that
outlasts the backward is exposed. One pipeline stands for all DP replicas (they are symmetric), so
the cost of a step does not grow with the data-parallel degree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy


@dataclass(frozen=True, slots=True)
class PassTime:
    """Duration of a forward or backward of one micro-batch through one model chunk, split into
    what it is made of (for the time breakdown)."""

    total: float
    compute: float = 0.0
    comm: float = 0.0          # tensor/context/expert-parallel collectives inside the pass
    host: float = 0.0          # GPU idle waiting for the host to issue kernels
    dp: float = 0.0            # ZeRO parameter gathers and gradient reductions the pass exposes

    @staticmethod
    def of(compute: float, comm: float = 0.0, host_floor: float = 0.0, dp: float = 0.0) -> PassTime:
        """``host_floor``: the wall time of issuing the pass's kernels; ``dp`` adds on top."""
        gpu = compute + comm
        total = max(gpu, host_floor)
        return PassTime(total + dp, compute, comm, total - gpu, dp)


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


@dataclass(slots=True)
class StepTrace:
    iteration_time: float
    stage_end: list[float]
    compute_end: list[float]
    dp_end: list[float]
    contention: list[float] = field(default_factory=list)   # compute slowed by overlapped reduction
    timeline: list[tuple[int, str, int, int, float, float]] = field(default_factory=list)  # stage, F/B, chunk, mb, start, end
    busy: list[dict[str, float]] = field(default_factory=list)


def schedule(kind: str, stage: int, p: int, m: int, v: int) -> list[tuple[str, int, int]]:
    """The order of (F|B, chunk, micro-batch) on ``stage`` for a schedule."""
    if kind == "gpipe":
        return [("F", 0, i) for i in range(m)] + [("B", 0, i) for i in range(m)]
    if v == 1:
        warm = min(p - stage - 1, m)
        order = [("F", 0, i) for i in range(warm)]
        for i in range(m - warm):
            order += [("F", 0, warm + i), ("B", 0, i)]
        return order + [("B", 0, i) for i in range(m - warm, m)]
    # Megatron-LM interleaved 1F1B (Narayanan et al. SC'21): micro-batches in groups of p per chunk.
    total = m * v

    def fwd_id(k: int) -> tuple[int, int]:
        return (k // p) % v, (k // (p * v)) * p + k % p

    def bwd_id(k: int) -> tuple[int, int]:
        return v - 1 - (k // p) % v, (k // (p * v)) * p + k % p

    warm = min((p - stage - 1) * 2 + (v - 1) * p, total)
    order = [("F", *fwd_id(k)) for k in range(warm)]
    for i in range(total - warm):
        order += [("F", *fwd_id(warm + i)), ("B", *bwd_id(i))]
    return order + [("B", *bwd_id(k)) for k in range(total - warm, total)]


def simulate_step(stages: Sequence[StageSpec], *, microbatches: int, schedule_kind: str = "1f1b",
                  p2p: float = 0.0, record: bool = True) -> StepTrace:
    """Run one iteration; ``stages[s].fwd[c]`` is chunk ``c`` of device ``s`` (virtual stage c·p+s)."""
    p = len(stages)
    v = len(stages[0].fwd)
    m = microbatches
    env = simpy.Environment()
    nvs = p * v
    done: dict[tuple[str, int, int], simpy.Event] = {}
    finish: dict[tuple[str, int, int], float] = {}
    for kind in ("F", "B"):
        for vs in range(nvs):
            for i in range(m):
                done[(kind, vs, i)] = env.event()
    trace = StepTrace(0.0, [0.0] * p, [0.0] * p, [0.0] * p)
    grad_ready: list[simpy.Store] = [simpy.Store(env) for _ in range(p)]
    compute_done: list[simpy.Event] = [env.event() for _ in range(p)]

    def stage_proc(s: int, spec: StageSpec):
        busy = {"compute": 0.0, "comm": 0.0, "host": 0.0, "dp": 0.0}
        last_b = {c: m - 1 for c in range(v)}
        for kind, c, i in schedule(schedule_kind, s, p, m, v):
            vs = c * p + s
            dep = (kind, vs - 1, i) if kind == "F" else (kind, vs + 1, i)
            if kind == "B" and vs == nvs - 1:
                dep = ("F", vs, i)
            if dep[1] >= 0 and dep[1] < nvs:
                ev = done[dep]
                if not ev.triggered:
                    yield ev
                cross = dep[0] == kind  # a neighbour's output crosses a link
                wait = finish[dep] + (p2p if cross else 0.0) - env.now
                if wait > 0:
                    yield env.timeout(wait)
            pt = (spec.fwd if kind == "F" else spec.bwd)[c]
            start = env.now
            if kind == "B" and i == last_b[c] and spec.grad_buckets:
                grad_ready[s].put((start, pt.total, c))
            yield env.timeout(pt.total)
            busy["compute"] += pt.compute
            busy["comm"] += pt.comm
            busy["host"] += pt.host
            busy["dp"] += pt.dp
            finish[(kind, vs, i)] = env.now
            done[(kind, vs, i)].succeed()
            if record:
                trace.timeline.append((s, kind, c, i, start, env.now))
        trace.compute_end[s] = env.now
        compute_done[s].succeed()
        trace.busy.append({"stage": s, **busy})

    def dp_proc(s: int, spec: StageSpec):
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

    for s, spec in enumerate(stages):
        env.process(stage_proc(s, spec))
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
