"""Megatron-Core's H100 weak-scaling rows (bench/megatron_scaling.py): the measured seconds come from
the table's TFLOP/s through Megatron's own FLOP count, and each row runs as the README states it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.megatron_scaling import doc, megatron_flops

DATA = Path(__file__).resolve().parents[1] / "bench" / "data" / "megatron_lm_h100_weak_strong_scaling.csv"


def test_megatrons_flop_count_by_hand():
    # 1.7B row: 12·B·s·l·h²·((1 + 1 + s/h) + 4 + V/(2·l·h)) with B 192, s 4096, l 24, h 2048, V 131072
    # = 12·192·4096·24·2048² · (2 + 2 + 4 + 131072/98304) = 9.50e14 · 9.333 = 8.866e15 FLOPs
    f = megatron_flops(batch=192, seq=4096, layers=24, hidden=2048, vocab=131072)
    assert f == pytest.approx(12 * 192 * 4096 * 24 * 2048**2 * (8 + 4 / 3))
    assert f == pytest.approx(8.8665e15, rel=1e-4)
    # at 408.8 TFLOP/s on each of 48 GPUs that is a 0.4519 s step; the table's MFU (41%) is 408.8 / 989
    assert f / (408.8e12 * 48) == pytest.approx(0.4519, abs=1e-4)


def test_each_row_runs_with_what_the_readme_states():
    rows = list(pd.read_csv(DATA).itertuples())
    small, big = doc(rows[0]), doc(rows[8])
    assert small["parallelism"] | {"placement": None} == {"tp": 1, "pp": 1, "dp": 48, "zero_stage": 1,
                                                          "sequence_parallel": False, "tp_comm_overlap": False,
                                                          "placement": None}
    assert big["parallelism"]["tp_comm_overlap"] and big["parallelism"]["sequence_parallel"]   # --tp-comm-overlap
    assert big["parallelism"]["pp"] * big["parallelism"]["tp"] * big["parallelism"]["dp"] == 6144
    t = big["training"]
    assert t["overlap_grad_reduce"] and t["overlap_param_gather"] and t["precision"] == "bf16"
    assert (t["seq_len"], t["global_batch"], big["model"]["vocab"], big["model"]["layers"]) == (4096, 3072, 131072, 112)


def test_nemos_flop_count_of_that_time_counts_full_attention():
    from bench.nemo_long_sequence import LLAMA2_7B, nemo_flops_per_token

    # NeMo 24.07's own table: Llama 2 7B at 4K, 767 TFLOP/s at 16,634 tokens/s = 4.611e10 per token;
    # 32·4096²·(12 + 12 + 18·11008/4096 + 12·4096/4096 + 6·32000/(32·4096)) = 4.609e10 (causal: 4.287e10)
    per_token = nemo_flops_per_token(seq=4096, **LLAMA2_7B)
    assert per_token == pytest.approx(767e12 / 16634, rel=1e-3)
    # at 1M tokens the attention term is 12·s/h = 3,072 of the per-layer h² factor (vs 73.8 for the rest)
    assert nemo_flops_per_token(seq=2**20, **LLAMA2_7B) / per_token == pytest.approx((73.84 + 3072) / 85.84, rel=1e-3)
