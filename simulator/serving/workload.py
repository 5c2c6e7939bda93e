"""Requests of a serving workload: arrival times, prompt and output lengths, classes.

Open-loop processes are drawn up front as arrays (vectorised, seeded); closed-loop arrivals are
issued by the simulation as users receive their responses, so only their lengths are drawn here.
Each random quantity has its own stream spawned from the scenario seed, so changing the arrival
process does not change the lengths drawn, and vice versa.

A closed loop's warm-up requests are the first rows (they are sent first); their lengths and
classes are drawn after the measured requests' from the same streams, so adding or removing a
warm-up leaves every measured request's draws as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CapsimError
from ..files import excerpt, read_text
from ..limits import MAX_TOKENS
from ..scenario import (
    ClosedLoop,
    Diurnal,
    Empirical,
    Exponential,
    Fixed,
    Gamma,
    LengthDist,
    LogNormal,
    Normal,
    Offline,
    Poisson,
    Trace,
    Uniform,
    Workload,
)

if TYPE_CHECKING:
    from ..costmodel.inference import InferenceModel
    from .engines import ReplicaPlan
    from .engines.prefix_cache import Content

@dataclass(slots=True)
class Requests:
    """Struct of arrays, one row per request. ``arrival`` is NaN for closed-loop requests until issued.
    The first ``warmup`` rows are a closed loop's warm-up requests (excluded from the statistics)."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    klass: np.ndarray
    priority: np.ndarray
    class_names: tuple[str, ...]
    closed_loop: ClosedLoop | None = None
    warmup: int = 0
    content: Content | None = None          # token identities, for the hashed prefix cache (.sessions)
    next_turn: np.ndarray | None = None     # a session's next turn per row (-1: its last), sent after the answer
    think_time_s: float = 0.0

    def __len__(self) -> int:
        return len(self.prompt)


def _read_csv(path: str, what: str):
    import io

    import pandas as pd

    text = read_text(path, what)       # a missing file, a folder, binary or non-UTF-8 text: a clear error
    try:
        return pd.read_csv(io.StringIO(text))
    except Exception as e:  # pandas raises several parser errors
        raise CapsimError(f"{what} {excerpt(path)} is not a readable CSV: {excerpt(str(e), 200)}") from None


def _positive_ints(values: np.ndarray, where: str) -> np.ndarray:
    """Token counts: whole numbers from 1 to simulator.limits.MAX_TOKENS (a text cell is an error)."""
    import pandas as pd

    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(v) | (v < 1) | (v > MAX_TOKENS) | (v != np.round(v)))
    if len(bad):
        i = int(bad[0])
        shown = values[i].item() if hasattr(values[i], "item") else values[i]
        raise CapsimError(f"{where}: row {i + 2} has {excerpt(shown)}; token counts must be whole numbers from 1 "
                          f"to {MAX_TOKENS:,}")
    return v.astype(np.int64)


def empirical_values(d: Empirical) -> np.ndarray:
    frame = _read_csv(d.path, "empirical length file")
    col = d.column or frame.columns[0]
    if col not in frame:
        raise CapsimError(f"empirical length file {d.path!r} has no column {col!r} (has {', '.join(frame.columns)})")
    if len(frame) == 0:
        raise CapsimError(f"empirical length file {d.path!r} has no rows")
    return _positive_ints(frame[col].to_numpy(), f"{d.path} column {col!r}")


def draw_lengths(d: LengthDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` token counts (each >= 1) from a length distribution."""
    if isinstance(d, Fixed):
        return np.full(n, d.value, dtype=np.int64)
    if isinstance(d, Uniform):
        return rng.integers(d.low, d.high + 1, size=n, dtype=np.int64)
    if isinstance(d, LogNormal):
        # parameterised by its mean: mu = ln(mean) - sigma^2/2
        x = rng.lognormal(math.log(d.mean) - d.sigma**2 / 2, d.sigma, size=n)
        if d.max:
            x = np.minimum(x, d.max)
        return np.maximum(np.rint(x), 1).astype(np.int64)
    if isinstance(d, Exponential):
        return np.maximum(np.rint(rng.exponential(d.mean, size=n)), 1).astype(np.int64)
    if isinstance(d, Empirical):
        return rng.choice(empirical_values(d), size=n, replace=True)
    if isinstance(d, Normal):
        # aiperf's sample_positive_normal_integer: redraw values <= 0, then the ceiling
        x = rng.normal(d.mean, d.stddev, size=n)
        bad = np.flatnonzero(x <= 0)
        while len(bad):
            x[bad] = rng.normal(d.mean, d.stddev, size=len(bad))
            bad = bad[x[bad] <= 0]
        return np.maximum(np.ceil(x), 1).astype(np.int64)
    raise CapsimError(f"unknown length distribution {d!r}")


def warmup_first(draw: Callable[[int], np.ndarray], measured: int, warmup: int) -> np.ndarray:
    """``warmup + measured`` draws, warm-up rows first, drawn after the measured ones: the measured
    requests draw the same values whatever the warm-up."""
    m = draw(measured)
    return np.concatenate([draw(warmup), m]) if warmup else m


def _stop(w: Workload, requests: int | None) -> tuple[int | None, float | None]:
    if requests is None and w.duration_s is None:
        raise CapsimError("an open-loop workload needs an end: set workload.duration_s or workload.arrival.requests")
    return requests, w.duration_s


def _renewal(gaps, n: int | None, duration: float | None, mean_gap: float) -> np.ndarray:
    """Arrival times from i.i.d. gaps drawn by ``gaps(k)``, up to ``n`` arrivals or ``duration``."""
    if n is not None:
        t = np.cumsum(gaps(n))
        return t[t < duration] if duration is not None else t
    assert duration is not None
    chunks, last = [], 0.0
    while True:
        k = max(int(duration / mean_gap * 1.1) + 16, 16)
        t = last + np.cumsum(gaps(k))
        chunks.append(t[t < duration])
        if t[-1] >= duration:
            return np.concatenate(chunks)
        last = float(t[-1])


def rate_function(a: Diurnal):
    """rate(t) in requests/s: a piecewise-constant schedule, or a sinusoidal day."""
    if a.schedule is not None:
        ts = np.array([t for t, _ in a.schedule])
        rs = np.array([r for _, r in a.schedule])
        return lambda t: rs[np.searchsorted(ts, t, side="right") - 1]
    amp = (a.peak_to_trough - 1) / (a.peak_to_trough + 1)
    return lambda t: a.mean_rps * (1 + amp * np.cos(2 * np.pi * (t - a.peak_at_s) / a.period_s))


def _nonhomogeneous(a: Diurnal, n: int | None, duration: float | None, rng: np.random.Generator) -> np.ndarray:
    """Non-homogeneous Poisson arrivals by time rescaling: unit-rate points mapped through Λ⁻¹."""
    rate = rate_function(a)
    if duration is None:
        assert n is not None, "an open-loop workload has a request count or a duration (checked on load)"
        mean = a.mean_rps or float(np.mean([r for _, r in a.schedule or []]))
        duration = 2.0 * n / mean + a.period_s  # long enough for n arrivals at any phase
    step = min(a.period_s / 2000, duration / 2000) if a.schedule is None else duration / 20000
    grid = np.arange(0.0, duration + step, step)
    mid = grid[:-1] + step / 2
    cum = np.concatenate([[0.0], np.cumsum(rate(mid) * step)])
    total = cum[-1]
    k = n if n is not None else int(total + 6 * math.sqrt(total) + 16)
    u = np.cumsum(rng.exponential(1.0, size=k))
    u = u[u < total]
    t = np.interp(u, cum, grid)
    return t[:n] if n is not None else t


def read_trace(tr: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(timestamps, prompt, output, warnings) of a trace file in any of :mod:`.traces`' formats."""
    from .traces import read_trace as read

    return read(tr)


def generate(w: Workload, seed: int) -> tuple[Requests, list[str]]:
    """All requests of the workload (closed loop: lengths only) and any warnings about the input."""
    s_arr, s_prompt, s_out, s_cls = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    a = w.arrival
    warnings: list[str] = []
    closed = None
    prompt = output = None
    if isinstance(a, Poisson):
        n, dur = _stop(w, a.requests)
        t = _renewal(lambda k: s_arr.exponential(1 / a.rate_rps, size=k), n, dur, 1 / a.rate_rps)
    elif isinstance(a, Gamma):
        n, dur = _stop(w, a.requests)
        shape = 1 / a.cv**2
        t = _renewal(lambda k: s_arr.gamma(shape, 1 / (a.rate_rps * shape), size=k), n, dur, 1 / a.rate_rps)
    elif isinstance(a, Diurnal):
        n, dur = _stop(w, a.requests)
        t = _nonhomogeneous(a, n, dur, s_arr)
    elif isinstance(a, Offline):
        t = np.zeros(a.requests)
    elif isinstance(a, ClosedLoop):
        t = np.full(a.warmup_requests + a.requests, np.nan)
        closed = a
    elif isinstance(a, Trace):
        t, prompt, output, warnings = read_trace(a)
        if w.duration_s is not None:
            keep = t < w.duration_s
            if not keep.all():
                warnings.append(f"trace: {int((~keep).sum())} requests after workload.duration_s were not replayed")
            t, prompt, output = t[keep], prompt[keep], output[keep]
    else:  # pragma: no cover - the scenario schema admits no other process
        raise CapsimError(f"unknown arrival process {a!r}")
    if w.sessions is not None:
        from .sessions import session_rows  # imported here: it reaches the engines, which import this module

        t = session_rows(t, w.sessions.turns)
    n = len(t)
    if n == 0:
        raise CapsimError("the workload produced no requests; raise workload.duration_s or the arrival rate")
    warm = closed.warmup_requests if closed is not None else 0
    if prompt is None:
        prompt = warmup_first(lambda k: draw_lengths(w.prompt_tokens, k, s_prompt), n - warm, warm)
        output = warmup_first(lambda k: draw_lengths(w.output_tokens, k, s_out), n - warm, warm)
    content = next_turn = None
    if w.shared_prefix is not None or w.sessions is not None:
        from .sessions import compose

        assert output is not None
        step = w.sessions.step_tokens if w.sessions is not None else None
        step_new = None
        if step is not None:
            step_new = draw_lengths(step, n, np.random.default_rng(np.random.SeedSequence(seed).spawn(6)[5]))
        prompt, content, next_turn = compose(w, prompt, output, seed, step_new)
    names: tuple[str, ...] = ("default",)
    klass = np.zeros(n, dtype=np.int16)
    priority = np.zeros(n, dtype=np.int64)
    if w.classes:
        names = tuple(c.name for c in w.classes)
        if len(set(names)) != len(names):
            raise CapsimError(f"workload.classes: class names must be unique (got {', '.join(names)})")
        p = np.array([c.weight for c in w.classes])
        klass = warmup_first(lambda k: s_cls.choice(len(names), size=k, p=p / p.sum()), n - warm, warm).astype(np.int16)
        priority = np.array([c.priority for c in w.classes], dtype=np.int64)[klass]
    assert output is not None
    think = w.sessions.think_time_s if w.sessions is not None else 0.0
    return Requests(np.asarray(t, dtype=float), prompt, output, klass, priority, names, closed, warm, content,
                    next_turn, think), warnings


def request_cycle_s(stages: list[tuple[InferenceModel, ReplicaPlan, int, float, float]], concurrency: int,
                    think_time_s: float) -> float:
    """One closed-loop user's estimated cycle in the steady state, seconds, summed over the services
    of its path, plus the think time. ``stages`` holds per service its cost model, plan, replicas, and
    the mean prompt and output lengths of its requests.

    Without think time a closed loop keeps its replicas busy, so a user's cycle is the time a replica
    takes to serve its ``u = concurrency / replicas`` users once each: ``u`` prefills of the mean prompt
    ``p`` (each holds up the decoding batch, chunked into mixed iterations or run prefill-first) and
    ``u / n · (o − 1)`` decode steps of ``n = min(u, max_num_seqs)`` sequences at the mean context
    ``p + o/2`` (``o`` the mean output). A model without decode runs ``u / n`` forwards of ``n``
    prompts. Queueing beyond the batch and KV-cache limits are left out: this only spaces out the
    users' first requests (``start: stationary``), it enters no result."""
    total = think_time_s
    for perf, plan, replicas, p_mean, o_mean in stages:
        p = max(round(p_mean), 1)
        users = concurrency / replicas
        n = max(min(math.ceil(users), plan.max_num_seqs), 1)
        if not plan.generative:
            total += users / n * perf.forward_time(n, p)
            continue
        prefill = perf.iteration_time(tokens=p, sampled=1, prefill_work=p * (p + 1) / 2, decode_seqs=0, decode_ctx=0)
        step = perf.decode_base(n) + perf.decode_coef_per_step * n * (p + o_mean / 2)
        total += users * prefill + users / n * max(o_mean - 1.0, 0.0) * step
    return total
