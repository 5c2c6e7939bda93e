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
``record_busy`` and ``log`` (``tests/test_engine_plugin.py`` is a complete example). A row of
``record_busy`` is one iteration unless it passes its iterations (``steps=``) and whether they give
decoding sequences a token (``decodes=``); the streamed-token gaps (ITL) are read from them, and the
ledger's ``preempted``/``resumed`` mark a sequence that stops decoding and comes back
(:mod:`..tokens`); an engine whose log does not give one iteration per token reports no ITL.

Before simulating, :meth:`ReplicaConfig.resolved` fills every engine key the scenario left unset
from the engine preset of ``replica.engine`` / ``replica.engine_version`` (:mod:`.presets`),
:meth:`ReplicaConfig.limits` gives the engine's concurrency (the KV cache and activation workspace
are sized from it) and :class:`ReplicaPlan` carries what the memory plan decided;
:func:`build_engine` builds one replica of the chosen engine from both (an iteration-level engine
whose resolved ``schedule_order`` is ``prefill_first`` runs :mod:`.prefill_first`'s scheduler).

This module imports only the scenario's base, the presets and the standard library, so the
scenario package can import the engines without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from ...scenario.base import Variants, _Strict
from .presets import Context, EngineSettings, LengthStats, resolve

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
    ep: int = Field(default=1, ge=1, description=(
        "expert-parallel ranks of an MoE model's routed experts (default 1: every GPU holds a 1/tp slice of "
        "every expert); must divide tp × attention_dp and the expert count; each expert group is tp·attention_dp/ep "
        "GPUs wide (TensorRT-LLM moe_ep_size; simulator/costmodel/moe.py)"))
    attention_dp: int = Field(default=1, ge=1, description=(
        "attention data-parallel groups of tp GPUs each (TensorRT-LLM enable_attention_dp, SGLang "
        "--enable-dp-attention): the replica has tp × attention_dp × pp GPUs, each group runs attention and the "
        "dense layers for its own share of the sequences and keeps their KV cache, the routed experts span all; "
        "MoE models only (default 1). max_num_seqs and max_batched_tokens (set or the preset's) are per group, as "
        "TensorRT-LLM's max_batch_size and max_num_tokens are per rank: the replica holds attention_dp times them"))
    expert_skew: float = Field(default=1.0, ge=1.0, description=(
        "expert load imbalance: the busiest EP rank's routed token-expert pairs over the mean; its grouped GEMMs "
        "are costed as a balanced run of expert_skew × the tokens and its all-to-all share scales the same "
        "(default 1.0: balanced, as the measured MoE tables ran; simulator/costmodel/moe.py)"))
    max_queue: int | None = Field(default=None, ge=0, description=(
        "requests a replica may hold queued; beyond it new ones are rejected (queue_full) or shed by priority. "
        "None: unbounded, as Triton's and vLLM's default queues"))
    kv_cache_fraction: float | None = Field(default=None, gt=0, le=1, description=(
        "share of the GPU memory left after weights, activation workspace and runtime that holds the KV cache "
        "(TensorRT-LLM's kv_cache_free_gpu_mem_fraction semantics). None (default): the engine preset's memory "
        "rule: vLLM gpu_memory_utilization 0.9 of all GPU memory for weights, workspace and KV cache; "
        "TensorRT-LLM and trtllm-bench 0.9 of the memory left after the model; SGLang mem_fraction_static of all "
        "GPU memory for weights and KV cache (simulator/serving/engines/presets.py)"))
    kv_cache_precision: KVPrecision = Field(default="auto", description=(
        "KV cache element type: fp32, bf16, fp16 or fp8; auto (default): what the engine's own auto does: vLLM "
        "and SGLang keep the model's activation dtype (bf16 for every quantized format; fp8 KV is opt-in), "
        "TensorRT-LLM and trtllm-bench take the checkpoint's KV quantization: fp8 for NVIDIA's ModelOpt fp8 and "
        "nvfp4 checkpoints, else the activation dtype"))
    fp8_scales: Literal["static", "dynamic"] | None = Field(default=None, description=(
        "activation scales of FP8 (per-tensor) GEMMs: static (the checkpoint's calibrated input scales, NVIDIA "
        "ModelOpt checkpoints) or dynamic (an amax reduction each forward, vLLM/SGLang --quantization fp8 on a "
        "bf16 checkpoint). The measured FP8 GEMM tables ran the dynamic path; static subtracts the engine's "
        "measured scale kernel. None (default): the preset's: static for TensorRT-LLM, dynamic for vLLM and SGLang"))
    host_us_per_request: float | None = Field(default=None, ge=0, description=(
        "host time per sampled request per iteration, µs, serialised with the GPU (the engine's per-request loop "
        "after each step: TensorRT-LLM's TorchSampler.update_requests); on each attention DP rank for its own "
        "requests. None (default): the preset's: 3.4 for TensorRT-LLM and trtllm-bench (NVIDIA/TensorRT-LLM "
        "PR #15920's measurement), 0 for vLLM and SGLang (not modelled)"))
    engine: Engine = Field(default="vllm", description=(
        "the serving framework: its engine preset fills every engine key left unset (token budget, sequences, "
        "chunked prefill, capacity policy, scheduling order, KV memory and dtype, prefix caching; "
        "simulator/serving/engines/presets.py) and its measured kernel tables time the replica "
        "(hardware_profiles/measured/<gpu>/): vllm (default), trtllm (LLM API / trtllm-serve), trtllm-bench "
        "(trtllm-bench throughput: TensorRT-LLM's tables, its own batch/token sizing) or sglang; a GPU without "
        "tables uses its spec sheet"))
    engine_version: str | None = Field(default=None, description=(
        "the framework version: its preset is the newest preset at or below it (vllm 0.6, 0.8, 0.8.4, 0.9; "
        "trtllm and trtllm-bench 1.0, 1.3; sglang 0.3, 0.5), and its tables the newest measured at or below it "
        "per kind of table (else the oldest, with a warning). None (default): the newest preset and the newest "
        "measured tables for the GPU. Quote versions in YAML ('0.10')"))

    iteration_level: ClassVar[bool] = False
    """whether the engine batches per iteration (the continuous family), which the engine presets size"""

    @field_validator("engine_version", mode="before")
    @classmethod
    def _version_text(cls, v: object) -> object:
        # YAML reads 0.24 as a number: take it as the version it spells
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    def max_sequences(self, memory_gib: float) -> int:
        """Sequences the engine runs at once on a GPU of ``memory_gib`` (one, unless a member batches)."""
        return 1

    def resolved(self, model: ModelSpec, *, memory_gib: float, gpu: str, precision: str,
                 lengths: LengthStats | None = None) -> EngineSettings:
        """Every engine setting: the keys this scenario set, the engine preset's value for the rest."""
        # with attention DP the presets see the replica's world (TensorRT-LLM's tp_size with enable_attention_dp)
        return resolve(self, Context(model=model, memory_gib=memory_gib, gpu=gpu, tp=self.tp * self.attention_dp,
                                     pp=self.pp,
                                     precision=precision, lengths=lengths))

    def limits(self, model: ModelSpec, memory_gib: float, settings: EngineSettings | None = None) -> tuple[int, int]:
        """(sequences, tokens) the engine may hold at once, which size the KV cache and workspace.

        A request-level batch holds whole requests: each may take the model's full context (an
        iteration-level engine reads ``settings``, the resolved preset)."""
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
    # what the engine preset resolved (iteration-level engines read these, not the scenario keys)
    chunked_prefill: bool = True
    kv_block_tokens: int = 16
    scheduler_policy: str = "max_utilization"
    prefix_caching: bool = True
    engine: EngineSettings | None = None


def build_engine(cfg: ReplicaConfig, **kw: Any) -> Replica:
    """One replica of the engine ``cfg`` selects (``kw``: env, index, ledger, perf, plan, fast_forward).
    The continuous engine with a resolved ``schedule_order: prefill_first`` (SGLang's preset, vLLM 0.6
    without chunked prefill) is the prefill-first engine."""
    engine: type[Replica] = ENGINES.impl(cfg.batching)
    plan: ReplicaPlan = kw["plan"]
    if plan.engine is not None and plan.engine.schedule_order == "prefill_first" and cfg.batching == "continuous":
        engine = ENGINES.impl("prefill_first")
    return engine(cfg=cfg, **kw)
