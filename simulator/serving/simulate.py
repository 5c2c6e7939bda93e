"""``simulate_serving``: a serving cluster under a workload, as a simpy simulation.

The pieces read like the system: an arrival process (or closed-loop users) hands each request to
the router at its arrival time; the router picks a replica; admission control rejects what can
never run or finds the queue full (rejections are counted, never dropped); each replica is a
process that batches and runs iterations on the cost model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from .. import workbound
from ..catalog import get_model
from ..costmodel.fusion import engine_fusion
from ..costmodel.inference import GIB, InferenceModel
from ..costmodel.moe import check_layout as check_moe_layout
from ..errors import CapsimError, InfeasibleError
from ..hardware import HardwareProfile, get_profile
from ..scenario import (
    Diurnal,
    Empirical,
    Fixed,
    LengthDist,
    LogNormal,
    ServingScenario,
    Trace,
    Uniform,
    parse_scenario,
)
from ..serving_lengths import mean_length
from . import disaggregation
from .engines import ReplicaPlan
from .engines.presets import LengthStats, free_fraction
from .inputs import fixed_lengths, resolve_inputs
from .ledger import Ledger
from .replica import Replica
from .result import Part, ServingResult, build_result
from .service import Service
from .sessions import check_reuse
from .streamed import EXACT_BELOW, StreamStats
from .streams import service_streams
from .summary import SLOBounds
from .workload import Requests, draw_lengths, empirical_values, generate, rate_function, request_cycle_s, warmup_first

# request-level batchers keep a fixed share of the memory left after the model (no engine preset sizes them)
DEFAULT_FREE_FRACTION = 0.9


def replica_hardware(sc: ServingScenario) -> HardwareProfile:
    """The scenario's GPU with its measured tables bound to ``replica.engine`` at ``replica.engine_version``
    (a version without tables warns with :class:`~simulator.silicon.tables.TablesWarning` and uses the
    newest measured one below it, else the oldest), after checking the GPU runs ``precision``."""
    rc = sc.replica
    hw = get_profile(sc.hardware)
    hw.check_precision(sc.precision, key="precision")
    return hw.with_engine(rc.engine, rc.engine_version)


def length_stats(d_prompt: LengthDist, d_output: LengthDist) -> LengthStats:
    """The mean prompt and output lengths and the longest prompt of two length distributions
    (``max_prompt`` None for an unbounded one)."""
    if isinstance(d_prompt, Fixed):
        top: int | None = d_prompt.value
    elif isinstance(d_prompt, Uniform):
        top = d_prompt.high
    elif isinstance(d_prompt, LogNormal):
        top = d_prompt.max
    elif isinstance(d_prompt, Empirical):
        top = int(empirical_values(d_prompt).max())
    else:
        top = None
    return LengthStats(mean_length(d_prompt), mean_length(d_output), top)


def request_lengths(reqs: Requests) -> LengthStats | None:
    """The drawn requests' mean prompt and output lengths and longest prompt (None without requests)."""
    if not len(reqs):
        return None
    return LengthStats(float(reqs.prompt.mean()), float(reqs.output.mean()), int(reqs.prompt.max()))


def build_replica_model(sc: ServingScenario, lengths: LengthStats | None = None) -> tuple[InferenceModel, ReplicaPlan]:
    """The replica's cost model and its plan (engine settings, limits, KV capacity), with the scenario's checks.
    ``lengths``: the workload's request lengths (trtllm-bench sizes its engine from them; default: the
    scenario's length distributions)."""
    model, hw = get_model(sc.model), replica_hardware(sc)
    rc = sc.replica
    if model.architecture == "cnn" and rc.tp * rc.pp > 1:
        raise CapsimError(f"replica.tp and replica.pp: {model.name} is a convolutional network, served on one GPU "
                          "per replica (tensor and pipeline parallelism are modelled for transformers); set both to 1 "
                          "and add replicas")
    if model.heads % rc.tp:
        raise CapsimError(f"replica.tp={rc.tp} must divide {model.name}'s {model.heads} attention heads")
    if rc.pp > model.layers:
        raise CapsimError(f"replica.pp={rc.pp} exceeds {model.name}'s {model.layers} layers")
    check_moe_layout(model.name, model.layer_groups(), tp=rc.tp, ep=rc.ep, attention_dp=rc.attention_dp,
                     skew=rc.expert_skew)
    generative = model.architecture == "decoder"
    if lengths is None:
        lengths = length_stats(sc.workload.prompt_tokens, sc.workload.output_tokens)
    settings = rc.resolved(model, memory_gib=hw.memory_gib, gpu=hw.name, precision=sc.precision, lengths=lengths)
    seqs, tokens = rc.limits(model, hw.memory_gib, settings)   # the engine's own checks and its preset's limits
    seqs, tokens = seqs * rc.attention_dp, tokens * rc.attention_dp   # per attention DP group (ReplicaConfig)
    kv_prec = settings.kv_cache_precision
    decode_ctx = lengths.mean_prompt + lengths.mean_output / 2 if lengths is not None else math.nan
    perf = InferenceModel(model=model, hw=hw, tp=rc.tp, pp=rc.pp, precision=sc.precision, kv_precision=kv_prec,
                          fusion=engine_fusion(rc.engine), fp8_static=settings.fp8_scales == "static",
                          ep=rc.ep, attention_dp=rc.attention_dp, expert_skew=rc.expert_skew,
                          host_per_request=settings.host_us_per_request * 1e-6,
                          decode_context_tokens=decode_ctx if math.isfinite(decode_ctx) else None,
                          decode_span=(lengths.mean_prompt, lengths.mean_prompt + lengths.mean_output)
                          if lengths is not None and math.isfinite(decode_ctx) else None,
                          prompt_tokens=lengths.mean_prompt if lengths is not None and math.isfinite(
                              lengths.mean_prompt) else None)
    mem: dict[str, float]
    fraction = rc.kv_cache_fraction if rc.kv_cache_fraction is not None else DEFAULT_FREE_FRACTION
    if generative:
        max_tokens = min(tokens, 1 << 16)
        mean_context = lengths.mean_prompt + lengths.mean_output if lengths is not None else math.nan
        context = mean_context if math.isfinite(mean_context) and mean_context > 0 else None
        if rc.iteration_level and settings.engine.startswith("trtllm") and settings.prefix_caching:
            # TensorRT-LLM's KV cache manager writes a windowed layer's blocks linearly and detaches those that
            # leave the window, but not while block reuse is on (the SWA detach is guarded off with reuse,
            # TensorRT-LLM's "SWA KV cache" merge request): with enable_block_reuse (its default) a windowed
            # layer keeps every token of a sequence, as a full layer does
            context = None
        if rc.iteration_level:      # the preset's memory rule, as a share of the memory left after the model
            _, probe = perf.kv_capacity_tokens(kv_fraction=1.0, max_tokens=max_tokens, max_seqs=seqs,
                                               context_tokens=context)
            fraction = free_fraction(settings, capacity=hw.memory_bytes, weights=probe["weights_gib"] * GIB,
                                     free=probe["kv_cache_gib"] * GIB)
            if fraction <= 0:
                raise InfeasibleError(
                    f"{model.name} on {hw.name} with tp={rc.tp} pp={rc.pp} at {sc.precision}: {settings.engine}'s "
                    f"memory share ({settings.kv_memory_text()}) leaves no room for a KV cache beside weights "
                    f"{probe['weights_gib']:.1f} GiB and workspace {probe['workspace_gib']:.1f} GiB per GPU; raise "
                    "replica.tp or replica.pp, or set replica.kv_cache_fraction")
        kv_tokens, mem = perf.kv_capacity_tokens(kv_fraction=fraction, max_tokens=max_tokens, max_seqs=seqs,
                                                 context_tokens=context)
        if settings.max_num_seqs is None and settings.seqs_from_kv is not None:
            settings = settings.with_seqs(settings.seqs_from_kv(kv_tokens, model.max_positions))
            seqs = settings.max_num_seqs or seqs
    else:
        w = perf.weight_bytes_per_gpu()
        if w > hw.memory_bytes * fraction:
            raise InfeasibleError(f"{model.name} weights ({w / 2**30:.1f} GiB per GPU) do not fit on {hw.name}")
        kv_tokens, mem = 0, {"capacity_gib": hw.memory_gib, "weights_gib": w / 2**30}
    check_reuse(sc, settings if rc.iteration_level else None)   # shared prefixes, sessions, offload tiers
    hit = sc.workload.prefix_cache_hit_rate
    if hit > 0 and rc.iteration_level and not settings.prefix_caching:
        raise CapsimError(f"workload.prefix_cache_hit_rate is {hit:g} but replica.prefix_caching is false "
                          f"({settings.sources.get('prefix_caching', '')}): a replica without a prefix cache finds "
                          "nothing in it; set the hit rate to 0 or prefix_caching to true")
    return perf, ReplicaPlan(max_num_seqs=seqs, max_batched_tokens=tokens, kv_cache_tokens=kv_tokens,
                             kv_cache_precision=kv_prec, generative=generative,
                             gpus_per_replica=rc.tp * rc.attention_dp * rc.pp, memory_per_gpu_gib=mem,
                             prefix_cache_hit_rate=hit,
                             chunked_prefill=settings.chunked_prefill, kv_block_tokens=settings.kv_block_tokens,
                             scheduler_policy=settings.scheduler_policy, prefix_caching=settings.prefix_caching,
                             engine=settings if rc.iteration_level else None)


def stage_scenarios(sc: ServingScenario) -> list[tuple[str, ServingScenario]]:
    """The services a request passes through, each a full scenario (stage keys over the top level)."""
    if not sc.services:
        return [(sc.name, sc)]
    base = sc.model_dump(mode="json", exclude_none=True)
    base.pop("services")
    base.pop("disaggregation", None)      # the pools are the services (serving.disaggregation.expand)
    names = [st.name for st in sc.services]
    if len(set(names)) != len(names):
        raise CapsimError(f"services: names must be unique (got {', '.join(names)})")
    out = []
    for st in sc.services:
        doc = dict(base)
        over = st.model_dump(mode="json", exclude_none=True, exclude={"name", "cache_hit_rate", "prompt_tokens",
                                                                       "output_tokens"})
        doc.update(over)
        doc["workload"] = dict(base["workload"])
        for k in ("prompt_tokens", "output_tokens"):
            v = getattr(st, k)
            if v is not None:
                doc["workload"][k] = v.model_dump(mode="json")
        doc["name"] = st.name
        ssc = parse_scenario(doc, where=f"services[{st.name}]")
        assert isinstance(ssc, ServingScenario)   # kind: serving comes from the base document
        out.append((st.name, ssc))
    return out


class Cluster:
    """The workload driving the services: an arrival process or closed-loop users, and the chain of
    services each request passes through (one service unless ``services:`` lists several)."""

    def __init__(self, sc: ServingScenario, reqs: Requests, stages: list[tuple[str, ServingScenario, InferenceModel,
                 ReplicaPlan]], *, fast_forward: bool = True, env: simpy.Environment | None = None,
                 streamed: bool = False) -> None:
        """``env``: the simpy environment to run in (default: a new one; several models of one GPU pool,
        serving.deployments, share one). ``streamed``: fold the replicas' logs and stream the statistics
        as the run goes (:mod:`.streamed`)."""
        self.sc, self.reqs = sc, reqs
        self.env = env = env if env is not None else simpy.Environment()
        self.waiters: dict[int, simpy.Event] = {}
        n = len(reqs)
        rate_at = None
        if isinstance(sc.workload.arrival, Diurnal):
            fn = rate_function(sc.workload.arrival)
            rate_at = lambda t: float(fn(np.asarray(t)))  # noqa: E731
        elif hasattr(sc.workload.arrival, "rate_rps"):
            rate = float(sc.workload.arrival.rate_rps)
            rate_at = lambda t: rate  # noqa: E731
        self.hop = sc.network_hop_ms / 1000
        self.stages: list[Service] = []
        self.parts: list[Part] = []
        self.hits: list[np.ndarray] = []
        roles = disaggregation.roles(sc)
        self.transfer: Callable[[int], float] | None = None   # prefill → decode: the KV's seconds per request
        streams = service_streams(sc.seed, len(stages))
        for k, (name, ssc, perf, plan) in enumerate(stages):
            if len(stages) == 1:
                sreqs = reqs
            else:
                sreqs = Requests(np.full(n, np.nan), reqs.prompt, reqs.output, reqs.klass, reqs.priority,
                                 reqs.class_names, None)
                st, w = sc.services[k], reqs.warmup
                if st.prompt_tokens is not None:
                    draw = functools.partial(draw_lengths, st.prompt_tokens, rng=streams[k].prompt)
                    sreqs.prompt = warmup_first(draw, n - w, w)
                if st.output_tokens is not None:
                    draw = functools.partial(draw_lengths, st.output_tokens, rng=streams[k].output)
                    sreqs.output = warmup_first(draw, n - w, w)
                sreqs.prompt, sreqs.output = fixed_lengths(perf.model, sreqs.prompt, sreqs.output)
            rate = sc.services[k].cache_hit_rate if sc.services else 0.0
            self.hits.append(streams[k].cache.random(n) < rate if rate else np.zeros(n, bool))
            stream = None
            if streamed and len(stages) == 1:   # a chain reads each service's times after it: kept there
                stream = StreamStats(reqs.warmup, len(reqs.class_names), SLOBounds(**sc.slo.model_dump()).to_dict())
            ledger = Ledger(sreqs, on_finish=self._finisher(k), seed=sc.seed, streamed=streamed, stream=stream)
            if roles[k] == "decode":
                ledger.kv_transferred = True
                self.transfer = self._kv_transfer(ssc, stages[k - 1], stages[k])
            svc = Service(env=env, sc=ssc, perf=perf, plan=plan, ledger=ledger, fast_forward=fast_forward,
                          streams=streams[k], rate_at=rate_at)
            self.stages.append(svc)
            self.parts.append(Part(name, ssc, perf, plan, svc))
        self.resolved = [0] * len(self.stages)    # requests that reached each service or left the path before it
        self._single = len(self.stages) == 1 and not self.hits[0].any()
        self.arrivals_over = False
        if len(self.stages) == 1:
            self.ledger = self.stages[0].ledger
        else:
            self.ledger = Ledger(reqs, streamed=streamed)
        self.measured_from: float | None = 0.0 if not reqs.warmup else None   # when the measured phase began
        self._open_sessions = int(np.sum(reqs.next_turn == -1)) if reqs.next_turn is not None else 0
        self._arrivals_sent = False
        cl = reqs.closed_loop
        if cl:
            self._next = 0
            self._users = min(cl.concurrency, n)
            self._warm_left = reqs.warmup
            self._drained = env.event()
            self.spread = 0.0                  # the span the users' first requests are spread over
            if cl.start == "stationary":
                self.spread = cl.start_spread_s or request_cycle_s(
                    [(perf, plan, ssc.cluster.replicas, float(p.svc.ledger.reqs.prompt.mean()),
                      float(p.svc.ledger.reqs.output.mean()))
                     for (_, ssc, perf, plan), p in zip(stages, self.parts, strict=True)],
                    cl.concurrency, cl.think_time_s)
            for i in range(self._users):
                env.process(self._user(i))
        else:
            env.process(self._arrivals())

    def _kv_transfer(self, sc: ServingScenario, pre: tuple[str, ServingScenario, InferenceModel, ReplicaPlan],
                     dec: tuple[str, ServingScenario, InferenceModel, ReplicaPlan]) -> Callable[[int], float]:
        """The seconds request ``r``'s prompt KV takes from the prefill pool to the decode pool."""
        perf = pre[2]
        intra = disaggregation.same_node(self.sc, perf, pre[3].gpus_per_replica, dec[3].gpus_per_replica)
        prompt = self.reqs.prompt
        return lambda r: disaggregation.transfer_s(perf, int(prompt[r]), intra_node=intra)

    @property
    def replicas(self) -> list[Replica]:
        return [r for s in self.stages for r in s.all]

    # ---- the request path -----------------------------------------------------------------------
    def arrive(self, r: int, t: float) -> None:
        if self._single:                       # one service, no cache: straight to it
            self.resolved[0] += 1
            self.stages[0].dispatch(r, t)
            return
        if len(self.stages) > 1:
            self.reqs.arrival[r] = t
        self._enter(0, r, t)

    def _enter(self, k: int, r: int, t: float) -> None:
        """Request ``r`` reaches service ``k`` at ``t``: served, or answered from its cache."""
        svc = self.stages[k]
        self.resolved[k] += 1
        self._mark_arrivals_done()
        if len(self.stages) > 1:
            svc.ledger.reqs.arrival[r] = t
        if self.hits[k][r]:
            svc.cache_hits += 1
            svc.issued += 1
            svc.ledger.first_sched[r] = svc.ledger.first_token[r] = t
            svc.ledger.finish(r, t)
            return
        svc.dispatch(r, t)

    def _mark_arrivals_done(self) -> None:
        """A service has all its arrivals once every request that entered the path has reached it or
        left the path before it (the service then stops autoscaling and fault timers when idle)."""
        if not self.arrivals_over:
            return
        for svc, n in zip(self.stages, self.resolved, strict=True):
            if n >= self.resolved[0]:
                svc.arrivals_done = True

    def _finisher(self, k: int):
        def finished(r: int, t: float) -> None:
            svc = self.stages[k]
            svc.on_finish(r, t)
            if len(self.stages) == 1:
                self._done(r, t)
                return
            led = svc.ledger
            if led.status[r] != 1 or k == len(self.stages) - 1:
                self._finish_chain(r, t, k)
                return
            nxt = k + 1
            hop = self.transfer(r) if self.transfer is not None and k == 0 else self.hop
            if hop:
                ev = self.env.timeout(hop)
                ev.callbacks.append(functools.partial(self._enter_after_hop, nxt, r, t + hop))
            else:
                self._enter(nxt, r, t)
        return finished

    def _enter_after_hop(self, k: int, r: int, t: float, _ev: simpy.Event) -> None:
        self._enter(k, r, t)

    def _finish_chain(self, r: int, t: float, k: int) -> None:
        """The request left the chain at service ``k`` (the last one, or rejected/failed there)."""
        if k < len(self.stages) - 1:
            for j in range(k + 1, len(self.stages)):
                self.resolved[j] += 1          # it will never reach the later services
            self._mark_arrivals_done()
        led, src = self.ledger, self.stages[k].ledger
        led.status[r], led.reason[r], led.done[r] = src.status[r], src.reason[r], t
        led.replica[r] = src.replica[r]
        led.preemptions[r] = sum(int(s.ledger.preemptions[r]) for s in self.stages)
        led.first_sched[r] = self.stages[0].ledger.first_sched[r]
        if k == len(self.stages) - 1 and src.status[r] == 1:
            led.first_token[r] = src.first_token[r]
            led.generated[r] = src.generated[r]
        self._done(r, t)

    def _done(self, r: int, t: float) -> None:
        ev = self.waiters.pop(r, None)
        if ev is not None:
            ev.succeed(t)
        nxt = self.reqs.next_turn
        if nxt is not None:
            self._next_turn(r, int(nxt[r]), t)
        if r < self.reqs.warmup:
            self._warm_left -= 1
            if self._warm_left == 0:           # the warm-up is drained: the measured phase starts now
                self.measured_from = t
                self._drained.succeed(t)

    # ---- arrivals ---------------------------------------------------------------------------------
    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        # a session's later turns get their times as they are sent: read the times as drawn
        env, times = self.env, self.reqs.arrival if self.reqs.next_turn is None else self.reqs.arrival.copy()
        for r in range(len(times)):
            t = float(times[r])
            if t != t:                         # a session's later turn: sent after the previous answer
                continue
            if t > env.now:
                yield env.timeout(t - env.now)
            self.arrive(r, t)
        self._arrivals_sent = True
        if not self._open_sessions:
            self.arrivals_over = True
            self._mark_arrivals_done()

    def _next_turn(self, r: int, nxt: int, t: float) -> None:
        """Turn ``r`` of a session finished at ``t``: its next turn ``nxt`` is sent after the think time if
        it completed; a rejected or failed turn, or the last, ends the session."""
        if nxt >= 0 and self.ledger.status[r] == 1:
            send = t + self.reqs.think_time_s
            self.reqs.arrival[nxt] = send
            if send > self.env.now:
                ev = self.env.timeout(send - self.env.now)
                ev.callbacks.append(lambda _ev: self.arrive(nxt, send))
            else:
                self.arrive(nxt, send)
            return
        self._open_sessions -= 1
        if not self._open_sessions and self._arrivals_sent:
            self.arrivals_over = True
            self._mark_arrivals_done()

    def _user(self, i: int) -> Generator[simpy.Event, Any, None]:
        """Closed-loop user ``i``: in each phase (the warm-up, if any, then the measured requests) send a
        request, wait for its response, wait the think time, repeat while the phase has requests left.
        A phase starts at once for every user (burst) or at ``i · spread / concurrency`` (stationary),
        or when the user's think time ends if that is later; the measured phase starts when the last
        warm-up request has finished."""
        env, cl, reqs = self.env, self.reqs.closed_loop, self.reqs
        assert cl is not None
        start = 0.0
        for last in (reqs.warmup, len(reqs)) if reqs.warmup else (len(reqs),):
            t = start + i * self.spread / cl.concurrency
            if t > env.now:
                yield env.timeout(t - env.now)
            t = max(t, env.now)                # still in its think time when the phase started
            while self._next < last:
                r = self._next
                self._next += 1
                reqs.arrival[r] = t
                ev = self.waiters[r] = env.event()
                self.arrive(r, t)
                t = (yield ev) + cl.think_time_s
                if cl.think_time_s:
                    yield env.timeout(max(t - env.now, 0.0))
            if last == reqs.warmup:
                start = yield self._drained
        self._users -= 1
        if self._users == 0:
            self.arrivals_over = True
            self._mark_arrivals_done()

    def run(self, progress: Callable[[float, float | None], None] | None = None) -> float:
        horizon = self.sc.workload.horizon_s
        if progress is None:
            self.env.run(until=horizon)
        else:
            self._run_reporting(horizon, progress)
        return self.end_time()

    def end_time(self) -> float:
        """The run's span: the horizon, else the last completion."""
        horizon = self.sc.workload.horizon_s
        if horizon is not None:
            return horizon
        done = self.ledger.done[np.isfinite(self.ledger.done)]
        return float(done.max()) if len(done) else 0.0


    PROGRESS_STEPS = 200    # reports per run: one extra event each, nothing in the engines' loop

    def _run_reporting(self, horizon: float | None, progress: Callable[[float, float | None], None]) -> None:
        """``env.run`` in slices of simulated time, reporting ``(now, total)`` after each. A slice stops
        before the events at its end time (simpy's stop event is urgent) and leaves one no-op event
        (the stop event, rescheduled without callbacks); the next slice runs the rest in their order.
        The same events in the same order as one ``run``: the same result."""
        env = self.env
        finite = self.reqs.arrival[np.isfinite(self.reqs.arrival)]     # a closed loop's are NaN until issued
        total = horizon if horizon is not None else (float(finite.max()) if len(finite) else None)
        step = (total / self.PROGRESS_STEPS) if total else 10.0

        def work_left() -> bool:     # any event that does something (not a finished slice's leftover)
            return any(e.callbacks for *_, e in env._queue)

        while work_left():
            until = env.now + step if horizon is None else min(env.now + step, horizon)
            if until <= env.now:
                break
            env.run(until=until)
            progress(env.now, total)


def check_trace_size(n: int) -> None:
    """Refuse a trace of more requests than :data:`simulator.workbound.MAX_REQUESTS` (counted once read:
    a trace's length is not known from the scenario) unless forced, as for drawn workloads."""
    bound = workbound.MAX_REQUESTS
    if n > bound:
        per = workbound.bytes_per_request(n)
        workbound.refuse(f"the trace has {n:,} requests (~{n * per / 2**30:,.1f} GiB at {per} B each); the bound is "
                         f"{bound:,} requests: cut the trace (workload.arrival.path) or set workload.duration_s")


def simulate_serving(scenario: ServingScenario, *, fast_forward: bool = True,
                     progress: Callable[[float, float | None], None] | None = None,
                     exact_below: int = EXACT_BELOW) -> ServingResult:
    """Simulate a serving scenario: per-request latencies, throughput, utilization, SLO attainment and cost.

    ``fast_forward=False`` advances decode steps one event at a time (slow; for checking that the
    fast path gives the same per-request results). ``progress(simulated_s, total_s)`` is called about
    200 times along the run (``total_s``: the horizon or the last arrival; None when not known).
    A run of ``exact_below`` requests or more streams its latency statistics (:mod:`.streamed`:
    percentiles from ±0.5% sketches, said in its warnings); below, they are exact.
    """
    if not isinstance(scenario, ServingScenario):
        raise CapsimError(f"simulate_serving needs a serving scenario (got kind {scenario.kind!r}); "
                          "use simulate_training for training")
    prep = prepare(scenario)
    cluster = Cluster(prep.scenario, prep.reqs, prep.stages, fast_forward=fast_forward,
                      streamed=len(prep.reqs) >= exact_below)
    end = cluster.run(progress)
    return finish(prep, cluster, end, exact_below=exact_below)


@dataclass
class Prepared:
    """A serving scenario ready to simulate: as asked and as run (pools expanded, inputs sized), its
    requests, the warnings so far and each service's scenario, cost model and plan."""

    asked: ServingScenario
    scenario: ServingScenario
    reqs: Requests
    warnings: list[str]
    stages: list[tuple[str, ServingScenario, InferenceModel, ReplicaPlan]]


def prepare(scenario: ServingScenario) -> Prepared:
    """Everything before the simulation: the requests drawn, the replicas planned, the checks made."""
    asked, scenario = scenario, disaggregation.expand(scenario)   # xPyD: a path of a prefill and a decode pool
    if not scenario.services:        # an encoder's, ViT's or CNN's inputs are sized by the model
        scenario = resolve_inputs(scenario, get_model(scenario.model))
    workbound.check_serving_size(scenario)   # before drawing: refuse a run of hours or of many GiB (--force)
    reqs, warnings = generate(scenario.workload, scenario.seed)
    if isinstance(scenario.workload.arrival, Trace):
        check_trace_size(len(reqs))
    if not scenario.services:
        model = get_model(scenario.model)
        if model.tokens_per_input is not None and isinstance(scenario.workload.arrival, Trace):
            warnings.append(f"trace: the prompt token counts were not used; every input of {model.name} is "
                            f"{model.tokens_per_input} tokens")
        reqs.prompt, reqs.output = fixed_lengths(model, reqs.prompt, reqs.output)
    drawn = request_lengths(reqs)           # what trtllm-bench would read off its dataset
    stages, means = [], []
    for k, (name, ssc) in enumerate(stage_scenarios(scenario)):
        own = scenario.services and (scenario.services[k].prompt_tokens or scenario.services[k].output_tokens)
        perf, plan = build_replica_model(ssc, None if own else drawn)
        stages.append((name, ssc, perf, plan))
        means.append((mean_length(ssc.workload.prompt_tokens), mean_length(ssc.workload.output_tokens)) if own
                     else (float(reqs.prompt.mean()) if len(reqs) else 1.0,
                           float(reqs.output.mean()) if len(reqs) else 1.0))
    unstable = workbound.check_stable(scenario, stages, means)   # overload: refused unless --force
    if unstable:
        warnings = [*warnings, unstable]
    return Prepared(asked, scenario, reqs, warnings, stages)


def finish(prep: Prepared, cluster: Cluster, end: float, *, exact_below: int = EXACT_BELOW) -> ServingResult:
    """The result of a cluster that ran to ``end`` (latency statistics streamed at ``exact_below``
    requests or more)."""
    measured_from = end if cluster.measured_from is None else cluster.measured_from   # never drained: no measured phase
    shown = prep.asked if prep.asked.disaggregation else prep.scenario   # the pools as the user wrote them
    for rep in cluster.replicas:            # a streamed run's replicas: the rest of their logs into their bins
        rep.fold(end)
    return build_result(shown, cluster.parts, cluster.ledger, end, prep.warnings, measured_from=measured_from,
                        exact_below=exact_below)
