"""Memory model against the ZeRO paper and Korthikanti et al. 2022 Figure 1, through the memory
plan the simulator uses (schedule -> partition -> memory_plan)."""

import csv
from pathlib import Path

import pytest

from simulator.catalog import get_model
from simulator.costmodel.layout import Layout
from simulator.costmodel.memory import GIB, model_state_bytes
from simulator.training.layout import partition
from simulator.training.memory_plan import memory_plan
from simulator.training.schedules import OneFOneBConfig, make_schedule

REF = Path(__file__).resolve().parents[1] / "bench" / "data"   # committed with its provenance (bench/data/README.md)


@pytest.mark.parametrize("stage,gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_example(stage, gb):
    w, g, o = model_state_bytes(7.5e9, zero_stage=stage, dp=64, grad_bytes=2)
    assert (w + g + o) / 1e9 == pytest.approx(gb, abs=0.06)


def test_distributed_optimizer_is_6_plus_12_over_dp():
    w, g, o = model_state_bytes(1.0, zero_stage=1, dp=8, grad_bytes=4)
    assert w + g + o == pytest.approx(6 + 12 / 8)


# Korthikanti 2022, Table 3 / Figure 1: TP 8; pipeline 1, 8, 35, 64; interleaving v=3 where used
FIG1 = {"22B": ("megatron-22b", 4, 1, 1), "175B": ("gpt3-175b", 1, 8, 3),
        "530B": ("megatron-529.6b", 1, 35, 3), "1T": ("megatron-1t", 1, 64, 1)}


def _activations(model, lay, mb, microbatches):
    """Stored activations on the first pipeline stage, as the simulator plans them."""
    schedule = make_schedule(OneFOneBConfig(pp=lay.pp, virtual_stages=lay.virtual_stages), microbatches)
    return memory_plan(model, lay, mb, 2048, schedule, partition(model, lay, schedule)).stages[0].activations


def _fig1_rows():
    path = REF / "korthikanti2022_fig1_memory_per_gpu.csv"
    return list(csv.DictReader(path.open()))


def test_korthikanti_fig1_within_5pct():
    for row in _fig1_rows():
        name, mb, pp, v = FIG1[row["model"]]
        m = get_model(name)
        layers = m.layers // pp
        states = sum(model_state_bytes(m.layer_params() * layers / 8, zero_stage=0, dp=1, grad_bytes=4)) / GIB
        assert states == pytest.approx(float(row["params_optimizer_gib"]), rel=0.05), row
        for rec, sp, col in (("none", False, "activations_no_recompute_gib"),
                             ("selective", True, "activations_seqpar_selective_gib")):
            lay = Layout(tp=8, pp=pp, virtual_stages=v, recompute=rec, sequence_parallel=sp, flash_attention=False)
            act = _activations(m, lay, mb, microbatches=10_000) / GIB
            assert act == pytest.approx(float(row[col]), rel=0.05), (row["model"], rec)


def test_flash_attention_and_full_recompute_shrink_activations():
    m = get_model("gpt3-175b").model_copy(update={"layers": 1})   # one layer, one micro-batch
    base = Layout(tp=8, flash_attention=False)
    a_none = _activations(m, base, 1, 1)
    a_flash = _activations(m, Layout(tp=8, flash_attention=True), 1, 1)
    a_full = _activations(m, Layout(tp=8, recompute="full"), 1, 1)
    sbh = 2048 * 12288
    assert a_none == pytest.approx(sbh * (10 + 24 / 8 + 5 * 96 * 2048 / (12288 * 8)))
    assert a_flash == pytest.approx(sbh * (10 + 24 / 8))
    assert a_full == pytest.approx(2 * sbh)
