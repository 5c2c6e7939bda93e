"""A parallel layout and where its groups land on nodes.

Placement follows Megatron's default order: tensor-parallel ranks innermost (inside a node), then
context, pipeline, data parallel outermost.
"""

from __future__ import annotations

from dataclasses import dataclass

from .collectives import Group


@dataclass(frozen=True, slots=True)
class Layout:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    sequence_parallel: bool = False
    virtual_stages: int = 1
    zero_stage: int = 0
    recompute: str = "none"  # none | selective | full
    flash_attention: bool = True
    precision: str = "bf16"
    grad_precision: str = "fp32"
    overlap_grad_reduce: bool = True
    gpus_per_node: int = 8

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    def _per_node(self, size: int, stride: int) -> int:
        return max(1, min(size, self.gpus_per_node // stride)) if stride <= self.gpus_per_node else 1

    @property
    def tp_group(self) -> Group:
        return Group(self.tp, self._per_node(self.tp, 1))

    @property
    def cp_group(self) -> Group:
        return Group(self.cp, self._per_node(self.cp, self.tp))

    @property
    def dp_group(self) -> Group:
        return Group(self.dp, self._per_node(self.dp, self.tp * self.cp * self.pp))

    @property
    def ep_group(self) -> Group:
        return Group(self.ep, self._per_node(self.ep, self.tp * self.cp * self.pp))

    @property
    def pp_same_node(self) -> bool:
        return self.tp * self.cp * self.pp <= self.gpus_per_node
