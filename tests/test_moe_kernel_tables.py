"""The fused-MoE kernel tables the serving cost model reads: the kernel the engine runs, at the model's own
expert shape. Times quoted by hand from aiconfigurator-core 0.12.0's
``systems/data/b200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet`` (ms there, µs in capsim's tables)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simulator.catalog import get_model
from simulator.costmodel.inference import InferenceModel
from simulator.costmodel.moe import MXFP4_ON_FP8, routed_expert_ops, table_dtype
from simulator.hardware import get_profile
from simulator.precision import get_format

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from import_silicon import moe_rows  # noqa: E402


def _cols(rows: list[tuple[str, str, int]]) -> dict[str, list]:
    """Wheel-style columns of (kernel_source, moe_dtype, num_tokens) rows at Qwen3-30B-A3B's expert shape."""
    n = len(rows)
    return {"kernel_source": [r[0] for r in rows], "moe_dtype": [r[1] for r in rows],
            "num_tokens": [r[2] for r in rows], "hidden_size": [2048] * n, "inter_size": [768] * n,
            "topk": [8] * n, "num_experts": [128] * n, "moe_tp_size": [1] * n, "moe_ep_size": [1] * n,
            "distribution": ["balanced"] * n, "latency": [0.222341, 0.072928, 0.134635][:n]}


SHAPES = {(2048, 768, 8, 128)}


def test_tensorrt_llm_keeps_only_its_default_cutlass_lane():
    cols = _cols([("moe_torch_flow_cutlass", "nvfp4", 1024), ("moe_torch_flow_min_latency", "nvfp4", 1024)])
    rows, dropped = moe_rows(cols, SHAPES, "trtllm")
    # one row left, the CUTLASS one: 0.222341 ms -> 222.341 us
    assert rows == [("nvfp4", 2048, 768, 8, 128, 1, 1, "balanced", 1024, pytest.approx(222.341))]
    assert sum(dropped.values()) == 1 and "moe_torch_flow_min_latency" in next(iter(dropped))
    # other engines' labels are not TensorRT-LLM's: both rows stay
    assert len(moe_rows(cols, SHAPES, "vllm")[0]) == 2


def test_the_mxfp4_on_fp8_dtype_rides_along_only_when_asked():
    cols = _cols([("moe_torch_flow_cutlass", "nvfp4", 1024), ("x", "nvfp4", 1), ("moe_torch_flow", "w4a8_mxfp4_mxfp8", 1024)])
    plain, dropped = moe_rows(cols, SHAPES, "trtllm")
    assert [r[0] for r in plain] == ["nvfp4", "nvfp4"] and dropped == {"dtype w4a8_mxfp4_mxfp8": 1}
    extra, _ = moe_rows(cols, SHAPES, "trtllm", extra=True)
    assert sorted(r[0] for r in extra) == ["nvfp4", "nvfp4", MXFP4_ON_FP8]


def test_table_dtype_by_checkpoint():
    assert table_dtype("mxfp4", "fp8") == MXFP4_ON_FP8     # GPT-OSS's experts on Blackwell: W4A8_MXFP4_MXFP8
    assert table_dtype("mxfp4", "w4a16") == "w4a16"         # Hopper: W4A16_MXFP4, bf16 math
    assert table_dtype(None, "nvfp4") == "nvfp4"            # a fully quantized checkpoint: its own format


def test_qwen3_30b_experts_read_the_cutlass_time_of_their_own_shape_on_b200():
    hw = get_profile("b200").with_engine("trtllm")
    moe = next(s for s, _ in get_model("qwen3-30b-a3b").layer_groups() if s.mlp.is_moe)
    ops = routed_expert_ops(moe, hw, tokens=1024, moe_tp=1, ep=1, attention_dp=1, skew=1.0, precision="nvfp4",
                            weight_bytes=get_format("nvfp4").weight_bytes)
    experts = [o for o in ops if o.name == "moe_experts"]
    # the table's CUTLASS row at 1024 tokens, not the min-latency lane's 72.928 us nor their median
    assert len(experts) == 1 and experts[0].measured
    assert experts[0].time == pytest.approx(222.341e-6, rel=1e-4)


def test_gpt_oss_experts_read_the_w4a8_mxfp4_mxfp8_table_on_b200():
    hw = get_profile("b200").with_engine("trtllm")
    m = get_model("gpt-oss-20b")
    perf = InferenceModel(model=m, hw=hw, precision="nvfp4", kv_precision="fp8")
    assert (perf.expert_precision, perf.expert_kernel_dtype) == ("fp8", MXFP4_ON_FP8)
    moe = next(s for s, _ in m.layer_groups() if s.mlp.is_moe)
    ops = routed_expert_ops(moe, hw, tokens=1024, moe_tp=1, ep=1, attention_dp=1, skew=1.0, precision="fp8",
                            weight_bytes=get_format("nvfp4").weight_bytes, kernel_dtype=perf.expert_kernel_dtype)
    experts = [o for o in ops if o.name == "moe_experts"]
    # w4a8_mxfp4_mxfp8, hidden 2880, inter 2880, top-4 of 32, tp 1 ep 1, 1024 tokens: 0.134635 ms
    assert len(experts) == 1 and experts[0].time == pytest.approx(134.635e-6, rel=1e-4)
