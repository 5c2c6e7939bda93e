"""The training stack's kernel choices (issue 17): the attention kernel's generation, dropout, the
loss kernel, and a GPU that reads a sibling's measured tables. Values by hand from the shapes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simulator.catalog import get_model
from simulator.costmodel.layout import Layout
from simulator.costmodel.memory import activation_bytes_per_layer
from simulator.costmodel.ops import FLASH1_FRACTION_OF_PEAK, flash_attention, gemm
from simulator.costmodel.transformer import PassOps, head_ops, layer_ops
from simulator.errors import CapsimError
from simulator.hardware import get_profile
from simulator.scenario import parse_scenario
from simulator.training import simulate_training

ROOT = Path(__file__).resolve().parents[1]


def test_flash1_runs_at_the_fa2_papers_fa1_fractions_of_peak():
    hw = get_profile("a100-sxm-80gb")
    kw = dict(batch=2, heads=12, seq_q=8192, seq_kv=8192, head_dim=64, kv_heads=12, causal=True, precision="bf16")
    flops = 4.0 * 2 * 12 * 8192 * 8192 * 64 / 2          # causal: half the score matrix
    f1 = flash_attention(hw, "a", kernel="flash1", **kw)
    b1 = flash_attention(hw, "a", kernel="flash1", backward=True, **kw)
    assert f1.time == pytest.approx(flops / (312e12 * 0.40))
    assert b1.time == pytest.approx(2.5 * flops / (312e12 * 0.30))
    assert FLASH1_FRACTION_OF_PEAK == {"fwd": 0.40, "bwd": 0.30}
    f2 = flash_attention(hw, "a", **kw)
    assert f2.time < f1.time                             # never faster than FlashAttention-2
    with pytest.raises(ValueError, match="flash3"):
        flash_attention(hw, "a", kernel="flash3", **kw)


def _doc(**training: object) -> dict:
    model = {"name": "mpt-760m-like", "layers": 24, "hidden": 1536, "heads": 12, "ffn_hidden": 6144,
             "vocab": 50368, "max_positions": 2048}
    return {"kind": "training", "model": model, "hardware": "a100-sxm-80gb",
            "cluster": {"nodes": 1, "gpus_per_node": 8}, "parallelism": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3},
            "training": {"seq_len": 2048, "global_batch": 96, "micro_batch": 12, "grad_precision": "bf16",
                         **training}}


def test_flash1_without_fused_attention_is_refused_naming_both_keys():
    with pytest.raises(CapsimError, match=r"attention_kernel=flash1.*flash_attention is false"):
        simulate_training(parse_scenario(_doc(attention_kernel="flash1", flash_attention=False)))


def test_no_dropout_drops_its_two_masks_and_their_traffic():
    model = get_model("megatron-1.7b")
    s, b, h = 2048, 4, model.hidden
    with_d, without = Layout(), Layout(dropout=False)
    diff = activation_bytes_per_layer(model, with_d, b, s) - activation_bytes_per_layer(model, without, b, s)
    assert diff == pytest.approx(2 * s * b * h)            # Korthikanti's 2·sbh of 1-byte masks
    hw = get_profile("a100-sxm-80gb")
    bda = [o for o in layer_ops(model, hw, with_d, b, s).fwd if o.name == "bias_dropout_add"]
    bda0 = [o for o in layer_ops(model, hw, without, b, s).fwd if o.name == "bias_dropout_add"]
    eff = hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.elementwise      # memory_op's share of HBM
    # each of the two bias-dropout-adds reads/writes 3 16-bit tensors (+ a 1-byte mask with dropout)
    assert bda[0].time - bda0[0].time == pytest.approx(s * b * h * 1 / eff)


@pytest.mark.parametrize("name, dropout, fwd_bytes, bwd_bytes", [
    # per element of the [tokens, hidden] tensor, 16-bit: a norm reads x, writes y; back reads dy, x, writes dx
    ("norm1", True, 4, 6),
    # bias-dropout-add reads x and the residual, writes y and the 1-byte mask; back reads dy and the
    # mask and writes dx; without dropout the backward is the bias gradient's read of dy alone
    ("bias_dropout_add", True, 7, 5),
    ("bias_dropout_add", False, 6, 2),
])
def test_memory_kernels_backward_moves_what_it_reads_and_writes(name, dropout, fwd_bytes, bwd_bytes):
    model = get_model("megatron-1.7b")
    s, b, h = 2048, 4, model.hidden
    hw = get_profile("a100-sxm-80gb")
    ops = layer_ops(model, hw, Layout(dropout=dropout), b, s)
    eff = hw.efficiency
    kind_share = eff.memory_kernels.get("norm", eff.elementwise) if name.startswith("norm") else eff.elementwise
    share = hw.memory_bandwidth_tbps * 1e12 * kind_share
    latency = hw.efficiency.kernel_latency_us * 1e-6
    fwd = next(o for o in ops.fwd if o.name == name)
    bwd = next(o for o in ops.bwd if o.name == name + "_bwd")
    assert fwd.time - latency == pytest.approx(s * b * h * fwd_bytes / share)
    assert bwd.time - latency == pytest.approx(s * b * h * bwd_bytes / share)


def test_activation_backward_reads_its_input_and_gradient_and_writes_the_inputs_gradient():
    # GeLU (megatron-1.7b, up = ffn) 1.5 x its forward's bytes; SwiGLU (llama, up = 2 ffn) 5/3
    hw = get_profile("a100-sxm-80gb")
    latency = hw.efficiency.kernel_latency_us * 1e-6
    for model, ratio in ((get_model("megatron-1.7b"), 1.5), (get_model("llama-3.1-8b"), 5 / 3)):
        ops = layer_ops(model, hw, Layout(), 1, 2048)
        fwd = next(o for o in ops.fwd if o.name == "activation")
        bwd = next(o for o in ops.bwd if o.name == "activation_bwd")
        assert (bwd.time - latency) / (fwd.time - latency) == pytest.approx(ratio)


def test_a_kernel_class_reads_its_own_share_of_hbm():
    from simulator.costmodel.ops import memory_op
    hw = get_profile("a100-sxm-80gb")
    own = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(
        update={"memory_kernels": {**hw.efficiency.memory_kernels, "softmax": 0.8}})})
    nbytes = 1e9
    latency = hw.efficiency.kernel_latency_us * 1e-6
    bw = hw.memory_bandwidth_tbps * 1e12
    assert memory_op(hw, "softmax", nbytes).time - latency == pytest.approx(nbytes / (bw * hw.efficiency.elementwise))
    assert memory_op(own, "softmax_bwd", nbytes).time - latency == pytest.approx(nbytes / (bw * 0.8))
    assert memory_op(own, "attn_dropout", nbytes).time - latency == pytest.approx(nbytes / (bw * 0.8))
    assert memory_op(own, "norm1", nbytes).time == memory_op(hw, "norm1", nbytes).time
    # A100's norms at Vidur's measured in-model RMSNorm share, not the fitted elementwise one
    assert memory_op(hw, "norm1_bwd", nbytes).time - latency == pytest.approx(nbytes / (bw * 0.34))
    assert memory_op(hw, "add_norm1", nbytes).time == memory_op(hw, "residual_add", nbytes).time


def test_fused_cross_entropy_reads_the_16_bit_logits_once():
    model = get_model("megatron-1.7b")
    hw = get_profile("a100-sxm-80gb")
    T, v = 4 * 2048, model.vocab
    eff = hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.elementwise
    lat = hw.efficiency.kernel_latency_us * 1e-6

    def ce(lay: Layout) -> tuple[float, float]:
        ops = head_ops(model, hw, lay, 4, 2048)
        return (next(o.time for o in ops.fwd if o.name == "cross_entropy"),
                next(o.time for o in ops.bwd if o.name == "cross_entropy_bwd"))

    f, b = ce(Layout())
    ff, fb = ce(Layout(fused_cross_entropy=True))
    assert f - lat == pytest.approx(T * v * 8 / eff) and b - lat == pytest.approx(T * v * 8 / eff)
    assert ff - lat == pytest.approx(T * v * 2 / eff) and fb - lat == pytest.approx(T * v * 4 / eff)


def test_fused_cross_entropy_halves_the_logits_buffer():
    plain = simulate_training(parse_scenario(_doc()))
    fused = simulate_training(parse_scenario(_doc(cross_entropy="fused")))
    logits = 12 * 2048 * 50368                              # micro-batch x sequence x vocabulary
    delta_gib = plain.memory_per_gpu_gib.buffers - fused.memory_per_gpu_gib.buffers
    assert delta_gib == pytest.approx(logits * (8 - 4) / 2**30, rel=1e-3)


def test_a100_40gb_reads_the_80gb_tables_held_to_its_own_memory():
    a40, a80 = get_profile("a100-sxm-40gb"), get_profile("a100-sxm-80gb")
    assert a40.kernels is not None and a40.table_bandwidth_ratio == pytest.approx(2.039 / 1.555)
    assert a80.table_bandwidth_ratio == 1.0
    big = (8192, 6144, 1536)                                 # compute-bound: the same silicon's time
    assert gemm(a40, "g", *big, "bf16").time == gemm(a80, "g", *big, "bf16").time
    # a decode GEMM, bound by reading the weights: 1 FLOP per byte against the A100's 153
    m, n, k = 1, 8192, 8192
    assert gemm(a40, "g", m, n, k, "bf16").time == pytest.approx(gemm(a80, "g", m, n, k, "bf16").time * 2.039 / 1.555)
    m = 176     # between: compute 75.7 us; operands 140 MB, 90.0 us on the 40 GB, 68.7 us on the 80 GB
    traffic, flops = (m * k + k * n + m * n) * 2, 2 * m * n * k
    here, there = max(flops / 312e12, traffic / 1.555e12), max(flops / 312e12, traffic / 2.039e12)
    assert here / there == pytest.approx(traffic / 1.555e12 / (flops / 312e12))
    assert gemm(a40, "g", m, n, k, "bf16").time == pytest.approx(gemm(a80, "g", m, n, k, "bf16").time * here / there)


def test_every_llm_foundry_row_that_ran_fits():
    """Issue 17's target: every configuration that ran in the data fits in capsim's memory model."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import validate_training
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rows = validate_training.llmfoundry(ROOT / "bench" / "data" / "llmfoundry_mpt_training_throughput_a100.csv")
    assert len(rows) == 139
    assert (rows.error == "").all(), rows.loc[rows.error != "", ["model", "gpu", "gpus", "seq", "mb", "error"]]


# ---- FP8 as Transformer Engine runs it, TP communication overlap ---------------------------------
def _ops(lay: Layout, hw_name: str = "h100-sxm", spec_only: bool = False):
    hw = get_profile(hw_name)
    hw = hw.spec_only() if spec_only else hw
    return hw, layer_ops(get_model("llama-3.1-8b"), hw, lay, 1, 4096)


def test_fp8_runs_the_linear_layers_only_attention_and_head_stay_bf16():
    hw, f8 = _ops(Layout(precision="fp8"))
    _, bf = _ops(Layout(precision="bf16"))
    att = {o.name: o.time for o in f8.fwd if o.kind == "attention"}
    assert att == {o.name: o.time for o in bf.fwd if o.kind == "attention"}
    model = get_model("llama-3.1-8b")
    logits = [next(o.time for o in head_ops(model, hw, Layout(precision=p), 1, 4096).fwd if o.name == "logits")
              for p in ("fp8", "bf16")]
    assert logits[0] == logits[1]
    qkv = [next(o.time for o in ops.fwd if o.name == "qkv") for ops in (f8, bf)]
    assert qkv[0] < qkv[1]                                    # the linear layers do run FP8


def test_fp8_quantize_kernels_by_hand():
    """Spec-only H100 (no GEMM table holds the cast): forward, the QKV input (4096 tokens x 4096) is
    read in bf16 and written in FP8 plus its transpose, 4 bytes per element; current scaling reads it
    once more (6). Backward, the output gradient (4096 x 6144) likewise."""
    for recipe, per_element in (("delayed", 4), ("current", 6)):
        hw, ops = _ops(Layout(precision="fp8", fp8_recipe=recipe), spec_only=True)
        bw = hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.elementwise
        lat = hw.efficiency.kernel_latency_us * 1e-6
        fwd = next(o.time for o in ops.fwd if o.name == "qkv_quantize")
        bwd = next(o.time for o in ops.bwd if o.name == "qkv_quantize_bwd")
        assert fwd == pytest.approx(4096 * 4096 * per_element / bw + lat)
        assert bwd == pytest.approx(4096 * (4096 + 2 * 1024) * per_element / bw + lat)
    # with a measured FP8 table the GEMM row already holds the input's cast: the transpose is added
    hw, ops = _ops(Layout(precision="fp8"))
    bw = hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.elementwise
    fwd = next(o.time for o in ops.fwd if o.name == "qkv_quantize")
    assert fwd == pytest.approx(4096 * 4096 * 1 / bw + hw.efficiency.kernel_latency_us * 1e-6)


def test_mxfp8_reads_the_fp8_rows_where_no_table_measured_it():
    b200 = get_profile("b200")
    g = gemm(b200, "g", 8192, 4096, 4096, "mxfp8")
    assert g.measured and g.time == gemm(b200, "g", 8192, 4096, 4096, "fp8").time


def test_tp_comm_overlap_hides_each_collective_under_its_gemm():
    lay = dict(tp=4, sequence_parallel=True, precision="bf16")
    hw, plain = _ops(Layout(**lay))
    _, over = _ops(Layout(**lay, tp_comm_overlap=True))
    p = {o.name: o for o in plain.fwd}
    o = {x.name: x for x in over.fwd}
    from simulator.costmodel.ops import overlap_slowdown
    s = overlap_slowdown(hw)
    for comm, g in (("tp_allgather_attn", "qkv"), ("tp_allreduce_attn", "attn_out"),
                    ("tp_allgather_mlp", "fc1"), ("tp_allreduce_mlp", "fc2")):
        c, t = p[comm].time, p[g].time
        assert o[comm].time == pytest.approx(max(0.0, c - t) + min(c, t) * s)
    assert PassOps.total(over.fwd) < PassOps.total(plain.fwd)


@pytest.mark.parametrize("training,parallelism,msg", [
    ({"fp8_recipe": "current"}, {}, r"fp8_recipe=current applies to precision fp8"),
    ({}, {"tp": 2, "tp_comm_overlap": True}, r"tp_comm_overlap needs parallelism.sequence_parallel"),
])
def test_stack_keys_that_do_not_apply_are_refused(training, parallelism, msg):
    doc = _doc(**training)
    doc["parallelism"] = {**doc["parallelism"], **parallelism, "dp": 8 // parallelism.get("tp", 1)}
    with pytest.raises(CapsimError, match=msg):
        simulate_training(parse_scenario(doc))


def test_training_fp8_gemms_read_the_cublaslt_rows():
    """Training's FP8 GEMMs come from TensorRT-LLM's table (cuBLASLt, as Transformer Engine), bf16 ones
    from vLLM's (torch.nn.functional.linear); an engine-bound basis keeps its own engine's rows."""
    b200 = get_profile("b200")
    kb = b200.kernels
    assert kb is not None and kb.describe()["gemm fp8"].startswith("trtllm")
    trt = b200.with_engine("trtllm").kernels
    vllm = b200.with_engine("vllm").kernels
    assert trt is not None and vllm is not None
    shape = (16384, 6144, 4096)
    assert kb.gemm("fp8", *shape) == trt.gemm("fp8", *shape) != vllm.gemm("fp8", *shape)
    assert kb.gemm("bf16", *shape) == vllm.gemm("bf16", *shape)


def test_context_parallel_ranks_share_the_gradient_reduction_and_the_optimizer_shards():
    """Megatron-Core reduces gradients and shards the distributed optimizer over DP x CP: with CP 2 the
    optimizer state per GPU halves against CP 1 at the same DP (12 bytes per parameter / (dp * cp))."""
    def optimizer_gib(cp: int) -> float:
        doc = _doc()
        doc["model"] = "llama-3.1-8b"
        doc["parallelism"] = {"tp": 1, "pp": 1, "dp": 8 // cp, "cp": cp, "zero_stage": 1}
        doc["training"] = {"seq_len": 8192, "global_batch": 8 // cp, "micro_batch": 1}
        return simulate_training(parse_scenario(doc)).memory_per_gpu_gib.optimizer
    params = get_model("llama-3.1-8b").total_params()
    assert optimizer_gib(1) == pytest.approx(params * 12 / 8 / 2**30, rel=1e-4)
    assert optimizer_gib(2) == pytest.approx(params * 12 / 8 / 2**30, rel=1e-4)   # dp 4 x cp 2 = 8 shards


def test_unfused_gradient_accumulation_adds_a_pass_per_micro_batch():
    """Without the fusion each of the 4 micro-batches reads its 16-bit gradients and reads and writes
    the fp32 accumulator: 2 + 2·4 = 10 bytes per parameter, at the profile's streaming bandwidth."""
    doc = {"kind": "training", "model": "megatron-1.7b", "hardware": "a100-sxm-80gb",
           "cluster": {"nodes": 1, "gpus_per_node": 1}, "parallelism": {"tp": 1, "pp": 1, "dp": 1},
           "training": {"seq_len": 2048, "global_batch": 4, "micro_batch": 1, "recompute": "full",
                        "dispatch_us": 0}}     # no host floor: the pass adds its whole time to the step
    fused = simulate_training(parse_scenario(doc))
    doc["training"]["grad_accumulation_fusion"] = False
    unfused = simulate_training(parse_scenario(doc))
    hw = get_profile("a100-sxm-80gb")
    params = get_model("megatron-1.7b").total_params()
    per_pass = params * 10 / (hw.memory_bandwidth_tbps * 1e12 * hw.efficiency.memory) \
        + hw.efficiency.kernel_latency_us * 1e-6
    assert unfused.iteration_time_s - fused.iteration_time_s == pytest.approx(4 * per_pass, rel=2e-3)


def test_fp8_saves_the_linear_inputs_in_one_byte():
    """GPT-3-style layer (MHA, GELU 4h), no TP: Korthikanti's 34·sbh in bf16; under FP8 Transformer
    Engine keeps the two norm outputs (QKV and fc1 inputs, 2·sbh each) and the activation output
    (fc2 input, 8·sbh) in their 1-byte casts: 34 − 1 − 1 − 4 = 28·sbh."""
    model = get_model("gpt3-175b")
    s, b, h = 2048, 1, model.hidden
    bf = activation_bytes_per_layer(model, Layout(precision="bf16"), b, s)
    f8 = activation_bytes_per_layer(model, Layout(precision="fp8"), b, s)
    assert bf == pytest.approx(34 * s * b * h)
    assert f8 == pytest.approx(28 * s * b * h)
