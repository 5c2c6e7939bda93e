"""The batching engine as a scenario key: the registry, the keys every engine shares, the plan.

``replica.batching`` selects one member of :data:`ENGINES`, an open tagged union (see
:class:`~simulator.scenario.base.Variants`). A member is a config model, a subclass of
:class:`ReplicaConfig` whose ``batching`` is a one-value Literal, registered together with the
engine class it selects::

    class FifoOne(ReplicaConfig):
        batching: Literal["fifo_one"] = "fifo_one"
        service_s: float = Field(gt=0, description="...")

    ENGINES.register(FifoOne, FifoOneEngine)   # FifoOneEngine subclasses serving.replica.Replica

A key of another member is then an error naming the key, the batching chosen and the keys it
allows. The engine is built with keyword arguments ``env, index, ledger, perf, cfg, plan,
fast_forward``; it implements ``start`` (begin serving: a simpy process or callbacks) and
``on_arrival_while_busy``, takes requests from ``waiting``, and reports through the ledger
(``first_sched``, ``first_token``, ``generated``), :meth:`~..replica.Replica.finished`,
``record_busy`` and ``log`` (``tests/test_engine_plugin.py`` is a complete example).

Before simulating, :meth:`ReplicaConfig.limits` resolves the engine's concurrency (the KV cache
and activation workspace are sized from it) and :class:`ReplicaPlan` carries what the memory
plan decided; :func:`build_engine` builds one replica of the chosen engine from both.

This module imports only the scenario's base and the standard library, so the scenario package
can import the engines without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ...scenario.base import Variants, _Strict

if TYPE_CHECKING:
    from ...models import ModelSpec
    from ..replica import Replica

# the KV-cache formats of simulator.precision (KVFormat) and auto
KVPrecision = Literal["auto", "fp8", "bf16", "fp16", "fp32"]
# serving frameworks with measured kernel tables (simulator.silicon.tables.ENGINE_TABLES; trtllm-bench
# reads TensorRT-LLM's tables)
Engine = Literal["vllm", "trtllm", "trtllm-bench", "sglang"]

ENGINES: Variants[ReplicaConfig] = Variants("batching", default="continuous", what="batching engine")


class ReplicaConfig(_Strict):
    """Keys every batching engine shares: the replica's parallel layout, its admission bound and
    its KV cache (request-level batchers of decoders keep their batch's KV cache too)."""

    batching: str = Field(description="the batching engine: none, static, dynamic, continuous (default), "
                                      "or one a plug-in registered")
    tp: int = Field(default=1, ge=1, description="tensor-parallel GPUs per replica (default 1: one GPU)")
    pp: int = Field(default=1, ge=1, description="pipeline-parallel stages per replica (default 1)")
    max_queue: int | None = Field(default=None, ge=0, description=(
        "requests a replica may hold queued; beyond it new ones are rejected (queue_full) or shed by priority. "
        "None: unbounded, as Triton's and vLLM's default queues"))
    kv_cache_fraction: float = Field(default=0.9, gt=0, le=1, description=(
        "share of the GPU memory left after weights, activation workspace and runtime that holds the KV cache "
        "(default 0.9: TensorRT-LLM's kv_cache_free_gpu_mem_fraction; vLLM's gpu_memory_utilization is also 0.9)"))
    kv_cache_precision: KVPrecision = Field(default="auto", description=(
        "KV cache element type: fp32, bf16, fp16 or fp8; auto (default): the model's activation dtype, bf16 for "
        "every quantized format (vLLM's kv_cache_dtype auto uses the model's dtype; fp8 KV is opt-in), fp16 for "
        "fp16, fp32 for fp32 (simulator/precision.py)"))
    engine: Engine = Field(default="vllm", description=(
        "the serving framework whose measured kernel tables time the replica (hardware_profiles/measured/<gpu>/): "
        "vllm (default: the framework capsim's engine defaults follow, simulator/serving/engines/defaults.py), "
        "trtllm, trtllm-bench (TensorRT-LLM's tables) or sglang; a GPU without tables uses its spec sheet"))
    engine_version: str | None = Field(default=None, description=(
        "the framework version whose tables are used; None (default): the newest measured for the GPU "
        "(hardware_profiles/measured/<gpu>/tables.yaml). A version without tables uses, per kind of table, the "
        "newest measured at or below it, else the oldest, with a warning. Quote versions in YAML ('0.10')"))

    @field_validator("engine_version", mode="before")
    @classmethod
    def _version_text(cls, v: object) -> object:
        # YAML reads 0.24 as a number: take it as the version it spells
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    def max_sequences(self, memory_gib: float) -> int:
        """Sequences the engine runs at once on a GPU of ``memory_gib`` (one, unless a member batches)."""
        return 1

    def limits(self, model: ModelSpec, memory_gib: float) -> tuple[int, int]:
        """(sequences, tokens) the engine may hold at once, which size the KV cache and workspace.

        A request-level batch holds whole requests: each may take the model's full context."""
        seqs = self.max_sequences(memory_gib)
        per_seq = model.max_positions if model.architecture == "decoder" else model.default_seq_len
        return seqs, seqs * per_seq


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    """What planning a replica decided: its engine limits, KV cache and memory (one per service)."""

    max_num_seqs: int                    # sequences running at once
    max_batched_tokens: int              # tokens per iteration (continuous) or per batch
    kv_cache_tokens: int                 # per replica; 0 for models without a KV cache
    kv_cache_precision: str
    generative: bool                     # a decoder (prompt, then output tokens) or one forward per request
    gpus_per_replica: int
    memory_per_gpu_gib: dict[str, float]  # capacity, weights, workspace, runtime, KV cache
    prefix_cache_hit_rate: float = 0.0   # share of each prompt found in the prefix cache


def build_engine(cfg: ReplicaConfig, **kw: Any) -> Replica:
    """One replica of the engine ``cfg`` selects (``kw``: env, index, ledger, perf, plan, fast_forward)."""
    engine: type[Replica] = ENGINES.impl(cfg.batching)
    return engine(cfg=cfg, **kw)
