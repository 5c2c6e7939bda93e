"""The Megatron-Bridge MoE rows run their container's recipe (bench/data/megatron_bridge_moe_recipes.csv,
read by bench/validate_training.py): each field below is what the CSV's cell says, checked on rows whose
recipe differs in each respect."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.validate_training import bridge_moe_recipe

ROW = pd.read_csv(Path(__file__).resolve().parents[1] / "bench" / "data" / "megatron_bridge_moe_recipes.csv").set_index(
    "csv_row")


def test_a_partial_cuda_graph_and_the_alltoall_dispatcher():
    # 26.02 Qwen3-30B-A3B on 8 B200: micro-batch 1, alltoall, TE graphs over the router and the permute
    par, tr, flag = bridge_moe_recipe(ROW.loc[41])
    assert (par["tp"], par["pp"], par["ep"], par["virtual_stages"]) == (1, 1, 8, 1)
    assert tr["micro_batch"] == 1 and tr["global_batch"] == 512
    assert tr["moe_dispatcher"] == "alltoall" and not tr["moe_a2a_overlap"]
    assert tr["cuda_graph_scope"] == ["moe_router", "moe_preprocess"]
    assert "recompute" not in tr and flag == ""


def test_a_token_drop_row_is_padded_to_capacity_under_a_full_layer_graph():
    _, tr, _ = bridge_moe_recipe(ROW.loc[65])      # 25.09 Qwen3-30B-A3B token drop, B200
    assert tr["moe_capacity_factor"] == 1.0 and tr["moe_pad_to_capacity"] is True
    assert tr["cuda_graph_scope"] == ["full"]


def test_the_recipes_layout_wins_and_the_row_says_so():
    # 26.02.01 Qwen3-30B H100: the table repeats 26.02's PP2 VP12 EP8; the recipe (and the time) is PP1 EP16
    par, tr, flag = bridge_moe_recipe(ROW.loc[33])
    assert (par["pp"], par["ep"], par["virtual_stages"], par["schedule"]) == (1, 16, 1, "1f1b")
    assert tr["moe_dispatcher"] == "flex"
    assert flag.startswith("recipe layout, table says mbs1 gbs1024 tp1 pp2 vp12 ep8")


def test_overlap_recompute_and_tp_comm_overlap():
    # 26.04.01 DeepSeek-V3 B200: DeepEP with EP overlap, TE graphs over attention, router and permute,
    # selective recompute of [mla_up_proj, mlp]: mlp runs, mla_up_proj is flagged
    _, tr, flag = bridge_moe_recipe(ROW.loc[7])
    assert tr["moe_dispatcher"] == "flex" and tr["moe_a2a_overlap"] is True
    assert tr["cuda_graph_scope"] == ["attn", "moe_router", "moe_preprocess"]
    assert tr["recompute"] == "selective" and tr["recompute_modules"] == ["mlp"]
    assert flag == "recompute of mla_up_proj not modelled"
    # 25.09 Qwen3-235B H100 token drop: TP2 with TP comm overlap on; every later H100 235B row has it off
    assert bridge_moe_recipe(ROW.loc[74])[0]["tp_comm_overlap"] is True
    assert bridge_moe_recipe(ROW.loc[13])[0]["tp_comm_overlap"] is False
