"""The plan search's memos change no answer.

``training.work`` builds a layer kind's kernels once per distinct ``Layout.kernel_key`` (with the part,
profile, micro-batch and sequence), and the issued times of a chunk's kernel lists once per list; the
model folds each range of its layers once; a schedule shape's partition into chunks is made once. These
tests check that the kernels read nothing of a layout outside its key, and that a warm memo gives what a
cold one gives, bit for bit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import simulator.models as models
import simulator.training.layout as training_layout
import simulator.training.work as work
from simulator.catalog import get_model
from simulator.costmodel.layout import KERNEL_FIELDS, Layout
from simulator.costmodel.transformer import embedding_ops, head_ops, layer_ops
from simulator.hardware import get_profile
from simulator.training.layout import partition
from simulator.training.schedules.interleaved import Interleaved
from simulator.training.schedules.one_f_one_b import OneFOneB


class Recording:
    """A layout that records which of its attributes are read."""

    def __init__(self, lay: Layout) -> None:
        self._lay, self.read = lay, set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._lay, name)


LAYOUTS = [
    Layout(),
    Layout(tp=4, sequence_parallel=True, tp_comm_overlap=True, precision="fp8", fp8_recipe="current"),
    Layout(tp=2, cp=2, recompute="selective", dropout=True, flash_attention=True, precision="bf16"),
    Layout(tp=8, pp=4, dp=2, recompute="full", fused_cross_entropy=True, cuda_graph_scope=frozenset({"attn"})),
    Layout(flash_attention=False, dropout=True, recompute="selective", recompute_modules=frozenset({"core_attn", "mlp"})),
    Layout(tp=2, ep=4, dp=4, moe_dispatcher="flex", moe_capacity_factor=1.0, moe_pad_to_capacity=True,
           precision="fp8", gpus_per_node=4),
    Layout(tp=2, ep=2, etp=1, dp=2, attention_kernel="flash1", placement=("pp", "tp", "cp", "dp"), pp=2),
]


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen3-30b-a3b", "deepseek-v3"])
def test_a_layers_kernels_read_only_the_layouts_kernel_key(name: str) -> None:
    model, hw = get_model(name), get_profile("h100-sxm")
    for lay in LAYOUTS:
        if model.moe is None and lay.ep > 1:
            continue
        rec = Recording(lay)
        for spec, _ in model.layer_groups():
            layer_ops(spec, hw, rec, 2, 4096)        # type: ignore[arg-type]
        embedding_ops(model, hw, rec, 2, 4096)       # type: ignore[arg-type]
        head_ops(model, hw, rec, 2, 4096)            # type: ignore[arg-type]
        assert rec.read, "the recording layout saw no read: the check would pass vacuously"
        assert rec.read <= set(KERNEL_FIELDS), f"{lay}: read {sorted(rec.read - set(KERNEL_FIELDS))} outside the key"


def test_layouts_that_differ_outside_the_key_share_it_and_those_inside_do_not() -> None:
    base = Layout(tp=4, pp=2, dp=8, zero_stage=1, sequence_parallel=True)
    same = replace(base, pp=8, dp=2, zero_stage=3, virtual_stages=4, overlap_param_gather=True, grad_precision="bf16")
    assert same.kernel_key == base.kernel_key
    for change in ({"tp": 2}, {"cp": 2}, {"recompute": "full"}, {"precision": "fp8"}, {"dropout": False},
                   {"gpus_per_node": 2}, {"placement": ("dp", "tp", "cp", "pp")}):
        assert replace(base, **change).kernel_key != base.kernel_key, change


def _all_work(model_name: str, layouts: list[tuple[Layout, Any]], cold: bool) -> list[Any]:
    model, hw = get_model(model_name), get_profile("h100-sxm")
    out = []
    for lay, schedule in layouts:
        if cold:
            work.clear_memos()
            assert not (work._KERNELS or work._ISSUED or models._GROUPS or training_layout._PARTITIONS)
        out.append(work.stage_work(model, hw, lay, 1, 4096, schedule, partition(model, lay, schedule), 20e-6))
    return out


def test_a_warm_memo_gives_the_cold_answer_bit_for_bit() -> None:
    # candidates of one plan: the same kernels under other pipelines, data parallelism and ZeRO stages, and others
    layouts = []
    for tp in (2, 4):
        for pp, v in ((1, 1), (2, 1), (4, 1), (4, 2), (8, 5)):
            for zero, dp in ((0, 8), (1, 4), (3, 2)):
                lay = Layout(tp=tp, pp=pp, dp=dp, zero_stage=zero, virtual_stages=v, sequence_parallel=True,
                             grad_precision="bf16" if zero else "fp32")
                m = 4 * pp
                schedule = Interleaved(stages=pp, microbatches=m, chunks=v) if v > 1 else OneFOneB(stages=pp, microbatches=m)
                layouts.append((lay, schedule))
    warm = _all_work("llama-3.1-70b", layouts, cold=False)
    again = _all_work("llama-3.1-70b", layouts, cold=False)
    cold = _all_work("llama-3.1-70b", layouts, cold=True)
    assert warm == cold == again
    assert len({w.stages[0].fwd[0].total for w in warm}) > 4     # the layouts do differ


def test_a_ranges_folded_layers_come_back_unaliased() -> None:
    model = get_model("qwen3-30b-a3b")
    first = model.layer_groups(0, 12)
    first.append(first[0])                          # a caller's edit to its list
    assert model.layer_groups(0, 12) == first[:-1]
    assert model.layer_groups(0, 12) is not model.layer_groups(0, 12)


def test_a_partition_comes_back_unaliased() -> None:
    model, lay = get_model("llama-3.1-70b"), Layout(tp=4, pp=4, dp=2)
    first = partition(model, lay, OneFOneB(stages=4, microbatches=8))
    first[0].clear()                                # a caller's edit to its lists
    again = partition(model, lay, OneFOneB(stages=4, microbatches=8))
    assert [len(chunks) for chunks in again] == [1, 1, 1, 1]
    assert again == partition(model, replace(lay, dp=8, zero_stage=1), OneFOneB(stages=4, microbatches=8))
