"""DualPipe (DeepSeek-V3 technical report, section 3.2.1; deepseek-ai/DualPipe ``dualpipe/dualpipe.py``).

Half the micro-batches enter the pipeline at stage 0 and run through stages 0, 1, …, p − 1; the
other half enter at stage p − 1 and run the other way. Each stage therefore holds two chunks:
chunk 0, layer part ``s`` for the first direction, and chunk 1, layer part ``p − 1 − s`` for the
second, so every layer's weights live on two stages (twice the parameters, their gradients summed
between the two copies before the data-parallel reduction: the repository's example adds each
copy's gradient into the other's). Once both directions are in flight, a stage runs the forward of
one micro-batch overlapped with the whole backward of another (``_forward_backward_chunk``): their
kernels share the GPU, each one's communication (expert all-to-all, tensor-parallel collectives)
hidden under the other's computation; the slot lasts ``max(compute, communication)`` plus the
compute that overlapped communication slows (the step engine's ``joint_time``). Some backwards
split their weight gradients off (``W``, as zero-bubble schedules do) to fill the drain.

The order of every stage is the reference implementation's ``step()`` transcribed pass by pass:
eight phases (nF0, nF0F1, nB1W1F1, the main nF0B1F1B0, nB1F1B0, nB1B0, nWB0, nW) with its rank
arithmetic, its zero-bubble switches and its middle ranks' first slot run without overlap. In the
step engine a backward is always a ``B`` (input gradients, recompute) and a ``W`` (weight
gradients); a backward the reference runs whole is its ``B`` followed at once by its ``W``, in
the same overlapped slot when the reference overlaps it. The README's bubble, ``(p/2 − 1)·(F&B +
B − 3W)``, is what the engine measures on equal pass times (tests/test_schedules.py).

Micro-batch ``i`` of direction ``d`` is ``(…, d, i)`` on chunk ``d``: virtual stage ``s`` for the first
direction and ``2p − 1 − s`` for the second, each direction a chain of its own.

:class:`DualPipeV` (``schedule: dualpipev``) is the repository's V-shaped variant: the same order
builder with its own arguments, the layers cut into ``2p`` parts, each held once.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar, Literal

from .base import SCHEDULES, ParallelismBase, PipelineSchedule, Schedule, Work, schedule_tag


class DualPipeConfig(ParallelismBase):
    """``schedule: dualpipe``: two chunks per stage (the same layers for the two directions)."""

    schedule: Literal["dualpipe"] = schedule_tag("dualpipe")

    @property
    def chunks_per_stage(self) -> int:
        return 2

    @property
    def layer_partitions(self) -> int:
        return self.pp


class DualPipe(PipelineSchedule):
    passes: ClassVar[tuple[str, ...]] = ("F", "B", "W")

    def __init__(self, stages: int, microbatches: int, chunks: int = 2) -> None:
        super().__init__(stages, microbatches, chunks)
        self._joined: dict[int, frozenset[int]] = {}
        self._zero_stage = 0

    @classmethod
    def build(cls, config: ParallelismBase, microbatches: int) -> Schedule:
        schedule = cls(config.pp, microbatches)
        schedule._zero_stage = config.zero_stage
        return schedule

    # ---- the chain of each direction ---------------------------------------------------------------
    def virtual_stage(self, stage: int, chunk: int) -> int:
        return stage if chunk == 0 else 2 * self.stages - 1 - stage

    def layer_position(self, vs: int) -> int:
        return vs % self.stages

    @property
    def layer_positions(self) -> int:
        return self.stages

    @property
    def weight_copies(self) -> int:
        return 2

    def depends_on(self, kind: str, vs: int, microbatch: int) -> Work | None:
        pos, last = vs % self.stages, self.stages - 1
        if kind == "F":
            return ("F", vs - 1, microbatch) if pos > 0 else None
        if kind == "B":
            return ("B", vs + 1, microbatch) if pos < last else ("F", vs, microbatch)
        if kind == "W":
            return ("B", vs, microbatch)
        raise ValueError(f"DualPipe has no {kind!r} pass")

    def grads_ready(self, stage: int, chunk: int) -> tuple[str, int]:
        last = [i for kind, c, i in self.order(stage) if kind == "W" and c == chunk][-1]
        return "W", last

    # ---- the order ---------------------------------------------------------------------------------
    def joined(self, stage: int) -> frozenset[int]:
        self.order(stage)
        return self._joined[stage]

    def stage_order(self, stage: int) -> list[Work]:
        p = self.stages
        order, joined = _bidirectional_order(ranks=p // 2, rank=min(stage, p - 1 - stage),
                                             chunks=self.microbatches // 2, flip=stage >= p // 2,
                                             no_overlap_first=stage in (p // 2 - 1, p // 2))
        self._joined[stage] = joined
        return order

    def in_flight(self, stage: int) -> float:
        """The peak, over the order, of micro-batch chunks whose activations the stage holds (from a
        chunk's forward until its weight gradients ran), in units of the stage's two chunks."""
        live = peak = 0
        for kind, _, _ in self.order(stage):
            live += (kind == "F") - (kind == "W")
            peak = max(peak, live)
        return peak / self.chunks

    def problems(self) -> list[str]:
        p, m = self.stages, self.microbatches
        out = []
        if p < 2 or p % 2:
            out.append(f"dualpipe needs an even pp >= 2 (got pp={p})")
        if m % 2 or m < 2 * p:
            out.append(f"dualpipe needs an even number of micro-batches per iteration (global_batch / "
                       f"(micro_batch·dp)), at least 2·pp = {2 * p} (deepseek-ai/DualPipe asserts it; got {m})")
        if self._zero_stage >= 2:
            out.append(f"dualpipe with zero_stage={self._zero_stage}: sharded gradients of weights held twice "
                       "are not modelled (DeepSeek-V3 shards the optimizer only: use zero_stage 0 or 1)")
        return out


SCHEDULES.register(DualPipeConfig, DualPipe)


def _bidirectional_order(*, ranks: int, rank: int, chunks: int, flip: bool,
                         no_overlap_first: bool) -> tuple[list[Work], frozenset[int]]:
    """One rank's passes in deepseek-ai/DualPipe's ``step()`` (``dualpipe.py``; ``dualpipev.py`` is the
    same with its own arguments): ``ranks`` is DualPipe's ``num_half_ranks`` (DualPipeV's
    ``num_ranks``), ``rank`` its ``half_rank`` (``rank``), ``chunks`` the micro-batches per direction
    (all of them), ``flip`` whether phase 0 is chunk 1 (DualPipe's second half of the ranks), and
    ``no_overlap_first`` the ranks whose first main-step slot runs unoverlapped (DualPipe's middle
    ranks, DualPipeV's last). Returns the order and the indices joined to the pass before them."""
    order: list[Work] = []
    joined: set[int] = set()
    nf, nb = [0, 0], [0, 0]
    weights: deque[Work] = deque()                  # WeightGradStore's FIFO of deferred W

    def forward(phase: int) -> None:
        c = phase ^ flip
        order.append(("F", c, nf[c]))
        nf[c] += 1

    def backward(phase: int, zb: bool = False, join: bool = False) -> None:
        c = phase ^ flip
        if join:
            joined.add(len(order))
        order.append(("B", c, nb[c]))
        if zb:
            weights.append(("W", c, nb[c]))
        else:
            if join:
                joined.add(len(order))
            order.append(("W", c, nb[c]))
        nb[c] += 1

    def forward_backward(phase0: int, phase1: int) -> None:
        forward(phase0)
        backward(phase1, join=True)

    for _ in range((ranks - rank - 1) * 2):                    # step 1: nF0
        forward(0)
    for _ in range(rank + 1):                                  # step 2: nF0F1
        forward(0)
        forward(1)
    for _ in range(ranks - rank - 1):                          # step 3: nB1W1F1
        backward(1, zb=True)
        order.append(weights.popleft())
        forward(1)
    for i in range(chunks - 2 * ranks + rank + 1):             # step 4 (main): nF0B1F1B0
        if i == 0 and no_overlap_first:                        # "we don't overlap these two chunks"
            forward(0)
            backward(1)
        else:
            forward_backward(0, 1)
        forward_backward(1, 0)
    for _ in range(ranks - rank - 1):                          # step 5: nB1F1B0
        backward(1)
        forward_backward(1, 0)
    zb, n6 = False, rank + 1                                   # step 6: nB1B0, the second half zero-bubble
    for i in range(n6):
        if i == n6 // 2 and rank % 2 == 1:
            zb = True
        backward(1, zb)
        if i == n6 // 2 and rank % 2 == 0:
            zb = True
        backward(0, zb)
    for _ in range(ranks - rank - 1):                          # step 7: nWB0
        order.append(weights.popleft())
        backward(0, zb=True)
    for _ in range(rank + 1):                                  # step 8: nW
        order.append(weights.popleft())
    if weights:
        raise AssertionError(f"dualpipe rank {rank}: {len(weights)} weight-gradient passes never run")
    return order, frozenset(joined)


class DualPipeVConfig(ParallelismBase):
    """``schedule: dualpipev``: two chunks per stage, the layers in a V (``2·pp`` parts)."""

    schedule: Literal["dualpipev"] = schedule_tag("dualpipev")

    @property
    def chunks_per_stage(self) -> int:
        return 2


class DualPipeV(DualPipe):
    """DualPipeV (Sea AI Lab's "cut-in-half" of DualPipe; deepseek-ai/DualPipe ``dualpipev.py``): the
    layers cut into ``2p`` parts laid out in a V, stage ``s`` holding parts ``s`` and ``2p − 1 − s``,
    every micro-batch running down the first half and back up the second, so each stage holds its
    own weights once and forwards and backwards of the two halves overlap as in DualPipe. Its README
    gives the same bubble, (PP/2 − 1)(F&B + B − 3W) over its PP = 2p stages, and 2p + 1 chunks of
    activations."""

    def layer_position(self, vs: int) -> int:
        return vs

    @property
    def layer_positions(self) -> int:
        return 2 * self.stages

    @property
    def weight_copies(self) -> int:
        return 1

    def depends_on(self, kind: str, vs: int, microbatch: int) -> Work | None:
        if kind == "W":
            return ("B", vs, microbatch)
        return PipelineSchedule.depends_on(self, kind, vs, microbatch)

    def stage_order(self, stage: int) -> list[Work]:
        p = self.stages
        order, joined = _bidirectional_order(ranks=p, rank=stage, chunks=self.microbatches, flip=False,
                                             no_overlap_first=stage == p - 1)
        self._joined[stage] = joined
        return order

    def problems(self) -> list[str]:
        p, m = self.stages, self.microbatches
        out = []
        if p < 2:
            out.append(f"dualpipev needs pp >= 2 (got pp={p})")
        if m < 2 * p:
            out.append(f"dualpipev needs at least 2·pp = {2 * p} micro-batches per iteration (global_batch / "
                       f"(micro_batch·dp); deepseek-ai/DualPipe asserts it; got {m})")
        return out


SCHEDULES.register(DualPipeVConfig, DualPipeV)
