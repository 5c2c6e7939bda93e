"""MoE serving (issue 20 item 5): expert parallelism and attention DP, the all-to-all, expert skew,
MLA's compressed KV cache, windowed layers, and the config.json families, against hand-derived values."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import parse_scenario, simulate_serving
from simulator.catalog import get_model
from simulator.costmodel.attention_variants import windowed_prefill_work
from simulator.costmodel.collectives import Group, collective_time
from simulator.costmodel.inference import AttentionFit, InferenceModel, linear_layer_ops, measured_attention, measured_mla
from simulator.costmodel.moe import a2a_time, all_to_all_bytes, check_layout, max_skew, routed_expert_ops
from simulator.errors import CapsimError
from simulator.hardware import get_profile
from simulator.precision import get_format

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "simulator" / "catalog" / "hf_configs"


# ---- config.json families ----------------------------------------------------------------------------
def test_deepseek_r1_config_matches_the_published_sizes():
    m = get_model("deepseek-r1")
    # DeepSeek-V3 technical report (arXiv:2412.19437) §1: 671B total parameters, 37B activated per token
    assert m.total_params() == pytest.approx(671e9, rel=0.002)
    assert m.active_params() == pytest.approx(37e9, rel=0.02)
    kinds = [(s.mlp.is_moe, s.attention.is_mla, n) for s, n in m.layer_groups()]
    assert kinds == [(False, True, 3), (True, True, 58)]          # first_k_dense_replace = 3 of 61 layers


def test_family_sizes_match_their_model_cards():
    # gpt-oss model card: 116.8B total; Llama 4 Maverick: 400B total, 17B active; Qwen3-235B-A22B: 235B / 22B
    assert get_model("gpt-oss-120b").total_params() == pytest.approx(116.8e9, rel=0.003)
    assert get_model("llama-4-maverick").total_params() == pytest.approx(400e9, rel=0.01)
    assert get_model("llama-4-maverick").active_params() == pytest.approx(17e9, rel=0.02)
    assert get_model("qwen3-235b-a22b").total_params() == pytest.approx(235e9, rel=0.003)
    assert get_model("qwen3-235b-a22b").active_params() == pytest.approx(22e9, rel=0.02)
    oss = get_model("gpt-oss-120b")
    assert [(s.attention.window, n) for s, n in oss.layer_groups()] == [(128, 18), (None, 18)]
    mav = get_model("llama-4-maverick")     # every 2nd layer MoE, every 4th layer global (NoPE)
    assert [s.mlp.is_moe for s in mav.layer_specs()[:4]] == [False, True, False, True]
    assert [s.attention.window for s in mav.layer_specs()[:4]] == [8192, 8192, 8192, None]


@pytest.mark.parametrize(("file", "says"), [
    ("Qwen--Qwen3.5-397B-A17B.json", "'qwen3_5_moe' is not expressible: Qwen3.5 mixes Gated DeltaNet"),
    ("nvidia--GLM-5-NVFP4.json", "'glm_moe_dsa' is not expressible: GLM-5 uses DeepSeek Sparse Attention"),
])
def test_families_capsim_cannot_express_are_refused_by_name(file: str, says: str):
    with pytest.raises(CapsimError, match=says):
        get_model(str(CONFIGS / file))


# ---- MLA ---------------------------------------------------------------------------------------------
def test_mla_kv_bytes_per_token_are_the_latent_and_do_not_shard_over_tp():
    m = get_model("deepseek-r1")
    # (kv_lora_rank 512 + qk_rope_head_dim 64) elements × 61 layers, one byte each in fp8
    assert m.kv_cache_bytes_per_token(1.0) == (512 + 64) * 61 == 35136
    hw = get_profile("h200")
    for tp in (1, 8):
        im = InferenceModel(model=m, hw=hw, tp=tp, precision="fp8-block", kv_precision="fp8")
        assert im.kv_bytes_per_token_per_gpu() == 35136          # every TP rank keeps the whole latent


def test_mla_decode_roofline_per_cached_token():
    # one GPU, 128 heads: the absorbed decode reads 576 elements (bf16: 1152 B) and does 2·128·576 + 2·128·512
    # FLOPs per cached token; the slower of the two bounds, per layer
    m, hw = get_model("deepseek-r1"), get_profile("a100-sxm-40gb").spec_only()   # the roofline
    im = InferenceModel(model=m, hw=hw, tp=1, precision="bf16", kv_precision="bf16")
    rate = hw.peak_flops("bf16") * hw.gemm_max("bf16") * hw.efficiency.attention_fwd
    flops = 2 * 128 * 576 + 2 * 128 * 512
    from simulator.costmodel.ops import memory_bound_time
    per_byte = memory_bound_time(hw, 2**30) / 2**30
    assert im.decode_coef == pytest.approx(61 * max(576 * 2 * per_byte, flops / rate))


def test_mla_attention_from_the_engines_mla_tables():
    """TensorRT-LLM's and SGLang's MLA kernels are measured (context_mla, generation_mla): DeepSeek's layers read
    them, per cached token and per query-key pair; vLLM's MLA tables are whole modules (projections included),
    so its layers keep the roofline and say so in the coverage."""
    m = get_model("deepseek-r1")
    hw = get_profile("b200").with_engine("trtllm")
    im = InferenceModel(model=m, hw=hw, tp=1, precision="nvfp4", kv_precision="fp8")
    assert im.attention_measured == {"prefill": 61, "decode": 61}
    fit = measured_mla(hw, 128, "fp8")
    assert fit.decode is not None and fit.prefill is not None
    assert im.decode_coef == pytest.approx(61 * fit.decode[1]) and im.decode_fixed == pytest.approx(61 * fit.decode[0])
    kb = hw.kernels
    assert kb is not None
    def gen(b: int, c: int) -> float:
        t = kb.generation_mla(dtype="bf16", kv_dtype="fp8", heads=128, batch=b, kv_len=c, count=False)
        assert t is not None
        return t
    # the line (floor + median slope, as for the other tables) reads the decode table in the middle of its range;
    # the kernel's cost per token keeps falling with more work (concave), so at the largest it reads high
    assert fit.decode[0] + fit.decode[1] * 64 * 4096 == pytest.approx(gen(64, 4096), rel=0.1)
    assert 1.0 < (fit.decode[0] + fit.decode[1] * 128 * 32768) / gen(128, 32768) < 1.4
    # prefill: with the workload's prompt length the slope is the table's own at that length (as for the others)
    t8k = kb.context_mla(dtype="bf16", kv_dtype="fp8", heads=128, batch=1, seq=8192, count=False)
    at8k = measured_mla(hw, 128, "fp8", prompt_tokens=8192).prefill
    assert t8k is not None and at8k is not None
    assert at8k[0] + at8k[1] * 8192 * 8193 / 2 == pytest.approx(t8k)
    im8k = InferenceModel(model=m, hw=hw, tp=1, precision="nvfp4", kv_precision="fp8", prompt_tokens=8192)
    assert im8k.prefill_coef == pytest.approx(61 * at8k[1])
    vllm = get_profile("b200").with_engine("vllm")
    assert measured_mla(vllm, 128, "fp8") == AttentionFit(None, None)
    assert vllm.kernels is not None and any(r["kind"] == "generation_mla" for r in vllm.kernels.coverage.rows())


# ---- all-to-all, EP, skew ---------------------------------------------------------------------------
def test_all_to_all_bytes_by_hand():
    # 256 tokens × hidden 7168 × 2 B × top-8 × 7/8 leave a rank of an 8-way EP group
    assert all_to_all_bytes(256, 7168, 8, 8) == 256 * 7168 * 2 * 8 * 7 / 8 == 25_690_112
    assert all_to_all_bytes(256, 7168, 8, 1) == 0


def test_all_to_all_in_node_and_across_nodes_from_the_links():
    hw = get_profile("a100-sxm-40gb").spec_only()   # no measured tables; NVLink 230 GB/s bus, HDR IB 23 GB/s
    assert hw.kernels is None
    s = 256 * 7168 * 2 * 8                        # one rank's buffer: every token once per routed expert
    intra, inter = hw.intra_node, hw.inter_node
    # 8 ranks in one node: the ring's (n-1)/n of the buffer over NVLink plus 7 step latencies
    assert a2a_time(hw, 256, 7168, 8, 8) == pytest.approx(7 / 8 * s / (intra.busbw_gb_s * 1e9)
                                                           + 7 * intra.step_latency_us * 1e-6)
    # 16 ranks over 2 nodes: 8/16 of it crosses InfiniBand, the node's share stays on NVLink
    within = 7 / 8 * (s * 8 / 16) / (intra.busbw_gb_s * 1e9) + 7 * intra.step_latency_us * 1e-6
    across = s * 8 / 16 / (inter.busbw_gb_s * 1e9) + 1 * inter.step_latency_us * 1e-6
    assert a2a_time(hw, 256, 7168, 8, 16) == pytest.approx(within + across)
    assert a2a_time(hw, 256, 7168, 8, 16) == collective_time(hw, "all_to_all", s, Group(16, 8))


def test_skew_costs_the_busiest_rank_as_a_balanced_run_of_skew_times_the_tokens():
    m, hw = get_model("deepseek-r1"), get_profile("a100-sxm-40gb").spec_only()
    moe = next(s for s, _ in m.layer_groups() if s.mlp.is_moe)
    wb = get_format("bf16").weight_bytes

    def experts(tokens: float, skew: float) -> float:
        ops = routed_expert_ops(moe, hw, tokens=tokens, moe_tp=1, ep=8, attention_dp=8, skew=skew,
                                precision="bf16", weight_bytes=wb)
        return sum(o.time for o in ops if o.name.startswith("expert_"))

    # the roofline's pairs and per-expert rows scale with skew; touched experts follow the tokens routed
    assert experts(4096, 1.5) > experts(4096, 1.0)
    assert max_skew(8, 8, 256) == 8.0 and max_skew(8, 2, 8) == 4.0   # 8 ranks; top-2 of 8: 1 expert per rank
    dispatch = [o for o in routed_expert_ops(moe, hw, tokens=4096, moe_tp=1, ep=8, attention_dp=8, skew=1.5,
                                             precision="bf16", weight_bytes=wb) if o.name == "moe_dispatch"]
    assert dispatch[0].time == pytest.approx(a2a_time(hw, 512, 7168, 8, 8, 1.5))


def test_layout_checks_name_the_key():
    m = get_model("deepseek-r1")
    with pytest.raises(CapsimError, match=r"replica.ep=3 must divide the replica's tp × attention_dp = 1 × 8"):
        check_layout(m.name, m.layer_groups(), tp=1, ep=3, attention_dp=8, skew=1.0)
    with pytest.raises(CapsimError, match="replica.expert_skew=9: .* between 1 \\(balanced\\) and 8"):
        check_layout(m.name, m.layer_groups(), tp=1, ep=8, attention_dp=8, skew=9.0)
    dense = get_model("llama-3.1-8b")
    with pytest.raises(CapsimError, match="has no routed experts"):
        check_layout(dense.name, dense.layer_groups(), tp=1, ep=1, attention_dp=2, skew=1.0)


def test_ep_weight_memory_per_gpu_by_hand():
    m = get_model("deepseek-r1")
    routed = 58 * 256 * 3 * 7168 * 2048                          # 58 MoE layers × 256 experts × 3 matrices
    assert sum(s.routed_params() * n for s, n in m.layer_groups()) == routed
    emb = m.embedding_params() + m.head_params()                  # 16-bit in every quantized checkpoint
    rest = m.total_params() - routed - emb
    im = InferenceModel(model=m, hw=get_profile("h200"), tp=1, attention_dp=8, ep=8, precision="fp8")
    assert im.weight_bytes_per_gpu() == pytest.approx(rest * 1.0 + emb * 2.0 + routed * 1.0 / 8)
    tep = InferenceModel(model=m, hw=get_profile("h200"), tp=8, ep=8, precision="fp8")
    assert tep.weight_bytes_per_gpu() == pytest.approx((rest * 1.0 + emb * 2.0) / 8 + routed * 1.0 / 8)


def test_attention_dp_holds_one_kv_pool_per_group():
    m, hw = get_model("deepseek-r1"), get_profile("h200")
    one = InferenceModel(model=m, hw=hw, tp=1, attention_dp=8, ep=8, precision="fp8", kv_precision="fp8")
    tokens, mem = one.kv_capacity_tokens(kv_fraction=0.9, max_tokens=8 * 1024, max_seqs=8 * 64)
    free = mem["capacity_gib"] - mem["weights_gib"] - mem["workspace_gib"] - mem["runtime_gib"]
    assert tokens == int(0.9 * free * 2**30 // 35136) * 8


def test_dep_without_dp_tokens_charges_no_all_to_all_and_tep_one_all_reduce():
    m, hw = get_model("qwen3-235b-a22b"), get_profile("h200")
    moe = m.layer_specs()[0]
    tep = {o.name for o in linear_layer_ops(moe, hw, tp=8, tokens=256, precision="fp8", ep=8)}
    dep = {o.name for o in linear_layer_ops(moe, hw, tp=1, tokens=256, precision="fp8", ep=8, attention_dp=8)}
    assert "moe_dispatch" not in tep and "tp_allreduce_mlp" in tep
    assert {"moe_dispatch", "moe_combine"} <= dep and "tp_allreduce_mlp" not in dep


# ---- windowed layers ----------------------------------------------------------------------------------
def test_windowed_prefill_work_by_hand():
    # a 1000-token prompt in a 128-token window: at most 128 keys per query, 128,000 pairs (exact sum
    # Σ min(i, 128) = 128·129/2 + 872·128 = 119,872; the bound is 7% above it), against 500,500 in full
    assert windowed_prefill_work(1000 * 1001 / 2, 1000, 128) == 128_000
    assert windowed_prefill_work(100 * 101 / 2, 100, 128) == 5050          # shorter than the window: full


def test_gpt_oss_windowed_layers_in_time_and_memory():
    m, hw = get_model("gpt-oss-120b"), get_profile("b200")
    im = InferenceModel(model=m, hw=hw, tp=1, precision="nvfp4", kv_precision="fp8")
    # 18 full layers grow per token: 2 × 8 KV heads × 64 × 1 B = 1024 B each
    assert im.kv_bytes_per_token_per_gpu() == 36 * 1024                      # without a context: in full
    # 2048-token requests: the windowed layers keep 128 of each request's 2048 tokens
    assert im.kv_bytes_per_token_per_gpu(2048) == 18 * 1024 + 18 * 1024 * 128 / 2048
    assert im.kv_window_bytes_per_seq == 18 * 1024 * 128
    # the windowed layers' attention from the tables' window-128 rows (measured_attention ``window``), per windowed
    # unit of work: a decode sequence reads 128 keys, an 8k prompt does 8192 x 128 windowed pairs
    kb = hw.kernels
    assert kb is not None
    fit = measured_attention(hw, 64, 8, 64, "fp8", window=128)
    assert fit.decode is not None and fit.prefill is not None
    assert im.decode_window_per_seq == pytest.approx(18 * fit.decode[1] * 128)      # 18 windowed layers
    (per_pair, window), = im.prefill_windows
    assert window == 128 and per_pair == pytest.approx(18 * fit.prefill[1])
    for b, t in ((128, 4096), (256, 1024)):            # the line reads the table's window-128 decode rows
        table = kb.generation_attention(dtype="bf16", kv_dtype="fp8", heads=64, kv_heads=8, head_dim=64, batch=b,
                                        kv_len=t, window=128, count=False)
        assert table is not None and fit.decode[0] + fit.decode[1] * b * 128 == pytest.approx(table, rel=0.2)
    ctx = kb.context_attention(dtype="bf16", kv_dtype="fp8", heads=64, kv_heads=8, head_dim=64, batch=1, seq=8192,
                               window=128, count=False)
    assert ctx is not None and fit.prefill[0] + fit.prefill[1] * 8192 * 128 == pytest.approx(ctx, rel=0.15)
    # a windowed kernel costs far more per pair than the full one (the band's partial tiles): 4x and more here
    assert per_pair > 4 * im.prefill_coef


# ---- end to end --------------------------------------------------------------------------------------
def test_the_moe_example_runs_and_conserves_requests():
    from simulator.scenario import load_scenario

    sc = load_scenario(ROOT / "examples" / "serve_moe_ep.yaml", ["workload.duration_s=10"])
    r = simulate_serving(sc)
    assert r.completed + r.rejected + r.failed + r.in_flight == r.arrived and r.completed > 0
    assert r.gpus == 8 and r.memory_per_gpu_gib.weights_gib < 141


def test_fast_forward_exact_with_attention_dp_and_windows():
    sc = parse_scenario({
        "kind": "serving", "model": "gpt-oss-20b", "hardware": "h200", "precision": "w4a16",
        "replica": {"tp": 1, "attention_dp": 2, "ep": 2, "batching": "continuous", "max_num_seqs": 16,
                    "max_batched_tokens": 2048},
        "workload": {"arrival": {"process": "poisson", "rate_rps": 20.0, "requests": 80},
                     "prompt_tokens": {"dist": "fixed", "value": 300}, "output_tokens": {"dist": "fixed", "value": 60}},
        "pricing": {"usd_per_gpu_hour": 1.0}, "seed": 3})
    fast, slow = simulate_serving(sc), simulate_serving(sc, fast_forward=False)
    cols = ["arrival_s", "ttft_s", "e2e_s", "tpot_s", "status"]
    assert fast.completed == 80 and fast.requests[cols].equals(slow.requests[cols])
