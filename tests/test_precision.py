"""One precision vocabulary (simulator.precision): the bytes each format stores, the peak it runs at,
where it runs, and the errors a scenario gets when its GPU or its kind of run cannot use it."""

from __future__ import annotations

from typing import get_args

import pytest

from simulator import CapsimError, parse_scenario, simulate_training
from simulator.catalog import get_model
from simulator.costmodel.inference import InferenceModel
from simulator.hardware import get_profile
from simulator.precision import (
    FORMATS,
    KV_FORMATS,
    PRECISIONS,
    Precision,
    formats_on,
    get_format,
    peaks_of,
    training_state_bytes,
)
from simulator.scenario import base as scenario_base
from simulator.serving.engines.base import KVPrecision
from simulator.serving.simulate import build_replica_model

SERVE = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
         "workload": {"arrival": {"process": "offline", "requests": 4}}}
TRAIN = {"kind": "training", "model": "megatron-1.7b", "hardware": "h100-sxm", "cluster": {"nodes": 1, "gpus_per_node": 8},
         "training": {"seq_len": 2048, "global_batch": 64, "micro_batch": 1}}


def test_one_vocabulary_everywhere() -> None:
    assert PRECISIONS == ("fp32", "bf16", "fp16", "fp8", "fp8-block", "mxfp8", "nvfp4", "w4a16", "w8a8-int8")
    assert tuple(FORMATS) == PRECISIONS
    assert scenario_base.Precision is Precision                       # the scenario keys use this literal
    assert set(get_args(KVPrecision)) == {"auto", *KV_FORMATS}        # replica.kv_cache_precision: auto + KV formats
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        get_format("int4")


def test_weight_bytes_include_the_block_scales() -> None:
    """Bytes per weight = element + scale / block: fp8-block 1 + 4/(128·128), MXFP8 1 + 1/32 (E8M0 per 32),
    NVFP4 0.5 + 1/16 (E4M3 per 16), w4a16 0.5 + 2/128 (fp16 per group of 128)."""
    by_hand = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp8-block": 1.000244140625, "mxfp8": 1.03125,
               "nvfp4": 0.5625, "w4a16": 0.515625, "w8a8-int8": 1.0}
    assert {n: f.weight_bytes for n, f in FORMATS.items()} == by_hand
    # the residual stream stays 16-bit; GEMM inputs are quantized only in the 8- and 4-bit activation formats
    assert {n: f.activation_bytes for n, f in FORMATS.items()} == {n: 4.0 if n == "fp32" else 2.0 for n in FORMATS}
    assert get_format("w4a16").gemm_input_bytes == 2.0 and get_format("fp8").gemm_input_bytes == 1.0
    assert get_format("nvfp4").gemm_input_bytes == 0.5625
    # KV cache: bf16 unless the user sets replica.kv_cache_precision (fp16 and fp32 keep their own dtype)
    assert {n: f.kv_default for n, f in FORMATS.items()} == {
        n: n if n in ("fp32", "fp16") else "bf16" for n in FORMATS}


def test_peaks_each_format_runs_at() -> None:
    h100, b200 = get_profile("h100-sxm"), get_profile("b200")
    assert h100.peak_flops("w4a16") == 989e12          # dequantized to bf16 tensor-core math
    assert h100.peak_flops("fp8-block") == h100.peak_flops("fp8") == 1979e12
    assert h100.peak_flops("w8a8-int8") == 1979e12     # no int8 in the profile: the fp8 peak stands in
    assert h100.peak_flops("fp32") == 67e12
    assert b200.peak_flops("nvfp4") == 9000e12 and b200.peak_flops("mxfp8") == 4500e12
    assert b200.gemm_max("nvfp4") == b200.efficiency.gemm_max["fp4"]


def test_every_kernel_dtype_names_rows_of_the_measured_gemm_tables() -> None:
    """The formats' kernel-table names are the dtypes the imported GEMM tables use; mxfp8 has none."""
    present: set[str] = set()
    for gpu in ("h100-sxm", "b200", "a100-sxm-80gb"):
        mp = get_profile(gpu).measured_profile
        assert mp is not None
        for ref in mp.find("gemm", "vllm") + mp.find("gemm", "trtllm"):
            present |= {k[0] for k in mp.grid(ref).keys_present()}
    named = {f.kernel_dtype for f in FORMATS.values() if f.kernel_dtype}
    assert named - {"fp16"} <= present          # fp16 GEMMs run at the bf16 rate; the tables measure bf16
    assert get_format("mxfp8").kernel_dtype is None


def test_which_gpus_run_which_formats() -> None:
    peaks = {g: peaks_of(get_profile(g).peak_tflops) for g in ("a100-sxm-80gb", "h100-sxm", "b200", "t4")}
    assert formats_on(peaks["a100-sxm-80gb"]) == ["fp32", "bf16", "fp16", "w4a16"]
    assert formats_on(peaks["h100-sxm"]) == ["fp32", "bf16", "fp16", "fp8", "fp8-block", "w4a16", "w8a8-int8"]
    assert formats_on(peaks["b200"]) == list(PRECISIONS)
    assert formats_on(peaks["b200"], training=True) == ["fp32", "bf16", "fp16", "fp8", "fp8-block", "mxfp8", "nvfp4"]
    assert "bf16" in formats_on(peaks["t4"])      # served in fp16 at the fp16 peak
    assert get_profile("t4").peak_flops("bf16") == 65e12


def test_nvfp4_on_h100_fails_at_plan_time_naming_key_value_gpu_and_alternatives() -> None:
    sc = parse_scenario({**SERVE, "precision": "nvfp4"})
    with pytest.raises(CapsimError) as e:
        build_replica_model(sc)
    msg = str(e.value)
    assert msg.startswith("precision: 'nvfp4' cannot run on h100-sxm (peak_tflops lists bf16, fp16, fp8, fp32)")
    assert "Blackwell" in msg and "On h100-sxm use fp32, bf16, fp16, fp8, fp8-block, w4a16, w8a8-int8" in msg
    assert "; nvfp4 runs on b200" in msg and "h100" not in msg.split("runs on")[-1]
    build_replica_model(parse_scenario({**SERVE, "precision": "nvfp4", "hardware": "b200"}))    # fine on Blackwell


def test_inference_only_formats_are_a_training_error() -> None:
    with pytest.raises(CapsimError) as e:
        simulate_training(parse_scenario(TRAIN, ["training.precision=w4a16"]))
    msg = str(e.value)
    assert msg.startswith("training.precision: 'w4a16' cannot train on h100-sxm")
    assert "inference-only" in msg and msg.endswith("On h100-sxm use fp32, bf16, fp16, fp8, fp8-block")
    with pytest.raises(CapsimError, match="training.precision: 'w8a8-int8' cannot train on h100-sxm.*inference-only"):
        simulate_training(parse_scenario(TRAIN, ["training.precision=w8a8-int8"]))
    with pytest.raises(CapsimError, match="'mxfp8' cannot train on h100-sxm.*Blackwell.*mxfp8 runs on b200"):   # and newer
        simulate_training(parse_scenario(TRAIN, ["training.precision=mxfp8"]))
    with pytest.raises(CapsimError, match="'fp8' cannot train on a100-sxm-80gb.*fp8 runs on b200, .*h100-sxm"):
        simulate_training(parse_scenario(TRAIN, ["training.precision=fp8", "hardware=a100-sxm-80gb"]))
    r = simulate_training(parse_scenario(TRAIN, ["training.precision=nvfp4", "hardware=b200"]))
    assert r.mfu > 0


def test_training_model_states_by_format() -> None:
    """Bytes per parameter held before ZeRO: fp32 trains without a master copy (4 + 8 moments); 16-bit
    formats hold 2 + 12 (fp32 master and moments); the FP8/FP4 recipes keep bf16 parameters plus the
    cached quantized weights, row- and column-wise (2 + 2·bytes)."""
    assert training_state_bytes("fp32") == (4.0, 8.0)
    assert training_state_bytes("bf16") == training_state_bytes("fp16") == (2.0, 12.0)
    assert training_state_bytes("fp8") == (4.0, 12.0)
    assert training_state_bytes("nvfp4") == (2 + 2 * 0.5625, 12.0)
    one = simulate_training(parse_scenario(TRAIN)).memory_per_gpu_gib
    fp32 = simulate_training(parse_scenario(TRAIN, ["training.precision=fp32"])).memory_per_gpu_gib
    assert fp32.params == pytest.approx(2 * one.params, rel=1e-4)               # 4 B vs 2 B per weight
    assert fp32.optimizer == pytest.approx(one.optimizer * 8 / 12, rel=1e-4)    # Adam's moments only


def test_serving_weights_keep_embeddings_and_head_16_bit() -> None:
    """Llama-3.1-8B in w4a16: 6,979,584,000 linear weights at 0.515625 B plus the 1,050,677,248 of the
    embedding, LM head and final norm at 2 B = 5,700,202,496 bytes."""
    m, hw = get_model("llama-3.1-8b"), get_profile("h100-sxm")
    assert m.embedding_params() + m.head_params() == 1_050_677_248
    assert InferenceModel(model=m, hw=hw, precision="w4a16").weight_bytes_per_gpu() == 5_700_202_496
    assert InferenceModel(model=m, hw=hw, precision="bf16").weight_bytes_per_gpu() == 8_030_261_248 * 2
    assert InferenceModel(model=m, hw=hw, precision="nvfp4", tp=2).weight_bytes_per_gpu() == (
        6_979_584_000 * 0.5625 + 1_050_677_248 * 2) / 2


def test_kv_cache_is_bf16_unless_set() -> None:
    """Llama-3.1-8B: 32 layers × 2 × 8 KV heads × 128 = 65,536 KV elements per token."""
    _, auto = build_replica_model(parse_scenario({**SERVE, "precision": "fp8"}))
    assert auto.kv_cache_precision == "bf16"
    perf, fp8 = build_replica_model(parse_scenario({**SERVE, "precision": "fp8", "replica": {"kv_cache_precision": "fp8"}}))
    assert fp8.kv_cache_precision == "fp8" and perf.kv_bytes_per_token_per_gpu() == 65_536
    perf, _ = build_replica_model(parse_scenario({**SERVE, "precision": "fp32", "hardware": "h100-sxm"}))
    assert perf.kv_bytes_per_token_per_gpu() == 65_536 * 4
