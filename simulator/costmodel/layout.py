"""A parallel layout and where its groups land on nodes.

Ranks are numbered with the dimensions of ``placement`` varying fastest first. Megatron-Core's
default is tensor parallel innermost (inside a node), then context, data, pipeline parallel
outermost (``parallel_state.initialize_model_parallel(order="tp-cp-ep-dp-pp")``, and Megatron-LM's
groups before it); DeepSpeed's pipeline topology (``PipeModelDataParallelTopology``) is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from .collectives import Group

PLACEMENT_MEGATRON = ("tp", "cp", "dp", "pp")


# What of a layout a layer's kernels read (:attr:`Layout.kernel_key`); the groups stand for the placement.
KERNEL_FIELDS = ("tp", "cp", "ep", "etp", "expert_tp", "sequence_parallel", "recompute", "recompute_modules",
                 "flash_attention", "attention_kernel", "dropout", "fused_cross_entropy", "tp_comm_overlap",
                 "fp8_recipe", "moe_dispatcher", "moe_capacity_factor", "moe_pad_to_capacity", "cuda_graph_scope",
                 "precision", "tp_group", "cp_group", "ep_group")


@dataclass(frozen=True, slots=True)
class Layout:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int = 0                           # expert tensor parallelism (0: tp, Megatron-Core's default)
    sequence_parallel: bool = False
    virtual_stages: int = 1
    zero_stage: int = 0
    recompute: str = "none"  # none | selective | full
    recompute_modules: frozenset[str] = frozenset({"core_attn"})   # what selective recomputes (costmodel.transformer)
    flash_attention: bool = True
    attention_kernel: str = "flash2"   # flash2 | flash1 (costmodel.ops.flash_attention)
    dropout: bool = True               # dropout after attention and MLP (and on the scores, unfused)
    fused_cross_entropy: bool = False  # the loss reads 16-bit logits in one kernel (no fp32 copy)
    grad_accumulation_fusion: bool = True   # wgrad GEMMs accumulate into the main gradient (no extra pass)
    tp_comm_overlap: bool = False      # TP collectives pipelined with their GEMMs (costmodel.transformer)
    fp8_recipe: str = "delayed"        # delayed | current: FP8 (per-tensor) scaling (costmodel.transformer)
    moe_dispatcher: str = "alltoall"   # alltoall | flex: the MoE token dispatcher (costmodel.moe_training)
    moe_a2a_overlap: bool = False      # EP all-to-alls under another micro-batch's compute (training.work)
    moe_capacity_factor: float | None = None   # token dropping at this capacity factor (None: dropless)
    moe_pad_to_capacity: bool = False  # expert inputs padded to capacity: static shapes, no host sync
    cuda_graph_scope: frozenset[str] = frozenset()   # layer parts replayed from CUDA graphs (costmodel.transformer)
    precision: str = "bf16"
    grad_precision: str = "fp32"
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = False     # ZeRO-1/2's parameter all-gather under the next forward passes
    reshard_after_forward: bool = True     # ZeRO-3: gather weights again for the backward
    dp_shard: int = 0                      # HSDP: ranks a shard group spans (0: all grad_ranks)
    gpus_per_node: int = 8
    placement: tuple[str, ...] = PLACEMENT_MEGATRON

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    def _stride(self, dim: str) -> int:
        """Distance in ranks between neighbours of ``dim``: the product of the dimensions inside it."""
        stride = 1
        for d in self.placement:
            if d == dim:
                return stride
            stride *= getattr(self, d)
        raise ValueError(f"placement {self.placement} lacks {dim!r}")

    def _group(self, dim: str, size: int) -> Group:
        stride = self._stride(dim)
        per_node = max(1, min(size, self.gpus_per_node // stride)) if stride <= self.gpus_per_node else 1
        return Group(size, per_node)

    @property
    def tp_group(self) -> Group:
        return self._group("tp", self.tp)

    @property
    def cp_group(self) -> Group:
        return self._group("cp", self.cp)

    @property
    def dp_group(self) -> Group:
        return self._group("dp", self.dp)

    @property
    def grad_ranks(self) -> int:
        """Ranks that hold the same weights: data parallel × context parallel (a CP rank sees another
        part of the sequence with the same weights), over which Megatron-Core reduces gradients and
        shards its distributed optimizer (``get_data_parallel_group(with_context_parallel=True)``)."""
        return self.dp * self.cp

    @property
    def grad_group(self) -> Group:
        """The :attr:`grad_ranks` as a collective group: its ranks in one node are the CP ranks
        there times the DP ranks there."""
        if self.cp == 1:
            return self.dp_group
        return Group(self.grad_ranks, self.cp_group.per_node * self.dp_group.per_node)

    @property
    def shard_ranks(self) -> int:
        """Ranks one ZeRO/FSDP shard group spans: :attr:`grad_ranks`, or ``dp_shard`` of them (HSDP)."""
        return self.dp_shard or self.grad_ranks

    @property
    def shard_group(self) -> Group:
        """The innermost ``shard_ranks`` of the gradient ranks, as a collective group."""
        g = self.grad_group
        if self.shard_ranks == g.size:
            return g
        return Group(self.shard_ranks, min(self.shard_ranks, g.per_node))

    @property
    def replica_group(self) -> Group:
        """One rank of each HSDP shard group holding the same shard: the groups' gradients meet here."""
        g = self.grad_group
        n = g.size // self.shard_ranks
        return Group(n, max(1, g.per_node // self.shard_ranks))

    @property
    def grads_sharded(self) -> bool:
        """ZeRO-2/3 keep only their gradient shard, reduce-scattered after every micro-batch (DeepSpeed,
        FSDP). Under pipeline parallelism they accumulate unsharded until a chunk's last micro-batch
        (torch.distributed.pipelining ``backward_maybe_with_nosync``; DeepSpeed refuses ZeRO-2/3 with
        pipelines), as ZeRO-1 does."""
        return self.zero_stage >= 2 and self.grad_ranks > 1 and self.pp == 1

    @property
    def weights_sharded(self) -> bool:
        """ZeRO-3 holds only its weight shard at the memory peak when it reshards after the forward."""
        return self.zero_stage >= 3 and self.reshard_after_forward

    @property
    def expert_tp(self) -> int:
        return self.etp or self.tp

    @property
    def ep_group(self) -> Group:
        """The expert-parallel ranks. With the experts' tensor parallelism at tp they are data-parallel
        ranks (as before parallel folding); with etp < tp, Megatron-Core's expert grid (order
        tp-ep-dp-pp over etp) makes them every etp-th rank from the innermost."""
        if self.expert_tp == self.tp:
            return self._group("dp", self.ep)
        per_node = max(1, min(self.ep, self.gpus_per_node // self.expert_tp))
        return Group(self.ep, per_node)

    @property
    def expert_grad_ranks(self) -> int:
        """Ranks holding the same routed experts: the expert-data-parallel group. Megatron-Core folds
        the experts' grid (etp × ep × edp) into the stage's tp × cp × dp GPUs, so edp = tp·cp·dp / (etp·ep);
        it reduces the experts' gradients and shards their optimizer over it
        (``get_expert_data_parallel_group``), not over the dense data-parallel group."""
        return max(1, self.tp * self.cp * self.dp // (self.expert_tp * self.ep))

    @property
    def expert_grad_group(self) -> Group:
        """The :attr:`expert_grad_ranks` as a collective group: every (etp·ep)-th rank of the expert grid
        (order etp-ep-edp), so an EP group that fills a node leaves one of them per node."""
        stride, size = self.expert_tp * self.ep, self.expert_grad_ranks
        per_node = max(1, min(size, self.gpus_per_node // stride)) if stride <= self.gpus_per_node else 1
        return Group(size, per_node)

    @property
    def kernel_key(self) -> tuple[object, ...]:
        """Everything of the layout a layer's kernels read (``costmodel.transformer`` ``layer_ops``,
        ``embedding_ops``, ``head_ops`` and what they call): layouts with equal keys run the same kernels
        for the same layer, micro-batch and sequence, whatever their pipeline, data parallelism or ZeRO
        stage, so a plan search builds each kind once (``training.work``). The groups stand for the
        placement. ``tests/test_plan_speed.py`` checks that the kernels read nothing else."""
        return tuple(getattr(self, name) for name in KERNEL_FIELDS)

    @property
    def pp_same_node(self) -> bool:
        return self._stride("pp") * self.pp <= self.gpus_per_node
