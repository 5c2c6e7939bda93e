"""What a pipeline schedule decides, and the registry that maps ``parallelism.schedule`` to one.

A schedule answers, for ``p`` pipeline stages (devices), ``v`` model chunks per stage and ``m``
micro-batches per iteration: which passes exist (``F`` forward, ``B`` backward; a zero-bubble
schedule would add ``W``, the weight gradient split from ``B``), which virtual stage chunk ``c``
of stage ``s`` holds, the order of passes on each stage, which pass each pass waits for, when a
chunk's gradients are complete (so their data-parallel reduction can start), how many
micro-batches' activations a stage holds at its peak, and which layouts it cannot run. The
step engine (``training.step``), the stage work and the memory plan ask it; nothing else
re-derives these facts.

A schedule is registered once with :data:`SCHEDULES`: its config model (a subclass of
:class:`ParallelismBase` whose ``schedule`` is a one-value Literal, with the knobs only it has)
and its implementation (a class with ``build(config, microbatches) -> Schedule``, usually a
:class:`PipelineSchedule`). Registering later (a plug-in, a test) makes the name loadable from
YAML like the built-in ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol, cast

from pydantic import Field, field_validator

from ...costmodel.layout import PLACEMENT_MEGATRON
from ...scenario.base import Variants, _Strict

Dim = Literal["tp", "cp", "pp", "dp"]     # a parallel dimension, as placement names it
Work = tuple[str, int, int]          # (pass, chunk, micro-batch): one pass of one micro-batch on one chunk

SCHEDULE_KEY = ("pipeline schedule: 1f1b (PipeDream-Flush, Narayanan et al. 2021; with virtual_stages > 1 "
                "Megatron-LM's interleaved 1F1B), interleaved (the same, virtual_stages >= 2 required), gpipe "
                "(Huang et al. 2019: every forward, then every backward), zb-h1 (Qi et al. 2024: weight gradients "
                "deferred into the bubbles, 1F1B's memory), dualpipe (DeepSeek-V3: micro-batches fed from both "
                "ends, each stage's weights held twice, forward and backward of two micro-batches overlapped) or "
                "dualpipev (its cut-in-half V: 2·pp layer parts, each stage holding part s and 2·pp-1-s once); "
                "default 1f1b, Megatron-LM's schedule whenever pp > 1")


def schedule_tag(name: str) -> Any:
    """The ``schedule`` field of the config that selects ``name`` (declare it as ``Literal[name]``)."""
    return Field(default=name, description=SCHEDULE_KEY)


class ParallelismBase(_Strict):
    """The parallel layout every schedule shares; each schedule's config adds the knobs only it has."""

    tp: int = Field(default=1, ge=1, description="tensor-parallel degree (Megatron column/row-parallel layers, "
                                                 "heads split over tp GPUs); default 1: no tensor parallelism")
    pp: int = Field(default=1, ge=1, description="pipeline-parallel degree: stages the layers are split into; "
                                                 "default 1: no pipeline")
    dp: int | None = Field(default=None, ge=1, description="data-parallel degree; default: GPUs / (tp·pp·cp), "
                                                           "every GPU left over is a data-parallel replica")
    cp: int = Field(default=1, ge=1, description="context-parallel degree: the sequence split over cp GPUs "
                                                 "(Megatron-core context parallelism); default 1: none")
    ep: int = Field(default=1, ge=1, description="expert-parallel degree of a mixture-of-experts model, experts "
                                                 "sharded over ep of the data-parallel ranks; default 1: none")
    etp: int | None = Field(default=None, ge=1, description=(
        "expert tensor parallelism of a mixture-of-experts model: each expert's weights split over etp GPUs; with "
        "MoE parallel folding the experts' own grid is etp × ep × expert-dp over the tp·cp·dp GPUs of a stage "
        "(Megatron-Core --expert-tensor-parallel-size, default: tp, megatron/training/arguments.py); etp < tp "
        "keeps the MoE layer's tokens in their sequence-parallel shards and sends them straight to the experts"))
    sequence_parallel: bool = Field(default=False, description="shard norms and dropout over the tensor-parallel "
                                                               "group (Korthikanti et al. 2022); default false, "
                                                               "as Megatron-LM's --sequence-parallel")
    tp_comm_overlap: bool = Field(default=False, description=(
        "overlap each sequence-parallel collective with the GEMM it feeds or follows (Megatron's --tp-comm-overlap, "
        "Transformer Engine userbuffers; Megatron-Bridge's performance recipes for TP > 1; torchtitan's AsyncTP); "
        "needs sequence_parallel; default false, as Megatron-LM's"))
    zero_stage: Literal[0, 1, 2, 3] = Field(default=0, description="ZeRO stage (Rajbhandari et al. 2020): 1 shards "
                                                                   "the optimizer, 2 also gradients, 3 also weights "
                                                                   "over dp; default 0: DeepSpeed's and Megatron's")
    reshard_after_forward: bool | None = Field(default=None, description=(
        "zero_stage 3 (FSDP): free each layer's gathered weights after its forward and gather them again for its "
        "backward (FSDP2 fully_shard's default); false keeps them from the forward to the backward (one gather "
        "per micro-batch; with pp > 1, one per step: torch.distributed.pipelining keeps them until the last "
        "micro-batch's backward). Default: torchtitan's policy, true without pipeline parallelism and false "
        "with it (torchtitan/models/llama3/infra/parallelize.py apply_fsdp, reshard_after_forward_policy "
        "'default')"))
    dp_shard: int | None = Field(default=None, ge=1, description=(
        "hybrid sharding (HSDP): shard gradients, optimizer (and with zero_stage 3 weights) over groups of dp_shard "
        "of the dp·cp ranks holding the same weights and replicate across the groups, whose gradients are "
        "all-reduced after the reduce-scatter (PyTorch HYBRID_SHARD, torchtitan data_parallel_shard_degree, "
        "Megatron-Core --num-distributed-optimizer-instances = dp·cp / dp_shard); needs zero_stage >= 1; default: "
        "shard over all of them"))
    schedule: str = schedule_tag("1f1b")
    placement: list[Dim] = Field(
        default_factory=lambda: [cast(Dim, d) for d in PLACEMENT_MEGATRON],
        description="rank order of the parallel dimensions, innermost (same node) first; default tp, cp, dp, pp "
                    "(costmodel.layout.PLACEMENT_MEGATRON: Megatron-Core's order tp-cp-ep-dp-pp, DeepSpeed's "
                    "pipeline topology too)")

    @field_validator("placement")
    @classmethod
    def _placement(cls, v: list[str]) -> list[str]:
        if sorted(v) != sorted(PLACEMENT_MEGATRON):
            raise ValueError(f"must list tp, cp, pp and dp once each, innermost first (got {v})")
        return v

    @property
    def chunks_per_stage(self) -> int:
        """Model chunks (virtual pipeline stages) each pipeline stage holds: 1 unless the schedule interleaves."""
        return 1

    @property
    def layer_partitions(self) -> int:
        """Parts the layers are split into: pp·chunks, unless chunks hold copies of the same part (dualpipe)."""
        return self.pp * self.chunks_per_stage


class Schedule(Protocol):
    """Everything a pipeline schedule decides for one iteration."""

    stages: int                 # pipeline stages (devices), p
    chunks: int                 # model chunks per stage, v
    microbatches: int           # micro-batches per iteration, m

    @property
    def passes(self) -> tuple[str, ...]:
        """The kinds of pass, e.g. ("F", "B")."""
        ...

    def virtual_stage(self, stage: int, chunk: int) -> int:
        """The virtual stage (position in the layer order, 0 first) that ``chunk`` of ``stage`` holds."""
        ...

    def order(self, stage: int) -> Sequence[Work]:
        """The passes ``stage`` runs, in order."""
        ...

    def depends_on(self, kind: str, vs: int, microbatch: int) -> Work | None:
        """The pass (kind, virtual stage, micro-batch) whose output this pass needs, or None."""
        ...

    def grads_ready(self, stage: int, chunk: int) -> tuple[str, int]:
        """The pass (kind, micro-batch) of ``chunk`` on ``stage`` whose run completes its gradients."""
        ...

    def in_flight(self, stage: int) -> float:
        """Micro-batches whose activations ``stage`` holds at its peak."""
        ...

    def problems(self) -> list[str]:
        """Why this schedule cannot run this layout (empty when it can)."""
        ...

    def layer_position(self, vs: int) -> int:
        """The part of the layer order (0 first) virtual stage ``vs`` computes: ``vs`` itself, unless two
        virtual stages hold copies of the same layers (dualpipe's two directions)."""
        ...

    @property
    def layer_positions(self) -> int:
        """How many parts the layers are split into."""
        ...

    @property
    def weight_copies(self) -> int:
        """How many pipeline stages hold each layer's weights (whose gradients are summed): 1, or 2 (dualpipe)."""
        ...

    def joined(self, stage: int) -> frozenset[int]:
        """Indices into ``order(stage)`` of passes that run overlapped with the pass before them (one slot:
        they start once all their inputs are there and end together); empty for a sequential schedule."""
        ...


# instance attributes of a PipelineSchedule whose order and layer placement depend only on its shape
_SHAPE_ATTRIBUTES = frozenset({"stages", "microbatches", "chunks", "_orders"})


def shape_key(schedule: Any) -> tuple[type, int, int, int] | None:
    """``(class, stages, chunks, micro-batches)`` when the schedule holds nothing but its shape, so that
    its order and which layers each stage holds follow from these alone (what the planner's memos key
    on); None when it holds anything else (zb-h1's fitted order, ...)."""
    if not set(vars(schedule)) <= _SHAPE_ATTRIBUTES:
        return None
    return type(schedule), schedule.stages, schedule.chunks, schedule.microbatches


class PipelineSchedule(ABC):
    """The common answers of schedules that pass activations down and gradients up one chain of
    virtual stages: chunk ``c`` of stage ``s`` is virtual stage ``c·p + s`` (Megatron's interleaving;
    ``v = 1`` is a plain pipeline). A forward waits for the previous virtual stage's forward, a
    backward for the next one's backward (the last virtual stage: for its own forward), and a chunk's
    gradients are complete when its last backward in the order ends. Subclasses give the order and
    the micro-batches in flight, and add validity checks."""

    passes: ClassVar[tuple[str, ...]] = ("F", "B")

    def __init__(self, stages: int, microbatches: int, chunks: int = 1) -> None:
        self.stages, self.microbatches, self.chunks = stages, microbatches, chunks
        self._orders: dict[int, list[Work]] = {}

    @classmethod
    def build(cls, config: ParallelismBase, microbatches: int) -> Schedule:
        """The schedule of a scenario's layout over ``microbatches`` micro-batches per iteration."""
        return cls(config.pp, microbatches, config.chunks_per_stage)

    @abstractmethod
    def stage_order(self, stage: int) -> list[Work]:
        """The passes of ``stage`` in order (computed once per stage by :meth:`order`)."""

    @abstractmethod
    def in_flight(self, stage: int) -> float: ...

    def order(self, stage: int) -> list[Work]:
        if stage not in self._orders:
            self._orders[stage] = self.stage_order(stage)
        return self._orders[stage]

    def virtual_stage(self, stage: int, chunk: int) -> int:
        return chunk * self.stages + stage

    def depends_on(self, kind: str, vs: int, microbatch: int) -> Work | None:
        if kind == "F":
            return ("F", vs - 1, microbatch) if vs > 0 else None
        if kind == "B":
            return ("B", vs + 1, microbatch) if vs < self.stages * self.chunks - 1 else ("F", vs, microbatch)
        raise ValueError(f"{type(self).__name__} has no {kind!r} pass")

    def grads_ready(self, stage: int, chunk: int) -> tuple[str, int]:
        last = [i for kind, c, i in self.order(stage) if kind == "B" and c == chunk][-1]
        return "B", last

    def problems(self) -> list[str]:
        return []

    def layer_position(self, vs: int) -> int:
        return vs

    @property
    def layer_positions(self) -> int:
        return self.stages * self.chunks

    @property
    def weight_copies(self) -> int:
        return 1

    def joined(self, stage: int) -> frozenset[int]:
        return frozenset()


SCHEDULES: Variants[ParallelismBase] = Variants("schedule", default="1f1b", what="pipeline schedule")


def make_schedule(config: ParallelismBase, microbatches: int) -> Schedule:
    """The schedule ``config.schedule`` selects, over ``microbatches`` micro-batches per iteration."""
    schedule: Schedule = SCHEDULES.impl(config.schedule).build(config, microbatches)
    return schedule
