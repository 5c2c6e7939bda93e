"""One description of a layer: LayerSpec plain data, models whose layers differ, and the costs that
read it (hand-derived values)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.catalog import get_model
from simulator.errors import CapsimError
from simulator.layers import AttentionSpec, LayerSpec, MLPSpec, group_layers

ROOT = Path(__file__).resolve().parents[1]

# 4 layers: 1 dense (MLP width 128), then 3 MoE (4 experts of width 32, top-2, one shared expert)
MIXED = {"name": "mixed", "layers": 4, "hidden": 64, "heads": 4, "kv_heads": 2, "ffn_hidden": 32,
         "activation": "swiglu", "norm": "rmsnorm", "qkv_bias": False, "linear_bias": False, "vocab": 100,
         "position": "rope", "tie_embeddings": False,
         "moe": {"num_experts": 4, "top_k": 2, "first_dense_layers": 1, "dense_ffn_hidden": 128, "shared_experts": 1}}


def test_importing_layers_loads_no_pydantic_numpy_or_pandas():
    code = ("import sys, simulator.layers; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'numpy', 'pandas', 'yaml'}); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_layer_spec_round_trips_as_plain_data():
    spec = get_model(MIXED).layer_specs()[1]
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d                       # plain JSON-able data
    assert LayerSpec.from_dict(d) == spec
    with pytest.raises(ValueError, match="layer.mlp: unknown key 'expert'"):
        LayerSpec.from_dict({**d, "mlp": {**d["mlp"], "expert": 3}})
    with pytest.raises(ValueError, match="window"):
        AttentionSpec(4, 4, 16, causal=False, window=8)


def test_mixed_dense_and_moe_layers_count_by_hand():
    m = get_model(MIXED)
    dense, moe = m.layer_specs()[0], m.layer_specs()[1]
    assert not dense.mlp.is_moe and all(s is moe for s in m.layer_specs()[1:])
    # head_dim 16: q 64, kv 32; attention 2·64·64 + 2·64·32 = 12,288; two RMSNorms 128
    # dense MLP 3·64·128 = 24,576; expert 3·64·32 = 6,144 (4 routed + 1 shared) + router 64·4 = 256
    assert dense.params() == 12_288 + 24_576 + 128 == 36_992
    assert moe.params() == 12_288 + 5 * 6_144 + 256 + 128 == 43_392
    # embedding 100·64, final norm 64 + untied head 6,400
    assert m.total_params() == 6_400 + 36_992 + 3 * 43_392 + 6_464 == 180_032
    # a token skips 2 of the 4 routed experts in each MoE layer
    assert m.active_params() == 180_032 - 3 * 2 * 6_144
    # tensors: 2 RMSNorms + fused QKV + output + 3 SwiGLU matrices; MoE: 5 such MLPs and the router
    assert [s.tensors() for s in (dense, moe)] == [2 + 2 + 3, 2 + 2 + 5 * 3 + 1]
    assert m.kv_cache_bytes_per_token(2) == 2 * 4 * 32 * 2
    with pytest.raises(ValueError, match="several kinds"):
        m.layer_params()
    assert m.layer_params(0) == 36_992 and m.layer_params(3) == 43_392


def test_moe_every_second_layer_and_a_sliding_pattern():
    m = get_model({**MIXED, "layers": 8, "moe": {"num_experts": 4, "top_k": 1, "layer_freq": 2},
                   "sliding_window": 16, "layer_types": ["sliding", "sliding", "sliding", "full"]})
    specs = m.layer_specs()
    assert [s.mlp.is_moe for s in specs] == [False, True] * 4           # layers 1, 3, 5, 7 (Llama 4's rule)
    assert [s.attention.window for s in specs] == [16, 16, 16, None] * 2
    assert [s.mlp.ffn_hidden for s in specs] == [32] * 8                # no dense_ffn_hidden: the model's width


@pytest.mark.parametrize("extra,key", [
    ({"layer_types": ["full", "sliding", "full"]}, "layer_types has 3 entries"),
    ({"layer_types": ["sliding", "full"]}, "sliding_window is not set"),
    ({"layer_types": ["full", "local"], "sliding_window": 8}, "layer_types.1: Input should be 'full' or 'sliding'"),
    ({"moe": {"num_experts": 4, "top_k": 2, "first_dense_layers": 4}}, "moe.first_dense_layers=4"),
    ({"architecture": "encoder", "sliding_window": 8}, "sliding_window=8 needs a causal"),
])
def test_bad_layer_combinations_name_the_key(extra, key):
    with pytest.raises(CapsimError, match=key):
        get_model({**MIXED, **extra})


def test_grouping_is_per_kind_not_per_layer():
    m = get_model({**MIXED, "layers": 48, "moe": {"num_experts": 4, "top_k": 1, "layer_freq": 2},
                   "sliding_window": 16, "layer_types": ["sliding"] * 5 + ["full"]})
    groups = m.layer_groups()
    # sliding/dense, sliding/MoE, full/MoE (a full layer is every 6th, always odd-numbered from 1)
    assert len(groups) == 3 and sum(n for _, n in groups) == 48
    assert [n for _, n in group_layers(m.layer_specs(), 6, 12)] == [3, 2, 1]
    assert get_model("llama-3.1-8b").layer_groups() == [(get_model("llama-3.1-8b").layer_specs()[0], 32)]


def test_stage_costs_each_kind_of_layer_once(monkeypatch):
    import simulator.training.work as tr
    from simulator import parse_scenario, simulate_training

    calls: list[LayerSpec] = []
    real = tr.layer_ops

    def counted(spec, *args):
        calls.append(spec)
        return real(spec, *args)

    monkeypatch.setattr(tr, "layer_ops", counted)
    model = {**MIXED, "layers": 48, "moe": {"num_experts": 4, "top_k": 1, "layer_freq": 2},
             "sliding_window": 16, "layer_types": ["sliding"] * 5 + ["full"]}
    sc = parse_scenario({"kind": "training", "model": model, "hardware": "h100-sxm",
                         "cluster": {"nodes": 1, "gpus_per_node": 4}, "parallelism": {"pp": 4},
                         "training": {"seq_len": 64, "global_batch": 8, "micro_batch": 1}})
    assert simulate_training(sc)["iteration_time_s"] > 0
    assert len(calls) == 3                                  # 3 kinds over 4 stages of 12 layers


def test_expert_parallel_stage_params_by_hand():
    from simulator import parse_scenario
    from simulator.costmodel.layout import Layout
    from simulator.training.layout import partition, step_schedule

    m = get_model(MIXED)
    sc = parse_scenario({"kind": "training", "model": MIXED, "hardware": "h100-sxm",
                         "cluster": {"nodes": 1, "gpus_per_node": 2}, "parallelism": {"ep": 2},
                         "training": {"seq_len": 64, "global_batch": 2, "micro_batch": 1}})
    lay = Layout(dp=2, ep=2)
    chunks = partition(m, lay, step_schedule(sc, 1, lay.dp))
    # each rank holds half of the 4 routed experts of the 3 MoE layers; dense layers, shared experts whole
    assert [sum(ch.params for ch in stage) for stage in chunks] == [180_032 - 3 * 2 * 6_144]


def test_sliding_window_training_attention_flops_by_hand():
    from simulator.costmodel.layout import Layout
    from simulator.costmodel.transformer import layer_ops
    from simulator.hardware import get_profile

    hw = get_profile("h100-sxm")
    att = AttentionSpec(32, 8, 128, qkv_bias=False, window=1024, rope=True)
    spec = LayerSpec(4096, att, MLPSpec(14336, "swiglu"), "rmsnorm", False)
    S, W = 4096, 1024
    ops = layer_ops(spec, hw, Layout(tp=2), 1, S)
    fwd = next(o for o in ops.fwd if o.name == "attention")
    bwd = next(o for o in ops.bwd if o.name == "attention_bwd")
    # 16 heads per TP rank; a causal window of W keys: S·W − W²/2 query-key pairs, 4·d FLOPs each
    assert fwd.flops == 4 * 16 * (S * W - W * W / 2) * 128
    assert bwd.flops == 2.5 * fwd.flops
    full = layer_ops(full_spec(spec), hw, Layout(tp=2), 1, S)
    assert next(o for o in full.fwd if o.name == "attention").flops == 4 * 16 * S * S / 2 * 128
    # a window at least the sequence is full attention; unfused attention masks, it does not skip
    assert layer_ops(spec, hw, Layout(tp=2), 1, W) == layer_ops(full_spec(spec), hw, Layout(tp=2), 1, W)
    unfused = Layout(tp=2, flash_attention=False)
    assert layer_ops(spec, hw, unfused, 1, S) == layer_ops(full_spec(spec), hw, unfused, 1, S)


def full_spec(spec: LayerSpec) -> LayerSpec:
    a = spec.attention
    return LayerSpec(spec.hidden, AttentionSpec(a.heads, a.kv_heads, a.head_dim, a.qkv_bias, a.qk_norm, a.causal, None,
                                                a.rope), spec.mlp, spec.norm, spec.linear_bias)


def test_backward_attention_flops_and_cost_table():
    from simulator import load_scenario
    from simulator.api import layer_cost_table

    sc = load_scenario(ROOT / "examples/train_gpt3_175b.yaml", ["training.flash_attention=true"])
    rows = {(r["pass"], r["op"]): r for r in layer_cost_table(sc)}
    fwd, bwd = rows[("forward", "attention")], rows[("backward", "attention_bwd")]
    # TFLOP/s × time = FLOPs: the backward does 2.5× the forward's work
    assert bwd["tflops"] * bwd["time_us"] == pytest.approx(2.5 * fwd["tflops"] * fwd["time_us"], rel=1e-12)
    assert all(r["layers"] == "0-95" for r in rows.values())


def test_mfu_counts_forward_flops_three_times():
    from simulator import load_scenario
    from simulator.costmodel.transformer import head_ops, layer_ops
    from simulator.hardware import get_profile
    from simulator.training.layout import resolve_layout
    from simulator.training.simulate import plan_step

    sc = load_scenario(ROOT / "examples/train_gpt3_175b.yaml", ["training.flash_attention=true"])
    m, hw = get_model(sc.model), get_profile(sc.hardware)
    lay, mb = resolve_layout(sc, m, hw)
    sm = plan_step(m, hw, lay, mb, sc)
    layer, head = layer_ops(m, hw, lay, mb, 2048), head_ops(m, hw, lay, mb, 2048)
    per_rank = (96 * sum(o.flops for o in layer.fwd) + sum(o.flops for o in head.fwd)) / lay.pp
    assert sm.work.model_flops_per_gpu == pytest.approx(3 * per_rank * sm.schedule.microbatches, rel=1e-12)


def test_mixed_model_cost_table_lists_each_kind():
    from simulator import parse_scenario
    from simulator.api import layer_cost_table

    sc = parse_scenario({"kind": "training", "model": MIXED, "hardware": "h100-sxm",
                         "cluster": {"nodes": 1, "gpus_per_node": 1},
                         "training": {"seq_len": 64, "global_batch": 1, "micro_batch": 1}})
    rows = layer_cost_table(sc)
    assert {r["layers"] for r in rows} == {"0", "1-3"}
    assert {r["op"] for r in rows if r["layers"] == "0"} >= {"fc1", "fc2"}
    assert {r["op"] for r in rows if r["layers"] == "1-3"} >= {"router", "expert_fc1", "shared_fc1"}
