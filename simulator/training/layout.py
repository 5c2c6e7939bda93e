"""Check a training scenario's parallel layout and turn it into a :class:`Layout`; split the model
over its pipeline stages (:func:`partition`).

Which virtual stage a chunk of a stage is, is the schedule's answer; the layers are spread over the
virtual stages by :func:`stage_layers`. Stage work and the memory plan both read the partition.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..costmodel.layout import Layout
from ..errors import CapsimError
from ..hardware import HardwareProfile
from ..layers import LayerSpec
from ..memo import IdentityMemo
from ..models import ModelSpec
from ..scenario import TrainingScenario
from .schedules.base import Schedule, make_schedule, shape_key


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


def step_schedule(sc: TrainingScenario, micro_batch: int, dp: int) -> Schedule:
    """The scenario's pipeline schedule over one iteration's global_batch / (micro_batch·dp) micro-batches."""
    return make_schedule(sc.parallelism, sc.training.global_batch // (micro_batch * dp))


def resolve_layout(sc: TrainingScenario, model: ModelSpec, hw: HardwareProfile,
                   micro_batch: int | None = None) -> tuple[Layout, int]:
    """Validate the layout against the model, the cluster and the pipeline schedule; return it with a
    concrete micro-batch (the given one, the scenario's, or 1 when the scenario says ``auto``)."""
    par, tr, cl = sc.parallelism, sc.training, sc.cluster
    hw.check_precision(tr.precision, key="training.precision", training=True)
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
    v = par.chunks_per_stage
    mb = micro_batch or (tr.micro_batch if isinstance(tr.micro_batch, int) else 1)
    if tr.global_batch % (mb * dp) == 0:
        problems += step_schedule(sc, mb, dp).problems()
    if model.layers < par.layer_partitions:
        parts = (f"pp·virtual_stages = {par.pp * v}" if par.layer_partitions == par.pp * v else
                 f"pp = {par.pp} (parallelism.schedule={par.schedule} holds each part twice)")
        problems.append(f"model {model.name} has {model.layers} layers, fewer than {parts}")
    if tr.seq_len % par.cp:
        problems.append(f"training.seq_len={tr.seq_len} not divisible by cp={par.cp}")
    if model.position == "learned" and tr.seq_len > model.max_positions and model.architecture != "vit":
        problems.append(f"training.seq_len={tr.seq_len} exceeds model {model.name}'s {model.max_positions} learned positions")
    etp = par.tp if par.etp is None else par.etp
    if par.ep > 1 or par.etp is not None:
        if not model.moe:
            problems.append(f"ep={par.ep}, etp={etp} need a mixture-of-experts model ({model.name} is dense)")
        elif model.moe.num_experts % par.ep:
            problems.append(f"{model.moe.num_experts} experts not divisible by ep={par.ep}")
        if (par.tp * par.cp * dp) % (par.ep * etp):
            problems.append(f"ep·etp = {par.ep}·{etp} must divide the tp·cp·dp = {par.tp}·{par.cp}·{dp} GPUs of a stage "
                            "(Megatron-Core's MoE parallel folding draws the experts' grid from them)")
        if etp > par.tp:
            problems.append(f"etp={etp} above tp={par.tp}: the experts' tensor parallelism folds into the stage's "
                            "tensor-parallel GPUs or fewer")
    if par.reshard_after_forward is not None and par.zero_stage != 3:
        problems.append(f"parallelism.reshard_after_forward applies to zero_stage 3 (FSDP's sharded weights); "
                        f"zero_stage={par.zero_stage} keeps every weight")
    if par.dp_shard is not None:
        if par.zero_stage == 0:
            problems.append("parallelism.dp_shard (hybrid sharding) needs zero_stage >= 1: zero_stage 0 shards nothing")
        elif (dp * par.cp) % par.dp_shard:
            problems.append(f"parallelism.dp_shard={par.dp_shard} must divide the dp·cp = {dp}·{par.cp} = "
                            f"{dp * par.cp} ranks holding the same weights")
    if tr.fp8_recipe is not None and tr.precision != "fp8":
        problems.append(f"training.fp8_recipe={tr.fp8_recipe} applies to precision fp8 (per-tensor scales); "
                        f"training.precision={tr.precision} sets its own scales")
    if tr.overlap_param_gather and par.zero_stage not in (1, 2):
        problems.append(f"training.overlap_param_gather overlaps a sharded optimizer's parameter all-gather "
                        f"(zero_stage 1 or 2); zero_stage={par.zero_stage} "
                        + ("has none" if par.zero_stage == 0 else "gathers every layer before it runs"))
    if tr.attention_kernel != "flash2" and not tr.flash_attention:
        problems.append(f"training.attention_kernel={tr.attention_kernel} names a fused attention kernel, "
                        "but training.flash_attention is false (unfused attention)")
    if tr.moe_pad_to_capacity and tr.moe_capacity_factor is None:
        problems.append("training.moe_pad_to_capacity pads each expert's input to its capacity; set "
                        "training.moe_capacity_factor (e.g. 1.0) to say what the capacity is")
    if tr.recompute_modules is not None and tr.recompute != "selective":
        problems.append(f"training.recompute_modules names what selective recompute recomputes; training.recompute "
                        f"is {tr.recompute}: set it to selective (or drop recompute_modules)")
    if "mla_up_proj" in (tr.recompute_modules or ()):
        problems.append("training.recompute_modules: mla_up_proj cannot be recomputed on its own here (capsim's "
                        "training model runs MLA's projections as one QKV GEMM); drop it, and the recompute "
                        "leaves out the up-projections' GEMMs")
    moe_modules = {"moe", "moe_act", "shared_experts"} & set(tr.recompute_modules or ())
    if moe_modules and not model.moe:
        problems.append(f"training.recompute_modules {sorted(moe_modules)} recompute MoE modules; {model.name} is dense")
    if {"moe", "full"} & set(tr.cuda_graph_scope) and model.moe and not tr.moe_pad_to_capacity:
        problems.append("training.cuda_graph_scope captures the routed experts (moe or full), whose shapes change "
                        "with the routing; a CUDA graph needs them static: set training.moe_capacity_factor and "
                        "training.moe_pad_to_capacity, or capture attn, moe_router and moe_preprocess only")
    if tr.moe_a2a_overlap and par.ep == 1:
        problems.append("training.moe_a2a_overlap overlaps the expert-parallel all-to-alls; ep=1 has none")
    if par.tp_comm_overlap and not par.sequence_parallel:
        problems.append("parallelism.tp_comm_overlap needs parallelism.sequence_parallel (Megatron overlaps the "
                        "sequence-parallel all-gathers and reduce-scatters)")
    if par.sequence_parallel and par.tp == 1:
        problems.append("sequence_parallel needs tp >= 2")
    if tr.global_batch % (mb * dp):
        problems.append(f"training.global_batch={tr.global_batch} not divisible by micro_batch·dp = {mb}·{dp} = {mb * dp}")
    if problems:
        raise CapsimError("invalid layout: " + "; ".join(problems))
    lay = Layout(tp=par.tp, pp=par.pp, dp=dp, cp=par.cp, ep=par.ep, etp=etp, sequence_parallel=par.sequence_parallel,
                 virtual_stages=v, zero_stage=par.zero_stage, recompute=tr.recompute,
                 recompute_modules=frozenset(tr.recompute_modules if tr.recompute_modules is not None else ["core_attn"]),
                 flash_attention=tr.flash_attention, attention_kernel=tr.attention_kernel,
                 dropout=tr.dropout, fused_cross_entropy=tr.cross_entropy == "fused",
                 fp8_recipe=tr.fp8_recipe or "delayed", grad_accumulation_fusion=tr.grad_accumulation_fusion,
                 tp_comm_overlap=par.tp_comm_overlap, precision=tr.precision,
                 moe_dispatcher=tr.moe_dispatcher, moe_a2a_overlap=tr.moe_a2a_overlap,
                 moe_capacity_factor=tr.moe_capacity_factor, moe_pad_to_capacity=tr.moe_pad_to_capacity,
                 cuda_graph_scope=frozenset(tr.cuda_graph_scope),
                 grad_precision=tr.grad_precision,
                 overlap_grad_reduce=tr.overlap_grad_reduce, overlap_param_gather=tr.overlap_param_gather,
                 reshard_after_forward=par.pp == 1 if par.reshard_after_forward is None else par.reshard_after_forward,
                 dp_shard=par.dp_shard or 0, gpus_per_node=cl.gpus_per_node, placement=tuple(par.placement))
    return lay, mb


@dataclass(frozen=True, slots=True)
class Chunk:
    """One virtual stage as held by one GPU of its pipeline stage."""

    vs: int                 # virtual stage: position in the layer order, 0 first
    layers: int             # transformer layers
    embedding: bool         # the first virtual stage embeds the tokens
    head: bool              # the last one holds the final norm, output head and loss
    params: float           # parameters on one GPU (tensor- and expert-parallel shards)
    groups: tuple[tuple[LayerSpec, int], ...] = ()   # its layers by kind, in layer order: (spec, count)
    expert_params: float = 0.0  # the routed experts' share of ``params``, synced over the expert-DP group


# (model, schedule class and shape, tp, ep, expert tp) -> the stages' chunks (simulator.memo). A plan search
# partitions thousands of layouts that differ only in data parallelism, micro-batch or recomputation,
# which move no layer.
_PARTITIONS: IdentityMemo[list[list[Chunk]]] = IdentityMemo(16384)


def partition(model: ModelSpec, lay: Layout, schedule: Schedule) -> list[list[Chunk]]:
    """Per pipeline stage, its chunks in the schedule's chunk order (memoised per model, schedule shape
    and the layout's tensor and expert parallelism when the schedule holds nothing but its shape)."""
    shape = shape_key(schedule)
    key = None if shape is None else (id(model), *shape, lay.tp, lay.ep, lay.expert_tp)
    if key is not None:
        hit = _PARTITIONS.get(key, (model,))
        if hit is not None:
            return [list(chunks) for chunks in hit]
    stages = _partition(model, lay, schedule)
    if key is not None:
        _PARTITIONS.put(key, (model,), [list(chunks) for chunks in stages])
    return stages


def _partition(model: ModelSpec, lay: Layout, schedule: Schedule) -> list[list[Chunk]]:
    p, v = schedule.stages, schedule.chunks
    nvs = schedule.layer_positions
    per_vs = stage_layers(model.layers, nvs)
    emb_params = model.embedding_params() / lay.tp
    # a tied output head keeps its own copy of the embedding matrix when it sits on another stage
    head_params = model.head_params() / lay.tp + (model.vocab * model.hidden / lay.tp
                                                  if model.tie_embeddings and p > 1 and model.vocab else 0)
    bounds = [0, *itertools.accumulate(per_vs)]

    def expert_params(spec: LayerSpec) -> float:
        """The routed experts of one layer on this rank: 1/(ep·etp) of them."""
        return spec.routed_params() / (lay.ep * lay.expert_tp) if spec.mlp.is_moe else 0.0

    def layer_params(spec: LayerSpec) -> float:
        """Parameters of one layer on this rank: 1/tp of the rest, and its routed experts' share."""
        if not spec.mlp.is_moe:
            return spec.params() / lay.tp
        return (spec.params() - spec.routed_params()) / lay.tp + expert_params(spec)

    stages = []
    for s in range(p):
        chunks = []
        for c in range(v):
            vs = schedule.virtual_stage(s, c)
            pos = schedule.layer_position(vs)
            groups = tuple(model.layer_groups(bounds[pos], bounds[pos + 1]))
            params = sum((layer_params(spec) * n for spec, n in groups), 0.0)
            if pos == 0:
                params += emb_params
            if pos == nvs - 1:
                params += head_params
            experts = sum((expert_params(spec) * n for spec, n in groups), 0.0)
            chunks.append(Chunk(vs, per_vs[pos], pos == 0, pos == nvs - 1, params, groups, experts))
        stages.append(chunks)
    return stages


def stage_params(chunks: list[Chunk]) -> float:
    """Parameters one GPU of the stage holds."""
    total = 0.0
    for ch in chunks:
        total += ch.params
    return total


def stage_expert_params(chunks: list[Chunk]) -> float:
    """The routed experts' share of :func:`stage_params`."""
    return sum((ch.expert_params for ch in chunks), 0.0)
