"""Check a training scenario's parallel layout and turn it into a :class:`Layout`."""

from __future__ import annotations

from ..costmodel.layout import Layout
from ..errors import CapsimError
from ..hardware import HardwareProfile
from ..models import ModelSpec
from ..scenario import TrainingScenario


def stage_layers(layers: int, virtual_stages: int) -> list[int]:
    """Layers per virtual stage, as even as possible; when they do not divide, the first and last
    stages (which also hold the embedding and the output head) get one fewer, as Llama 3 405B's
    126 layers on 16 stages did (Dubey et al. 2024, section 3.3.2)."""
    base, extra = divmod(layers, virtual_stages)
    if extra == 0:
        return [base] * virtual_stages
    counts = [base + 1] * virtual_stages
    n = virtual_stages
    ends_first = [j for i in range((n + 1) // 2) for j in dict.fromkeys((i, n - 1 - i))]  # 0, n-1, 1, n-2, ...
    for j in ends_first[: n - extra]:
        counts[j] -= 1
    return counts


def resolve_layout(sc: TrainingScenario, model: ModelSpec, hw: HardwareProfile,
                   micro_batch: int | None = None) -> tuple[Layout, int]:
    """Validate the layout against the model and cluster; return it with a concrete micro-batch
    (the given one, the scenario's, or 1 when the scenario says ``auto``)."""
    par, tr, cl = sc.parallelism, sc.training, sc.cluster
    gpus = cl.nodes * cl.gpus_per_node
    base = par.tp * par.pp * par.cp
    if par.dp is None:
        if gpus % base:
            raise CapsimError(
                f"layout: tp·pp·cp = {par.tp}·{par.pp}·{par.cp} = {base} does not divide the "
                f"{gpus} GPUs (cluster.nodes={cl.nodes} × cluster.gpus_per_node={cl.gpus_per_node})")
        dp = gpus // base
    else:
        dp = par.dp
        if base * dp != gpus:
            raise CapsimError(
                f"layout: tp·pp·dp·cp = {par.tp}·{par.pp}·{dp}·{par.cp} = {base * dp} but the cluster has "
                f"{gpus} GPUs (cluster.nodes={cl.nodes} × cluster.gpus_per_node={cl.gpus_per_node})")
    problems = []
    if model.heads % par.tp:
        problems.append(f"model {model.name} has {model.heads} attention heads, not divisible by tp={par.tp}")
    if par.tp > model.kv_heads and par.tp % model.kv_heads:
        problems.append(f"kv_heads={model.kv_heads} and tp={par.tp}: one must divide the other")
    if par.tp < model.kv_heads and model.kv_heads % par.tp:
        problems.append(f"kv_heads={model.kv_heads} not divisible by tp={par.tp}")
    v = par.virtual_stages
    if par.schedule == "interleaved" and (v < 2 or par.pp < 2):
        problems.append("schedule 'interleaved' needs pp >= 2 and parallelism.virtual_stages >= 2")
    if v > 1 and par.schedule != "interleaved":
        problems.append(f"virtual_stages={v} needs schedule: interleaved (got {par.schedule!r})")
    if model.layers < par.pp * v:
        problems.append(f"model {model.name} has {model.layers} layers, fewer than pp·virtual_stages = {par.pp * v}")
    if tr.seq_len % par.cp:
        problems.append(f"training.seq_len={tr.seq_len} not divisible by cp={par.cp}")
    if model.position == "learned" and tr.seq_len > model.max_positions and model.architecture != "vit":
        problems.append(f"training.seq_len={tr.seq_len} exceeds model {model.name}'s {model.max_positions} learned positions")
    if par.ep > 1:
        if not model.moe:
            problems.append(f"ep={par.ep} needs a mixture-of-experts model ({model.name} is dense)")
        elif model.moe.num_experts % par.ep:
            problems.append(f"{model.moe.num_experts} experts not divisible by ep={par.ep}")
        if dp % par.ep:
            problems.append(f"ep={par.ep} must divide dp={dp} (experts are sharded over data-parallel ranks)")
    if par.zero_stage >= 2 and par.pp > 1:
        problems.append(f"zero_stage={par.zero_stage} cannot be combined with pp={par.pp} "
                        "(DeepSpeed and Megatron shard gradients only without pipeline parallelism)")
    if par.sequence_parallel and par.tp == 1:
        problems.append("sequence_parallel needs tp >= 2")
    if not hw.supports(tr.precision) and tr.precision != "fp32":
        problems.append(f"hardware {hw.name} has no {tr.precision} support (peaks: {', '.join(hw.peak_tflops)})")
    mb = micro_batch or (tr.micro_batch if isinstance(tr.micro_batch, int) else 1)
    if tr.global_batch % (mb * dp):
        problems.append(f"training.global_batch={tr.global_batch} not divisible by micro_batch·dp = {mb}·{dp} = {mb * dp}")
    if problems:
        raise CapsimError("invalid layout: " + "; ".join(problems))
    lay = Layout(tp=par.tp, pp=par.pp, dp=dp, cp=par.cp, ep=par.ep, sequence_parallel=par.sequence_parallel,
                 virtual_stages=v, zero_stage=par.zero_stage, recompute=tr.recompute,
                 flash_attention=tr.flash_attention, precision=tr.precision, grad_precision=tr.grad_precision,
                 overlap_grad_reduce=tr.overlap_grad_reduce,
                 gpus_per_node=cl.gpus_per_node, placement=tuple(par.placement))
    return lay, mb
