"""Training framework presets: each stack's documented behaviour, per version, as one key.

``training.framework`` (megatron-core | megatron-2021 | deepspeed | nemo | torchtitan | fsdp |
llm-foundry) and ``training.framework_version`` pick a :class:`FrameworkPreset`: the newest preset
version at or below the asked-for one (the oldest, with a warning, below every preset; the newest
when no version is given — :func:`~simulator.silicon.versions.choose`). The preset fills every key
of its table that the scenario leaves out; a key the scenario writes always wins. Without a
framework nothing is filled and every key keeps its own default.

A value is either a constant or a rule of the scenario (e.g. "sequence parallelism when tp > 1").
Every value cites the framework's code or documentation (``SOURCES``), read at the commit named.

What the presets do not set: the model recipe (dropout, sequence length, batch), the layout the user
chose (tp, pp, cp, dp), recomputation, and what the frameworks leave to the user (Megatron's
``--sequence-parallel`` and ``--use-distributed-optimizer`` are flags a run passes or not: the
megatron-core preset keeps them off, as the defaults are).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..silicon.versions import choose, version_key

if TYPE_CHECKING:
    from ..scenario import TrainingScenario

Value = Any | Callable[["TrainingScenario"], Any]      # a constant, or a rule of the scenario



class FrameworkWarning(UserWarning):
    """An asked-for framework version is older than every preset; the oldest preset was used."""


@dataclass(frozen=True, slots=True)
class FrameworkPreset:
    framework: str
    version: str
    training: Mapping[str, Value] = field(default_factory=dict)     # training.* keys
    parallelism: Mapping[str, Value] = field(default_factory=dict)  # parallelism.* keys
    sources: Mapping[str, str] = field(default_factory=dict)        # "section.key" -> where it comes from


def with_tp(sc: TrainingScenario) -> bool:
    return sc.parallelism.tp > 1


def with_sequence_parallel(sc: TrainingScenario) -> bool:
    return sc.parallelism.tp > 1 and sc.parallelism.sequence_parallel


def with_sharded_optimizer(sc: TrainingScenario) -> bool:
    return sc.parallelism.zero_stage in (1, 2)


def fp8_recipe(recipe: str) -> Callable[[TrainingScenario], str | None]:
    """The recipe for per-tensor FP8 (precision fp8); block formats and 16-bit take none."""
    def rule(sc: TrainingScenario) -> str | None:
        return recipe if sc.training.precision == "fp8" else None
    rule.__name__ = f"{recipe}_under_fp8"
    return rule


def one_for_moe_models(sc: TrainingScenario) -> int | None:
    """Expert tensor parallelism 1 for a mixture-of-experts model (none for a dense one)."""
    from ..catalog import get_model

    try:
        return 1 if get_model(sc.model).moe else None
    except Exception:   # an unreadable model is reported where the model is loaded, not here
        return None


def the_16_bit_precision(sc: TrainingScenario) -> str:
    return "fp16" if sc.training.precision == "fp16" else "bf16"


_MEGATRON_LM = "Megatron-LM megatron/training/arguments.py (core_r0.12)"
_MEGATRON_CORE: dict[str, Value] = {
    "grad_precision": "fp32", "overlap_grad_reduce": False, "grad_accumulation_fusion": True,
    "cross_entropy": "fp32", "fp8_recipe": fp8_recipe("delayed")}
_MEGATRON_CORE_SOURCES = {
    "training.grad_precision": f"{_MEGATRON_LM}: with --bf16, accumulate_allreduce_grads_in_fp32 is forced on",
    "training.overlap_grad_reduce": f"{_MEGATRON_LM}: --overlap-grad-reduce is a store_true flag (off)",
    "training.grad_accumulation_fusion": f"{_MEGATRON_LM}: --no-gradient-accumulation-fusion (on unless given)",
    "training.cross_entropy": f"{_MEGATRON_LM}: --cross-entropy-loss-fusion is a store_true flag (off)",
    "training.fp8_recipe": f"{_MEGATRON_LM}: --fp8-recipe default 'delayed'",
    "parallelism.placement": "megatron/core/parallel_state.py initialize_model_parallel order='tp-cp-ep-dp-pp'",
}
_BRIDGE = "Megatron-Bridge src/megatron/bridge (067f987d)"
_AUTOGRAD = "autograd accumulates each micro-batch into .grad"
_MLM2 = "Megatron-LM v2 (2021)"
_NEMO1 = "NeMo-Framework-Launcher launcher_scripts/conf/training (24.07 performance configs)"

PRESETS: dict[str, dict[str, FrameworkPreset]] = {
    "megatron-core": {"0.12": FrameworkPreset(
        "megatron-core", "0.12", training=dict(_MEGATRON_CORE),
        parallelism={"placement": ["tp", "cp", "dp", "pp"]}, sources=_MEGATRON_CORE_SOURCES)},
    # Megatron-LM as Narayanan et al. 2021 and Korthikanti et al. 2022 ran it: fp32 main gradients
    # all-reduced after the backward (the overlap came with Megatron-Core's DDP in 2023)
    "megatron-2021": {"2021": FrameworkPreset(
        "megatron-2021", "2021", training={"grad_precision": "fp32", "overlap_grad_reduce": False,
                                           "grad_accumulation_fusion": True, "cross_entropy": "fp32"},
        parallelism={"placement": ["tp", "cp", "dp", "pp"]},
        sources={"training.grad_precision": f"{_MLM2}: fp32 main gradients",
                 "training.overlap_grad_reduce": f"{_MLM2}: DDP allreduce_gradients after the backward",
                 "training.grad_accumulation_fusion": f"{_MLM2}: fused_weight_gradient_mlp_cuda, on",
                 "training.cross_entropy": f"{_MLM2}: vocab_parallel_cross_entropy, fp32",
                 "parallelism.placement": f"{_MLM2} mpu/initialize.py: DP groups inside a stage"})},
    # DeepSpeed's engine (Megatron-DeepSpeed, vTrain's runs): 16-bit gradients reduced after the
    # backward, accumulated in a separate pass, pipeline topology with data parallel inside pipeline
    "deepspeed": {"0.9": FrameworkPreset(
        "deepspeed", "0.9", training={"grad_precision": the_16_bit_precision, "overlap_grad_reduce": False,
                                      "grad_accumulation_fusion": False, "cross_entropy": "fp32"},
        parallelism={"placement": ["tp", "cp", "dp", "pp"]},
        sources={"training.grad_precision": "deepspeed/runtime/config.py communication_data_type None: the 16-bit dtype",
                 "training.overlap_grad_reduce": "deepspeed/runtime/zero/config.py overlap_comm default False",
                 "training.grad_accumulation_fusion": f"deepspeed/runtime/engine.py: {_AUTOGRAD}",
                 "training.cross_entropy": "Megatron-DeepSpeed: vocab_parallel_cross_entropy on fp32 logits",
                 "parallelism.placement": "deepspeed/runtime/pipe/topology.py PipeModelDataParallelTopology"})},
    "nemo": {
        # NeMo 1.x (Megatron-Core under NeMo's launcher), as its 24.07 performance table ran
        "24.07": FrameworkPreset(
            "nemo", "24.07",
            training={"grad_precision": "bf16", "overlap_grad_reduce": True, "overlap_param_gather": with_sharded_optimizer,
                      "grad_accumulation_fusion": True, "cross_entropy": "fp32", "fp8_recipe": fp8_recipe("delayed")},
            parallelism={"zero_stage": 1, "sequence_parallel": with_tp,
                         "tp_comm_overlap": with_sequence_parallel, "placement": ["tp", "cp", "dp", "pp"]},
            sources={"training.grad_precision": f"{_NEMO1}: optim.grad_sync_dtype bf16",
                     "training.overlap_grad_reduce": f"{_NEMO1}: optim overlap_grad_sync true",
                     "training.overlap_param_gather": f"{_NEMO1}: optim overlap_param_sync true",
                     "training.grad_accumulation_fusion": f"{_NEMO1}: gradient_accumulation_fusion true",
                     "training.cross_entropy": f"{_NEMO1}: no cross-entropy fusion key (fp32 loss)",
                     "training.fp8_recipe": f"{_NEMO1}: fp8_hybrid with amax history (delayed scaling)",
                     "parallelism.zero_stage": f"{_NEMO1}: optim distributed_fused_adam (ZeRO-1)",
                     "parallelism.sequence_parallel": f"{_NEMO1}: sequence_parallel true with TP > 1",
                     "parallelism.tp_comm_overlap": f"{_NEMO1}: ub_tp_comm_overlap true with TP > 1",
                     "parallelism.placement": _MEGATRON_CORE_SOURCES["parallelism.placement"]}),
        # NeMo 2 / Megatron-Bridge performance recipes (containers 25.09 on)
        "25.09": FrameworkPreset(
            "nemo", "25.09",
            training={"grad_precision": "bf16", "overlap_grad_reduce": True, "overlap_param_gather": with_sharded_optimizer,
                      "grad_accumulation_fusion": True, "cross_entropy": "fused", "fp8_recipe": fp8_recipe("current"),
                      "moe_dispatcher": "alltoall", "moe_a2a_overlap": False},
            parallelism={"zero_stage": 1, "sequence_parallel": with_tp, "etp": one_for_moe_models,
                         "tp_comm_overlap": with_sequence_parallel, "placement": ["tp", "cp", "dp", "pp"]},
            sources={"training.grad_precision": f"{_BRIDGE}/perf_recipes/_common.py _benchmark_common: grad_reduce_in_fp32 False",
                     "parallelism.etp": f"{_BRIDGE}/recipes/qwen/h100/qwen3_moe.py, deepseek/common.py, gpt_oss: "
                                        "expert_tensor_parallel_size = 1",
                     "training.overlap_grad_reduce": f"{_BRIDGE}/training/comm_overlap.py _get_optimizer_overlap_cfgs (dp > 1)",
                     "training.overlap_param_gather": f"{_BRIDGE}/training/comm_overlap.py _get_optimizer_overlap_cfgs (dp > 1)",
                     "training.grad_accumulation_fusion": f"{_BRIDGE}: Megatron-Core's default, kept",
                     "training.cross_entropy": f"{_BRIDGE}/perf_recipes/_common.py: cross_entropy_fusion_impl 'te'",
                     "training.fp8_recipe": f"{_BRIDGE}/perf_recipes/_common.py _perf_precision: fp8_cs (current scaling)",
                     "training.moe_dispatcher": f"{_BRIDGE}/models/{{qwen/qwen3_moe,deepseek/deepseek_v3,gpt_oss/gpt_oss}}"
                                                "_bridge.py: moe_token_dispatcher_type 'alltoall'",
                     "training.moe_a2a_overlap": f"{_BRIDGE}/training/comm_overlap.py: overlap_moe_expert_parallel_comm "
                                                 "unset, False unless a recipe turns it on",
                     "parallelism.zero_stage": f"{_BRIDGE}/perf_recipes: use_distributed_optimizer True",
                     "parallelism.sequence_parallel": f"{_BRIDGE}/perf_recipes/llama: sequence_parallel with TP > 1",
                     "parallelism.tp_comm_overlap": f"{_BRIDGE}/perf_recipes/llama: userbuffers tp_comm_overlap_cfg with TP > 1",
                     "parallelism.placement": _MEGATRON_CORE_SOURCES["parallelism.placement"]}),
    },
    # torchtitan: FSDP2 over every data-parallel rank, autograd gradient accumulation, fp32 reduce
    "torchtitan": {"0.1": FrameworkPreset(
        "torchtitan", "0.1",
        training={"grad_precision": "fp32", "overlap_grad_reduce": True, "grad_accumulation_fusion": False,
                  "cross_entropy": "fp32", "fp8_recipe": fp8_recipe("current")},
        parallelism={"zero_stage": 3},
        sources={"training.grad_precision": "torchtitan/config/job_config.py mixed_precision_reduce 'float32'",
                 "training.overlap_grad_reduce": "FSDP2 reduce-scatters each layer's gradients in the backward",
                 "training.grad_accumulation_fusion": "autograd accumulates each micro-batch into the unsharded grad",
                 "training.cross_entropy": "torchtitan/components/loss.py cross_entropy_loss: pred.float()",
                 "training.fp8_recipe": "torchao Float8 tensorwise: dynamic (current) scaling",
                 "parallelism.zero_stage": "torchtitan/config/job_config.py data_parallel_shard_degree -1 (FSDP over all DP)"})},
    # PyTorch FSDP (FULL_SHARD) under a plain training loop
    "fsdp": {"2.0": FrameworkPreset(
        "fsdp", "2.0",
        training={"grad_precision": "fp32", "overlap_grad_reduce": True, "grad_accumulation_fusion": False,
                  "cross_entropy": "fp32"},
        parallelism={"zero_stage": 3},
        sources={"training.grad_precision": "torch FSDP MixedPrecision reduce_dtype None: the fp32 parameters' dtype",
                 "training.overlap_grad_reduce": "torch FSDP: reduce-scatter in the backward hooks",
                 "training.grad_accumulation_fusion": _AUTOGRAD,
                 "training.cross_entropy": "torch.nn.functional.cross_entropy under autocast: fp32",
                 "parallelism.zero_stage": "torch FSDP ShardingStrategy.FULL_SHARD default"})},
    # llm-foundry (Composer FSDP) as its 2023 benchmark configs ran MPT
    "llm-foundry": {"0.2": FrameworkPreset(
        "llm-foundry", "0.2",
        training={"grad_precision": "bf16", "overlap_grad_reduce": True, "grad_accumulation_fusion": False,
                  "cross_entropy": "fused"},
        parallelism={"zero_stage": 3},
        sources={"training.grad_precision": "llm-foundry benchmarking/submit_benchmarks.py --mixed_precision PURE",
                 "training.overlap_grad_reduce": "Composer FSDP: reduce-scatter in the backward hooks",
                 "training.grad_accumulation_fusion": _AUTOGRAD,
                 "training.cross_entropy": "llm-foundry MPT loss_fn fused_crossentropy (flash-attn xentropy)",
                 "parallelism.zero_stage": "llm-foundry benchmarking yaml fsdp_config sharding_strategy FULL_SHARD"})},
}


def preset_for(framework: str, version: str | None) -> FrameworkPreset:
    """The preset of ``framework`` for ``version`` (the newest at or below it; the newest when None)."""
    versions = PRESETS[framework]
    pick, why = choose(versions, version)
    if why is not None and version is not None and version_key(version) < version_key(min(versions, key=version_key)):
        warnings.warn(f"training.framework_version={version}: {why.replace('tables measured', 'preset')}",
                      FrameworkWarning, stacklevel=3)
    return versions[pick]


def apply_framework(sc: TrainingScenario) -> None:
    """Fill the keys the scenario leaves out from its framework's preset (in place, before anything
    reads them); keys the scenario writes win. Parallelism first: training rules may read it."""
    if sc.training.framework is None:
        return
    preset = preset_for(sc.training.framework, sc.training.framework_version)
    for section, values in (("parallelism", preset.parallelism), ("training", preset.training)):
        target = getattr(sc, section)
        for key, value in values.items():
            if key not in target.model_fields_set:
                # bypass validate_assignment's bookkeeping: a filled key stays "not written by the user"
                target.__dict__[key] = value(sc) if callable(value) else value


def framework_rules(section: str, key: str, fmt: Callable[[Any], str] = str) -> str | None:
    """For ``capsim keys``: what each framework's newest preset sets ``section.key`` to (constants
    written by ``fmt``), or None."""
    parts = []
    for name, versions in PRESETS.items():
        newest = versions[max(versions, key=version_key)]
        table = newest.parallelism if section == "parallelism" else newest.training
        if key in table:
            v = table[key]
            parts.append(f"{name}: {v.__name__.replace('_', ' ') if callable(v) else fmt(v)}")
    return "framework presets: " + "; ".join(parts) if parts else None
