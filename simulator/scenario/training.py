"""Training scenario keys: the cluster, the parallel layout, the training recipe, data loading and
reliability of the whole run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..training.schedules import dualpipe, gpipe, interleaved, one_f_one_b, zero_bubble  # noqa: F401  (each registers its schedule)
from ..training.schedules.base import SCHEDULES, ParallelismBase
from .base import HARDWARE_DOC, MODEL_DOC, Precision, Pricing, _Strict


class Network(_Strict):
    """The network between nodes, when it is not the GPU profile's reference one (simulator/training/network.py)."""

    nics_per_node: int = Field(ge=1, description="network interfaces per node (8 on an HGX H100 reference node)")
    nic_gbps: float = Field(gt=0, description="line rate of one interface, Gb/s (400: NDR InfiniBand)")
    oversubscription: float = Field(default=1.0, ge=1, description=(
        "the fabric's taper above the leaf switches (2: a 2:1 fat tree halves the cross-node bandwidth); "
        "default 1, non-blocking"))
    latency_us: float | None = Field(default=None, ge=0, description=(
        "per-step latency of a ring collective between nodes, microseconds; default: the profile's"))


class Cluster(_Strict):
    """The GPUs the job runs on."""

    nodes: int = Field(default=1, ge=1, description="nodes in the job")
    gpus_per_node: int = Field(default=8, ge=1, description=(
        "GPUs per node, one NVLink domain (8: a DGX/HGX node; 72: a GB200 NVL72 rack)"))
    network: Network | None = Field(default=None, description=(
        "NICs per node, their Gb/s and the fabric's taper: each GPU's share sets the collectives between "
        "nodes (0.92 of line rate, NCCL on NDR); default: the GPU profile's reference network"))


# ``parallelism`` is a tagged union keyed by ``schedule``: each pipeline schedule's module defines
# its config (the shared layout keys plus its own) and registers it with SCHEDULES.
Parallelism = ParallelismBase   # the keys every schedule's config has
if TYPE_CHECKING:
    ParallelismConfig = ParallelismBase
else:
    ParallelismConfig = SCHEDULES.annotation()


class Training(_Strict):
    """The training recipe: sequence, batch, precision, recomputation and the stack's host costs."""

    framework: Literal["megatron-core", "megatron-2021", "deepspeed", "nemo", "torchtitan", "fsdp",
                       "llm-foundry"] | None = Field(default=None, description=(
        "the training stack: its preset fills every stack key the scenario leaves out (gradient precision, "
        "overlaps, accumulation fusion, loss kernel, FP8 recipe; ZeRO stage, sequence parallelism, TP overlap, "
        "rank placement), each value cited in simulator/training/frameworks.py; keys written win; default: "
        "none, every key its own default"))
    framework_version: str | None = Field(default=None, description=(
        "the framework's version (the newest preset at or below it): nemo 24.07 (NeMo 1.x launcher) or 25.09 "
        "(NeMo 2 / Megatron-Bridge recipes); default: the newest preset. Quote versions in YAML ('24.10')"))
    seq_len: int = Field(default=2048, ge=1, description="tokens per sequence (GPT-3's 2048 by default)")
    global_batch: int = Field(default=512, ge=1, description="sequences per iteration")
    micro_batch: int | Literal["auto"] = Field(default="auto", description=(
        "sequences per micro-batch on one data-parallel rank; auto: the fastest that fits in memory"))
    precision: Precision = Field(default="bf16", description=(
        "number format of the GEMMs: bf16 (default: Megatron-core's and TorchTitan's mixed precision), fp32, "
        "fp16, fp8, fp8-block, mxfp8 (Blackwell) or nvfp4 (Blackwell, Transformer Engine 2.x); w4a16 and "
        "w8a8-int8 are inference-only (simulator/precision.py)"))
    grad_precision: Literal["fp32", "bf16", "fp16"] = Field(default="fp32", description=(
        "data type of the gradients reduced over data parallelism (Megatron keeps fp32 main gradients; "
        "DeepSpeed's fp16 engine reduces fp16)"))
    overlap_grad_reduce: bool = Field(default=True, description=(
        "reduce gradient buckets while the backward still runs (Megatron-core --overlap-grad-reduce, PyTorch "
        "DDP, FSDP); false: after the last backward (DeepSpeed's engine without overlap_comm, Megatron-LM "
        "before 2023)"))
    overlap_param_gather: bool = Field(default=False, description=(
        "with a sharded optimizer (zero_stage 1 or 2), gather the updated parameters bucket by bucket under the "
        "next iteration's first forward passes instead of after the optimizer step (Megatron-Core "
        "--overlap-param-gather, default off; Megatron-Bridge and NeMo turn it on whenever dp > 1: "
        "megatron/bridge/training/comm_overlap.py _get_optimizer_overlap_cfgs); only the first bucket and what "
        "outlasts those passes is exposed"))
    recompute: Literal["none", "selective", "full"] = Field(default="none", description=(
        "activation recomputation: selective recomputes the modules of training.recompute_modules (by default "
        "the attention core), full every layer's forward (Korthikanti et al. 2022)"))
    recompute_modules: list[Literal["core_attn", "layernorm", "mlp", "moe", "moe_act", "shared_experts",
                                    "mla_up_proj"]] | None = (
        Field(default=None, description=(
            "what selective recompute recomputes (Megatron-Core --recompute-modules): core_attn the attention "
            "core (the flash kernel's forward too), layernorm the two norms, mlp a dense layer's MLP, moe an MoE "
            "layer's experts (all-to-alls included), moe_act the experts' activation, shared_experts the shared "
            "experts (mla_up_proj is refused: MLA's projections run as one QKV GEMM here); each drops the "
            "activations it would have kept; needs training.recompute: selective; "
            "default [core_attn] (Megatron-Core's default)")))
    flash_attention: bool = Field(default=True, description="fused attention: the score matrix never reaches HBM")
    attention_kernel: Literal["flash2", "flash1"] = Field(default="flash2", description=(
        "the fused attention kernel's generation: flash2 (FlashAttention-2/3, cuDNN and Transformer Engine fused "
        "attention; the measured tables' rates) or flash1 (FlashAttention-1 and its Triton port, e.g. "
        "llm-foundry's attn_impl: triton until 2024: 40% of peak forward, 30% backward on the FlashAttention-2 "
        "paper's A100 measurements; simulator/costmodel/ops.py)"))
    fp8_recipe: Literal["delayed", "current"] | None = Field(default=None, description=(
        "scaling of precision: fp8 (per-tensor): delayed (scales from the amax history; Megatron-LM's --fp8-recipe "
        "default) or current (each tensor's own amax first, an extra read: Megatron-Bridge's FP8-CS); default "
        "delayed. Block formats (fp8-block, mxfp8, nvfp4) compute their scales in the cast and take no recipe"))
    grad_accumulation_fusion: bool = Field(default=True, description=(
        "the weight-gradient GEMMs accumulate straight into the main gradient (Megatron-Core's default "
        "--gradient-accumulation-fusion); false: each micro-batch adds its gradients in a separate memory pass, "
        "2 + 2·g bytes per parameter (g: gradient bytes), as DeepSpeed's engine and Megatron without the fusion"))
    dropout: bool = Field(default=True, description=(
        "dropout after attention and MLP (and on the scores when attention is unfused): its masks' memory and "
        "traffic (Megatron-LM's GPT default, hidden and attention dropout 0.1; false: Llama-style recipes and "
        "llm-foundry's MPT, whose pdrop defaults are 0)"))
    cross_entropy: Literal["fp32", "fused"] = Field(default="fp32", description=(
        "the loss kernel: fp32 casts the logits to fp32 for softmax and loss (Megatron's vocab-parallel cross "
        "entropy, PyTorch under autocast); fused reads the 16-bit logits in one kernel (flash-attn's xentropy, "
        "llm-foundry's fused_crossentropy default, Megatron's --cross-entropy-loss-fusion)"))
    moe_dispatcher: Literal["alltoall", "flex"] = Field(default="alltoall", description=(
        "an MoE layer's token dispatcher (Megatron-Core moe_token_dispatcher_type): alltoall (NCCL all-to-all, every "
        "token-expert copy sent to its expert's rank) or flex (DeepEP / HybridEP: a token crosses the network once "
        "per remote node holding any of its experts and is forwarded over NVLink there); default alltoall"))
    moe_a2a_overlap: bool = Field(default=False, description=(
        "overlap the expert-parallel all-to-alls of one micro-batch with the computation of another (Megatron-Core "
        "--overlap-moe-expert-parallel-comm, with --delay-wgrad-compute); only what outlasts the computation is "
        "exposed; default off (Megatron-Core's default)"))
    moe_capacity_factor: float | None = Field(default=None, gt=0, description=(
        "token dropping: each expert takes at most ceil(capacity_factor · tokens · top_k / experts) of a rank's "
        "tokens (Megatron-Core --moe-expert-capacity-factor, get_capacity in moe_utils.py); routing is balanced, so "
        "below 1 the surplus is dropped and at 1 or more nothing is; default none: dropless"))
    moe_pad_to_capacity: bool = Field(default=False, description=(
        "pad every expert's input to its capacity (Megatron-Core --moe-pad-expert-input-to-capacity): static "
        "shapes, so the dispatcher needs no device-to-host copy of the token counts and the host never waits for "
        "the GPU (token_dispatcher.py MoEAlltoAllTokenDispatcher.preprocess returns before any DtoH); needs "
        "training.moe_capacity_factor; default off"))
    cuda_graph_scope: list[Literal["full", "attn", "mlp", "moe", "moe_router", "moe_preprocess"]] = Field(
        default_factory=list, description=(
            "parts of each transformer layer replayed from CUDA graphs (Megatron-Core cuda_graph_scope, "
            "CudaGraphScope names; full: the whole layer, as cuda_graph_impl local): a captured part costs the host "
            "one graph launch per pass instead of one per kernel. attn: input norm, QKV, attention, output "
            "projection and residual; mlp: a dense layer's MLP; moe_router: an MoE layer's pre-MLP norm and router; "
            "moe_preprocess: the dispatcher's permute; moe: the whole MoE layer, which needs static shapes "
            "(training.moe_pad_to_capacity); default none"))
    total_tokens: float | None = Field(default=None, gt=0, description=(
        "tokens to train on; gives time to train, GPU-hours, cost and energy (default: one step only)"))
    dispatch_us: float | None = Field(default=None, ge=0, description=(
        "host time to issue one modelled kernel, microseconds (eager PyTorch + framework); default: the "
        "profile's measured value, else 70 us fitted on vTrain's single-node rows (simulator/training/stack.py)"))

    @field_validator("framework_version", mode="before")
    @classmethod
    def _version_text(cls, v: object) -> object:
        # YAML reads 24.07 as a number: take it as the version it spells
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("micro_batch")
    @classmethod
    def _mb(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return v


class DataLoader(_Strict):
    """Input pipeline limits; only the part that outlasts the previous step stalls the GPUs."""

    samples_per_s_per_node: float | None = Field(default=None, gt=0, description=(
        "samples per second one node's loader produces; default: unlimited"))
    storage_gb_s: float | None = Field(default=None, gt=0, description="per node read bandwidth, GB/s; default: unlimited")
    bytes_per_sample: float = Field(default=0, ge=0, description="bytes read from storage per sample (with storage_gb_s)")


class Reliability(_Strict):
    """Failures, restarts and checkpoints over the whole run (Monte Carlo)."""

    node_mtbf_hours: float | None = Field(default=None, gt=0, description=(
        "mean time between failures of one node, hours; None: no failures (Llama 3 405B saw a cluster "
        "MTBF of 3.09 h on 2,048 nodes, shared/reference/llama3_405b_interruptions.csv)"))
    restart_minutes: float = Field(default=10.0, ge=0, description="time to restart the job after a failure (assumed)")
    checkpoint_interval_minutes: float | None = Field(default=None, gt=0, description="None: Young/Daly optimum")
    checkpoint_write_gb_s: float = Field(default=10.0, gt=0, description="aggregate per node, GB/s (assumed)")
    runs: int = Field(default=200, ge=1, description="Monte Carlo samples of the whole job")


class TrainingScenario(_Strict):
    """A training job: a model on a cluster in a parallel layout, with its recipe and its run."""

    kind: Literal["training"] = Field(default="training", description="training (or serving)")
    name: str = Field(default="training", description="label in results and reports")
    model: str | dict[str, Any] = Field(description=MODEL_DOC)
    hardware: str = Field(description=HARDWARE_DOC)
    cluster: Cluster = Field(default_factory=Cluster, description="nodes and GPUs per node")
    parallelism: ParallelismConfig = SCHEDULES.field(description="the parallel layout and pipeline schedule; "
                                                               "the keys allowed depend on parallelism.schedule")
    training: Training = Field(default_factory=Training, description="sequence, batch, precision, recompute")
    data_loader: DataLoader = Field(default_factory=DataLoader, description="input pipeline limits")
    reliability: Reliability = Field(default_factory=Reliability, description="failures, restarts, checkpoints")
    pricing: Pricing = Field(default_factory=Pricing, description="where GPU-hours are bought and at what price")
    seed: int = Field(default=0, description="seed of every random stream (same seed, same result)")


    @model_validator(mode="after")
    def _framework(self) -> TrainingScenario:
        if self.training.framework_version is not None and self.training.framework is None:
            raise ValueError("training.framework_version needs training.framework (the stack it is a version of)")
        from ..training.frameworks import apply_framework

        apply_framework(self)
        return self


SCHEDULES.hosted_by(TrainingScenario, "parallelism")
