"""Serving workload keys: how requests arrive (open-loop processes, closed-loop users, offline, a
trace), their prompt and output lengths, request classes and prefix-cache hits."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import _Strict


class Fixed(_Strict):
    """Every request has the same length."""

    dist: Literal["fixed"] = Field(description="fixed: one length for every request")
    value: int = Field(ge=1, description="tokens")


class Uniform(_Strict):
    """Lengths drawn uniformly from low..high (integers, both ends included)."""

    dist: Literal["uniform"] = Field(description="uniform integer lengths")
    low: int = Field(ge=1, description="shortest length, tokens")
    high: int = Field(ge=1, description="longest length, tokens")

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class LogNormal(_Strict):
    """Log-normal lengths with a given mean (the shape of chat prompts and answers)."""

    dist: Literal["lognormal"] = Field(description="log-normal lengths, parameterised by their mean")
    mean: float = Field(gt=0, description="mean token count")
    sigma: float = Field(default=0.5, ge=0, description="standard deviation of ln(length); 0.5 is an assumed moderate spread")
    max: int | None = Field(default=None, ge=1, description="cap on a drawn length, tokens; default: no cap")


class Exponential(_Strict):
    """Exponential (memoryless) lengths."""

    dist: Literal["exponential"] = Field(description="exponential lengths")
    mean: float = Field(gt=0, description="mean token count (memoryless lengths, rounded, at least 1)")


class Empirical(_Strict):
    """Lengths resampled from a CSV column of measured lengths."""

    dist: Literal["empirical"] = Field(description="resample measured lengths")
    path: str = Field(description="CSV file with one length per row")
    column: str | None = Field(default=None, description="column to read; default: the first")


class Normal(_Strict):
    """Normal lengths given by a mean and a standard deviation, as aiperf and genai-perf draw synthetic
    prompts and outputs (``--synthetic-input-tokens-mean/-stddev``, ``--output-tokens-mean/-stddev``):
    a draw at or below 0 is drawn again, and the length is its ceiling (aiperf
    ``dataset/utils.py:sample_positive_normal_integer``)."""

    dist: Literal["normal"] = Field(description="normal lengths with a mean and a standard deviation (aiperf's "
                                                "synthetic-token mean/stddev)")
    mean: float = Field(gt=0, description="mean token count")
    stddev: float = Field(default=0.0, ge=0, description=(
        "standard deviation, tokens (default 0, aiperf's and genai-perf's --output-tokens-stddev default: every "
        "length is ceil(mean))"))


LengthDist = Annotated[Fixed | Uniform | LogNormal | Exponential | Empirical | Normal, Field(discriminator="dist")]


_REQUESTS = "stop after this many requests (and/or at workload.duration_s)"


class Poisson(_Strict):
    """Open-loop arrivals with exponential gaps."""

    process: Literal["poisson"] = Field(description="Poisson arrivals")
    rate_rps: float = Field(gt=0, description="mean arrivals per second")
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)


class Gamma(_Strict):
    """Open-loop arrivals with gamma-distributed gaps: burstier (cv > 1) or smoother than Poisson."""

    process: Literal["gamma"] = Field(description="gamma renewal arrivals")
    rate_rps: float = Field(gt=0, description="mean arrivals per second")
    cv: float = Field(default=1.0, gt=0, description="coefficient of variation of inter-arrival times")
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)


class Diurnal(_Strict):
    """A daily pattern: a sinusoid around a mean rate, or a piecewise-constant schedule."""

    process: Literal["diurnal"] = Field(description="time-varying Poisson arrivals")
    mean_rps: float | None = Field(default=None, gt=0, description="mean arrivals per second of the sinusoidal day")
    peak_to_trough: float = Field(default=3.0, ge=1, description="ratio of the peak rate to the trough rate (3 assumed)")
    period_s: float = Field(default=86400, gt=0, description="length of one cycle, seconds (a day)")
    peak_at_s: float = Field(default=50400, ge=0, description="time of the peak within the period (14:00 by default)")
    schedule: list[tuple[float, float]] | None = Field(default=None, description="[[t_s, rate_rps], ...] piecewise")
    requests: int | None = Field(default=None, ge=1, description=_REQUESTS)

    @model_validator(mode="after")
    def _rate(self) -> Diurnal:
        if self.schedule is None and self.mean_rps is None:
            raise ValueError("give mean_rps (sinusoidal day) or schedule ([[t_s, rate_rps], ...] piecewise)")
        if self.schedule is not None:
            if not self.schedule:
                raise ValueError("schedule is empty")
            ts = [t for t, _ in self.schedule]
            if ts[0] != 0 or any(b <= a for a, b in itertools.pairwise(ts)):
                raise ValueError(f"schedule times must start at 0 and increase (got {ts})")
            if any(r < 0 for _, r in self.schedule) or not any(r > 0 for _, r in self.schedule):
                raise ValueError("schedule rates must be >= 0 and not all 0")
        return self


class ClosedLoop(_Strict):
    """Concurrent users, each sending its next request when the previous answer is complete: a
    benchmark harness's concurrency mode (aiperf/genai-perf ``--concurrency``, vLLM ``bench serve
    --max-concurrency``).

    The run has up to two phases, as aiperf's credit phases: ``warmup_requests`` requests, then the
    ``requests`` measured ones. The measured phase starts once every warm-up request has finished
    (the warm-up is drained: aiperf waits for all of a phase's credits to return before it starts the
    next), and the results count only the measured requests. Each phase starts as ``start`` says:
    ``burst``, every user sends at the phase's start (aiperf's concurrency mode issues a credit as soon
    as a concurrency slot is free, so all ``concurrency`` at once); ``stationary``, user ``i`` (0-based)
    sends its first request at ``i · start_spread_s / concurrency`` after the phase's start, as users
    already spread over one request cycle would. After each response a user waits ``think_time_s``
    (the client's turnaround) and sends its next request while the phase has requests left.
    """

    process: Literal["closed_loop"] = Field(description="closed-loop users (a benchmark harness's concurrency mode)")
    concurrency: int = Field(ge=1, description="users sending requests at the same time")
    requests: int = Field(ge=1, description=(
        "measured requests, over every user (aiperf --request-count); warm-up requests come on top"))
    think_time_s: float = Field(default=0.0, ge=0, description=(
        "client turnaround: fixed pause between a response's last token and that user's next request, seconds "
        "(default 0: aiperf's concurrency mode issues the next request as soon as a slot is free, "
        "ConcurrencyBurstRateGenerator.next_interval() = 0, and its turn delay defaults to 0; real clients add "
        "their own processing time)"))
    warmup_requests: int = Field(default=0, ge=0, description=(
        "requests sent before the measured ones and excluded from every statistic; the measured phase starts when "
        "they have all finished (default 0, aiperf's --warmup-request-count default; aiconfigurator's measured "
        "silicon rows used 2 x concurrency)"))
    start: Literal["burst", "stationary"] = Field(default="burst", description=(
        "how each phase starts: burst (default, aiperf's concurrency mode: every user sends at the phase's start) "
        "or stationary (user i sends first at i * start_spread_s / concurrency, users spread over one request "
        "cycle)"))
    start_spread_s: float | None = Field(default=None, gt=0, description=(
        "with start: stationary, the span the users' first requests are spread over, seconds; default: one "
        "estimated steady-state cycle of a user (capsim's estimate from the cost model: a replica serving its "
        "concurrency/replicas users once each, every mean prompt prefilled and mean output - 1 decode steps in "
        "batches of up to max_num_seqs, summed over the services of the path, plus think_time_s)"))

    @model_validator(mode="after")
    def _spread(self) -> ClosedLoop:
        if self.start_spread_s is not None and self.start != "stationary":
            raise ValueError("start_spread_s applies to start: stationary (start is burst: every user sends at once)")
        return self


class Offline(_Strict):
    """Every request queued at time 0 (offline throughput, as trtllm-bench measures it)."""

    process: Literal["offline"] = Field(description="all requests at once")
    requests: int = Field(ge=1, description="requests in all")


TRACE_FORMATS = ("capsim", "azure", "burstgpt", "mooncake")
TimeUnit = Literal["s", "ms", "us", "ns", "datetime"]


class TraceColumns(_Strict):
    """Which columns (CSV) or keys (JSON lines) of a trace hold the arrival time and the token counts."""

    timestamp: str = Field(description="column of the arrival time")
    prompt_tokens: str = Field(description="column of the prompt (input) token count")
    output_tokens: str = Field(description="column of the output (generated) token count")


class Trace(_Strict):
    """Replay a recorded trace: a CSV or JSON-lines file with an arrival time and the prompt and output
    token counts of every request. ``format`` names a public trace's layout (see
    :mod:`simulator.serving.traces` for each one's columns, time unit and source); ``columns`` names
    the columns of any other file."""

    process: Literal["trace"] = Field(description="replay recorded arrivals")
    path: str = Field(description="the trace file: CSV, or JSON lines (.jsonl) for mooncake")
    format: Literal["capsim", "azure", "burstgpt", "mooncake"] = Field(default="capsim", description=(
        "the trace's layout: capsim (CSV timestamp [s], prompt_tokens, output_tokens), azure (Azure LLM inference "
        "traces 2023/2024: CSV TIMESTAMP [date-time], ContextTokens, GeneratedTokens), burstgpt (BurstGPT: CSV "
        "Timestamp [s], Request tokens, Response tokens; rows with 0 response tokens are failures and are "
        "skipped), mooncake (Mooncake/FAST'25: JSON lines timestamp [ms], input_length, output_length)"))
    columns: TraceColumns | None = Field(default=None, description=(
        "the columns of a file in another layout (timestamp, prompt_tokens, output_tokens); replaces the "
        "format's column names"))
    time_unit: TimeUnit | None = Field(default=None, description=(
        "unit of the timestamps: s, ms, us, ns, or datetime (date-time strings such as 2023-11-16 18:17:03.97); "
        "default: the format's (capsim s, azure datetime, burstgpt s, mooncake ms; with columns: s, or datetime "
        "when the values are not numbers)"))
    time_scale: float = Field(default=1.0, gt=0, description="multiply timestamps by this (0.5 replays twice as fast)")


Arrival = Annotated[Poisson | Gamma | Diurnal | ClosedLoop | Offline | Trace, Field(discriminator="process")]


class RequestClass(_Strict):
    """A share of the traffic with its own scheduling priority."""

    name: str = Field(description="label in the results")
    weight: float = Field(default=1.0, gt=0, description="relative share of requests")
    priority: int = Field(default=0, description="higher is scheduled first and preempted last")


class SharedPrefix(_Strict):
    """Shared system prompts, as inference-perf's ``shared_prefix`` data generator (``num_groups``,
    ``system_prompt_len``; kubernetes-sigs/inference-perf inference_perf/config.py ``SharedPrefix``) and
    SGLang's ``generated-shared-prefix`` benchmark: ``groups`` system prompts of ``system_prompt_tokens``
    each; every request (every session, with ``sessions``) belongs to one group drawn uniformly at random
    and its prompt is the group's system prompt followed by its own tokens (``workload.prompt_tokens``)."""

    groups: int = Field(ge=1, description="distinct system prompts (inference-perf num_groups)")
    system_prompt_tokens: int = Field(ge=1, description=(
        "tokens of each system prompt, before the request's own (inference-perf system_prompt_len)"))


class Sessions(_Strict):
    """Multi-turn sessions whose history grows: a chat (each turn a user message) or an agent loop (each
    step a tool's result). Turn ``k`` of a session is sent ``think_time_s`` after turn ``k-1``'s answer is
    complete, and its prompt is the session's whole history: the system prompt (with ``shared_prefix``),
    every earlier turn's new tokens and output, then its own new tokens. The arrival process gives each
    session's first turn (its ``requests`` count sessions); a turn that is rejected or fails ends its session."""

    turns: int = Field(ge=1, description="turns per session (an agent loop: its steps)")
    think_time_s: float = Field(ge=0, description=(
        "pause between a turn's last token and the next turn, seconds (a user reading and typing; an agent's tool "
        "call)"))
    step_tokens: LengthDist | None = Field(default=None, description=(
        "new tokens of each turn after the first (an agent loop: the tool's result); default: workload.prompt_tokens, "
        "which sizes the first turn's own tokens"))


class Workload(_Strict):
    """The requests: when they arrive and how long their prompts and outputs are."""

    duration_s: float | None = Field(default=None, gt=0, description="open-loop arrivals stop at this time, seconds")
    arrival: Arrival = Field(default_factory=lambda: Poisson(process="poisson", rate_rps=1.0),
                             description="the arrival process (key process): poisson, gamma, diurnal, closed_loop, "
                                         "offline or trace; default Poisson at 1 request/s")
    prompt_tokens: LengthDist = Field(default_factory=lambda: Fixed(dist="fixed", value=512),
                                      description="prompt length distribution (key dist); default 512 tokens")
    output_tokens: LengthDist = Field(default_factory=lambda: Fixed(dist="fixed", value=128),
                                      description="output length distribution (key dist); default 128 tokens")
    classes: list[RequestClass] = Field(default_factory=list, description="request classes with shares and "
                                                                          "priorities; default: one class")
    prefix_cache_hit_rate: float = Field(default=0.0, ge=0, le=1,
                                         description="fraction of prompt tokens found in the prefix cache")
    horizon_s: float | None = Field(default=None, gt=0,
                                    description="stop the simulation here; default: run until every request is done")
    shared_prefix: SharedPrefix | None = Field(default=None, description=(
        "shared system prompts (groups, system_prompt_tokens): requests carry token identities, so the replicas' "
        "prefix caches find what they share (hit rates emerge); default: every prompt its own"))
    sessions: Sessions | None = Field(default=None, description=(
        "multi-turn sessions (turns, think_time_s, step_tokens): each turn's prompt is the session's history, found "
        "in the prefix cache; default: independent requests"))

    @model_validator(mode="after")
    def _reuse(self) -> Workload:
        if (self.shared_prefix or self.sessions) and self.prefix_cache_hit_rate:
            raise ValueError("prefix_cache_hit_rate is the simple mode (a fixed share of every prompt); with "
                             "shared_prefix or sessions the hit rate emerges from the prefix cache: drop one")
        if self.sessions and isinstance(self.arrival, ClosedLoop | Trace):
            raise ValueError(f"sessions need an open-loop or offline arrival process, which starts the sessions "
                             f"(got process: {self.arrival.process}); a session's later turns follow its answers")
        if self.shared_prefix and isinstance(self.arrival, Trace):
            raise ValueError("shared_prefix does not apply to a trace, whose prompt lengths are whole prompts")
        return self
