"""Request-level batching: a batch is formed, runs to completion, and only then the next forms.

- ``none``: one request at a time.
- ``static``: when the replica is free, everything waiting (up to ``max_batch_size``) runs together.
- ``dynamic`` (Triton's dynamic batcher): a batch of a preferred size that can be formed runs at
  once; otherwise the batcher waits up to ``max_queue_delay_ms`` after the oldest request arrived
  for more, then runs what it has (the largest preferred size it can fill, else everything).

A decoder's batch is padded: prompts to the longest one, and the batch decodes until its longest
output is done (each request completes at its own last token, but its slot is held). Encoder and
vision models run one forward per batch (latency from the cost model, or the scenario's measured
``replica.latency_table``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator
from typing import Any, Literal

import numpy as np
import simpy
from pydantic import Field, model_validator

from ..replica import KILL, Replica
from .base import ENGINES, ReplicaConfig, ReplicaPlan

LatencyTable = list[tuple[int, float]]


class RequestBatching(ReplicaConfig):
    """What request-level batchers share: an optional measured latency table."""

    latency_table: LatencyTable | None = Field(default=None, description=(
        "[[batch, seconds], ...]: measured forward latency of non-LLM models, replacing the cost model; "
        "interpolated between batches (default None: the cost model)"))

    @model_validator(mode="after")
    def _check_table(self) -> RequestBatching:
        if self.latency_table is not None:
            bs = [b for b, _ in self.latency_table]
            if not bs or any(b2 <= b1 for b1, b2 in itertools.pairwise(bs)) or bs[0] < 1:
                raise ValueError(f"latency_table batches must be >= 1 and increase (got {bs})")
            if any(s <= 0 for _, s in self.latency_table):
                raise ValueError("latency_table seconds must be > 0")
        return self


class NoBatching(RequestBatching):
    """One request at a time."""

    batching: Literal["none"] = Field(default="none", description="none: one request at a time, no batching")


class SizedBatching(RequestBatching):
    """Batches of up to ``max_batch_size`` requests."""

    max_batch_size: int = Field(default=32, ge=1, description=(
        "requests per batch (default 32; Triton has no default: each model's configuration sets max_batch_size)"))

    def max_sequences(self, memory_gib: float) -> int:
        return self.max_batch_size

    @model_validator(mode="after")
    def _check_size(self) -> SizedBatching:
        if self.latency_table and self.max_batch_size > self.latency_table[-1][0]:
            raise ValueError(f"replica.max_batch_size={self.max_batch_size} is beyond replica.latency_table's largest "
                             f"batch ({self.latency_table[-1][0]}); measure larger batches or lower max_batch_size")
        return self


class StaticBatching(SizedBatching):
    """Everything waiting, up to ``max_batch_size``, when the replica is free."""

    batching: Literal["static"] = Field(default="static", description=(
        "static: when the replica is free, everything waiting up to max_batch_size runs as one batch"))


class DynamicBatching(SizedBatching):
    """Triton's dynamic batcher: preferred sizes at once, otherwise wait for company a while."""

    batching: Literal["dynamic"] = Field(default="dynamic", description=(
        "dynamic: Triton's dynamic batcher (preferred sizes at once, else wait up to max_queue_delay_ms)"))
    preferred_batch_sizes: list[int] = Field(default_factory=list, description=(
        "batch sizes to run as soon as they can be formed (Triton's preferred_batch_size; default []: "
        "as large as possible up to max_batch_size)"))
    max_queue_delay_ms: float = Field(default=0.0, ge=0, description=(
        "how long the oldest request may wait for a fuller batch, ms (Triton's max_queue_delay_microseconds, "
        "default 0)"))

    @model_validator(mode="after")
    def _check_preferred(self) -> DynamicBatching:
        if any(b < 1 or b > self.max_batch_size for b in self.preferred_batch_sizes):
            raise ValueError(f"preferred_batch_sizes {self.preferred_batch_sizes} must lie in "
                             f"1..max_batch_size ({self.max_batch_size})")
        return self


class BatchEngine(Replica):
    """Forms a batch from the queue, runs it to completion on the cost model, repeats."""

    def __init__(self, *, cfg: RequestBatching, plan: ReplicaPlan, **kw: Any) -> None:
        self.kv_tokens = plan.kv_cache_tokens
        self.generative = plan.generative
        self.max_batch = plan.max_num_seqs
        self.preferred: list[int] = []
        self.delay = 0.0                 # seconds the dynamic batcher waits for a fuller batch
        if isinstance(cfg, DynamicBatching):
            self.preferred = sorted(cfg.preferred_batch_sizes)
            self.delay = cfg.max_queue_delay_ms / 1000
        self.waiting_for_more = False
        self.batch: list[int] = []
        self.table = np.array(cfg.latency_table, dtype=float) if cfg.latency_table else None
        super().__init__(cfg=cfg, plan=plan, **kw)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_tokens

    def admissible(self, r: int) -> str | None:
        if self.generative and int(self.reqs.prompt[r]) + int(self.reqs.output[r]) > self.kv_tokens:
            return "exceeds_kv_capacity"
        return None

    def on_arrival_while_busy(self, r: int, t: float) -> None:
        if self.waiting_for_more and self.proc is not None:
            self.proc.interrupt()

    def _batch_size(self, now: float) -> int:
        """How many to take now (0: keep waiting for the dynamic batcher's delay)."""
        n = len(self.waiting)
        top = min(n, self.max_batch)
        if not self.delay and not self.preferred:
            return top
        full = self.preferred[-1] if self.preferred else self.max_batch
        if n >= full:
            return full
        oldest = min(self.reqs.arrival[r] for _, _, r in self.waiting)
        if now < oldest + self.delay:
            return 0
        fit = [p for p in self.preferred if p <= n]
        return fit[-1] if fit else top

    def start(self) -> simpy.Process:
        return self.env.process(self.run())

    def run(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while not self.dead:
            if not self.waiting:
                try:
                    yield self.sleep()
                except simpy.Interrupt:          # killed while idle
                    return
                continue
            now = max(self.t, env.now)
            size = self._batch_size(now)
            if size == 0:
                oldest = min(self.reqs.arrival[r] for _, _, r in self.waiting)
                self.waiting_for_more = True
                try:
                    yield env.timeout(max(oldest + self.delay - env.now, 0.0))
                    self.t = max(self.t, oldest + self.delay)
                except simpy.Interrupt as i:
                    if i.cause == KILL:
                        return
                    self.t = max(self.t, env.now)
                self.waiting_for_more = False
                continue
            batch = self._take(size, now)
            done_at, first_at, end, steps = self._times(batch, now)
            self.record_busy(now, end, sum(int(self.reqs.prompt[r] + self.reqs.output[r]) for r in batch)
                             if self.generative else 0.0, len(batch), steps=steps)
            self.batch = batch
            try:
                yield env.timeout(max(end - env.now, 0.0))
            except simpy.Interrupt:              # killed: the batch is lost (kill() returned it)
                return
            self.batch = []
            self.t = end
            for r, d, f in zip(batch, done_at, first_at, strict=True):
                self.ledger.first_token[r] = f
                self.ledger.generated[r] = int(self.reqs.output[r]) if self.generative else 0
                self.ledger.done[r] = d
            self.running -= len(batch)
            self.outstanding -= len(batch)
            self.log(end)
            for r, d in zip(batch, done_at, strict=True):
                self.ledger.finish(r, float(d))
            if self.draining and self.outstanding == 0 and self.on_drained is not None:
                self.on_drained(self, end)

    def held(self) -> list[int]:
        return [*super().held(), *self.batch]

    def _take(self, size: int, now: float) -> list[int]:
        """Pop up to ``size`` requests whose padded KV cache fits together."""
        batch: list[int] = []
        pmax = omax = 0
        while self.waiting and len(batch) < size:
            r = self.waiting[0][2]
            p, o = max(pmax, int(self.reqs.prompt[r])), max(omax, int(self.reqs.output[r]))
            if self.generative and batch and (len(batch) + 1) * (p + o) > self.kv_tokens:
                break
            heapq.heappop(self.waiting)
            batch.append(r)
            pmax, omax = p, o
            self.ledger.first_sched[r] = now
        self.running += len(batch)
        self.log(now)
        return batch

    def _times(self, batch: list[int], now: float) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None]:
        """(completion time, first-token time) per request, the batch's end, and the end of each of its
        iterations (the prefill, then every decode step; None for one forward)."""
        n = len(batch)
        prompt = self.reqs.prompt[batch]
        p = int(prompt.max())
        perf = self.perf
        if not self.generative:
            if self.table is not None:
                d = float(np.interp(n, self.table[:, 0], self.table[:, 1]))
            else:
                d = perf.forward_time(n, p)
            end = now + d
            return np.full(n, end), np.full(n, end), end, None
        out = self.reqs.output[batch]
        o = int(out.max())
        prefill = perf.iteration_time(tokens=n * p, sampled=n, prefill_work=n * p * (p + 1) / 2, decode_seqs=0,
                                      decode_ctx=0)
        steps = perf.decode_base(n) + perf.decode_coef_per_step * n * (p + 1 + np.arange(o - 1, dtype=np.int64))
        ends = np.cumsum(np.concatenate(([now + prefill], steps)))
        return ends[out - 1], np.full(n, ends[0]), float(ends[-1]), ends


for _config in (NoBatching, StaticBatching, DynamicBatching):
    ENGINES.register(_config, BatchEngine)
