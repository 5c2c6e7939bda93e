"""replica.engine and replica.engine_version: which measured kernel tables a serving replica is timed
with, the versions chosen when the one asked for was not measured, and what the result reports.

h100-sxm's measured versions (hardware_profiles/measured/h100-sxm/tables.yaml): vllm GEMM, attention
and MoE tables at 0.24.0 only; vllm all-reduce at 0.14.0, 0.19.0 and 0.24.0; NCCL 2.27.3."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import get_args

import pytest

from simulator import CapsimError, parse_scenario, simulate_serving
from simulator.serving.engines.base import Engine
from simulator.serving.simulate import build_replica_model
from simulator.silicon.tables import ENGINE_TABLES, TablesWarning

ROOT = Path(__file__).resolve().parents[1]
SERVE = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
         "workload": {"arrival": {"process": "offline", "requests": 8},
                      "prompt_tokens": {"dist": "fixed", "value": 256}, "output_tokens": {"dist": "fixed", "value": 16}}}
NEWEST = {"gemm": "vllm 0.24.0", "context_attention": "vllm 0.24.0", "generation_attention": "vllm 0.24.0",
          "collective": "vllm 0.24.0", "moe": "vllm 0.24.0", "quantize": "vllm 0.24.0", "nccl": "nccl 2.27.3"}


def tables(replica: dict, hardware: str = "h100-sxm") -> tuple[dict[str, str], list[str]]:
    """The tables chosen for a replica and the TablesWarnings raised while choosing them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        perf, _ = build_replica_model(parse_scenario({**SERVE, "hardware": hardware, "replica": replica}))
    kernels = perf.hw.kernels
    assert kernels is not None
    return kernels.describe(), [str(w.message) for w in caught if issubclass(w.category, TablesWarning)]


def test_engine_keys_and_their_defaults() -> None:
    rc = parse_scenario(SERVE).replica
    assert rc.engine == "vllm" and rc.engine_version is None
    assert set(get_args(Engine)) == set(ENGINE_TABLES)
    assert parse_scenario(SERVE, ["replica.engine_version=0.1"]).replica.engine_version == "0.1"   # YAML's 0.1
    with pytest.raises(CapsimError, match=r"replica.engine: Input should be 'vllm', 'trtllm', 'trtllm-bench' or "
                                          r"'sglang' \(got 'tgi'\)"):
        parse_scenario(SERVE, ["replica.engine=tgi"])
    with pytest.raises(CapsimError, match="unknown key 'replica.engine_verison'"):
        parse_scenario(SERVE, ["replica.engine_verison=0.24.0"])


def test_the_newest_tables_by_default_without_warnings() -> None:
    chosen, warned = tables({})
    assert chosen == NEWEST and warned == []
    chosen, warned = tables({"engine": "trtllm"})
    assert chosen["gemm"] == "trtllm 1.3.0rc20" and chosen["collective"] == "trtllm 1.3.0rc20" and warned == []


def test_an_unmeasured_version_takes_the_newest_at_or_below_it_per_kind_and_warns() -> None:
    # 0.19.0: all-reduce measured at exactly 0.19.0; GEMM, attention and MoE only at 0.24.0, above it: the oldest
    chosen, warned = tables({"engine_version": "0.19.0"})
    assert chosen == {**NEWEST, "collective": "vllm 0.19.0"}
    assert len(warned) == 5 and all("no tables measured for version 0.19.0; using 0.24.0 (the oldest measured"
                                    in w for w in warned)
    assert {w.split(" tables")[0] for w in warned} == {"gemm", "context_attention", "generation_attention", "moe",
                                                       "quantize"}
    # 0.20.0: the all-reduce measured below it, newest first
    chosen, warned = tables({"engine_version": "0.20.0"})
    assert chosen["collective"] == "vllm 0.19.0"
    assert any(w.startswith("collective tables of vllm: no tables measured for version 0.20.0; using 0.19.0 "
                            "(the newest below it; measured: 0.14.0, 0.19.0, 0.24.0)") for w in warned)


def test_a_version_older_than_every_table_takes_the_oldest() -> None:
    chosen, warned = tables({"engine_version": "0.1"})
    assert chosen == {**NEWEST, "collective": "vllm 0.14.0"}
    assert len(warned) == 6 and all("(the oldest measured" in w for w in warned)


def test_the_result_reports_the_tables_and_their_warnings() -> None:
    r = simulate_serving(parse_scenario(SERVE))
    assert r.kernel_tables == "vllm 0.24.0 (gemm, attention, moe, all-reduce), nccl 2.27.3"
    assert r.kernel_table_versions == NEWEST and r["kernel_tables"] == r.kernel_tables
    with pytest.warns(TablesWarning):
        old = simulate_serving(parse_scenario(SERVE, ["replica.engine_version=0.19.0"]))
    assert old.kernel_tables == "vllm 0.24.0 (gemm, attention, moe), vllm 0.19.0 (all-reduce), nccl 2.27.3"
    assert sum("no tables measured for version 0.19.0" in w for w in old.warnings) == 5


def test_a_gpu_without_tables_reports_the_spec_sheet() -> None:
    r = simulate_serving(parse_scenario({**SERVE, "hardware": "l4"}))
    assert r.kernel_tables == "spec sheet (no measured tables for this GPU)"
    assert r.kernel_table_versions == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", TablesWarning)      # nothing to choose from, so nothing to warn about
        simulate_serving(parse_scenario({**SERVE, "hardware": "l4"}, ["replica.engine_version=0.1"]))


def test_the_cli_prints_one_line_of_kernel_tables() -> None:
    out = subprocess.run([sys.executable, "-m", "capsim", "serve", "examples/serve_llama3_8b.yaml", "--set",
                          "workload.duration_s=20"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    line = next(s for s in out.splitlines() if "kernel tables" in s)
    assert "vllm 0.24.0 (gemm, attention, moe, all-reduce), nccl 2.27.3" in line



@pytest.mark.parametrize(("gpu", "quantized"), [("h200", "fp8"), ("b200", "nvfp4")])
def test_tensorrt_llm_runs_the_prompts_attention_as_fp8_fmha_when_its_output_projection_is_quantized(
        gpu: str, quantized: str) -> None:
    """TensorRT-LLM's attention writes an FP8/NVFP4 o_proj's quantized input, which selects its FP8 context
    FMHA (costmodel.fusion): the prefill slope is the line through the fp8/fp8 context table, not bf16's.
    vLLM's FlashAttention prefill, and TensorRT-LLM serving a bf16 checkpoint, stay on the bf16 table."""
    from simulator.catalog import get_model
    from simulator.costmodel.fusion import engine_fusion
    from simulator.costmodel.inference import InferenceModel, measured_attention
    from simulator.hardware import get_profile

    model = get_model("llama-3.1-8b")
    att = model.layer_specs()[0].attention

    def table(engine: str, fp8_context: bool) -> float:      # a bf16 KV cache: only the output selects FP8
        fit = measured_attention(get_profile(gpu).with_engine(engine, None), att.heads, att.kv_heads, att.head_dim,
                                 "bf16", fp8_context=fp8_context).prefill
        assert fit is not None
        return fit[1]

    def slope(engine: str, precision: str) -> float:
        perf = InferenceModel(model=model, hw=get_profile(gpu).with_engine(engine, None), precision=precision,
                              kv_precision="bf16", fusion=engine_fusion(engine))
        return perf.prefill_coef / model.layers

    assert 0.6 < table("trtllm", True) / table("trtllm", False) < 0.95   # FP8 FMHA: 0.70-0.87 of BF16's time
    assert slope("trtllm", quantized) == pytest.approx(table("trtllm", True))
    assert slope("trtllm", "bf16") == pytest.approx(table("trtllm", False))
    assert slope("vllm", quantized) == pytest.approx(table("vllm", False))


def test_the_prefill_attention_slope_is_the_tables_per_pair_time_at_the_workloads_prompt_length() -> None:
    """From 1k tokens up, the prompt's attention is charged the context table's own per-pair time at the
    workload's prompt length above the fit's launch floor (capped at the table's longest prompt); shorter
    prompts keep the line through the table's 128-8k points. Long prompts run the kernel faster per pair."""
    from simulator.catalog import get_model
    from simulator.costmodel.inference import PREFILL_AT_PROMPT_FROM, measured_attention
    from simulator.hardware import get_profile

    hw = get_profile("h100-sxm").with_engine("trtllm", None)
    att = get_model("llama-3.1-8b").layer_specs()[0].attention
    kb = hw.kernels
    assert kb is not None

    def fit(prompt: float | None) -> tuple[float, float]:
        line = measured_attention(hw, att.heads, att.kv_heads, att.head_dim, "bf16", prompt_tokens=prompt).prefill
        assert line is not None
        return line

    base = fit(None)
    assert fit(PREFILL_AT_PROMPT_FROM - 1) == base
    longest = float(kb.sizes("context_attention", ("bf16", "bf16", 32, 8, 128, 0))[1][-1])  # type: ignore[index]
    for s in (4096.0, longest):
        t = kb.context_attention(dtype="bf16", kv_dtype="bf16", heads=32, kv_heads=8, head_dim=128, batch=1, seq=s,
                                 count=False)
        assert t is not None
        floor, slope = fit(s)
        assert floor == base[0]
        assert slope == pytest.approx((t - floor) / (s * (s + 1) / 2))
    assert fit(4 * longest) == fit(longest)                 # beyond the table: its longest prompt's rate
    assert fit(longest)[1] < fit(2048.0)[1]                 # a 16k prompt costs less per pair than a 2k one


def test_tensorrt_llms_nvfp4_gemms_take_the_fastest_measured_kernel_its_autotuner_could_pick() -> None:
    """TensorRT-LLM autotunes trtllm::nvfp4_gemm at start-up, and its table (collected without the
    autotuner) timed the fallback tactic: capsim takes the fastest NVFP4 GEMM measured for the shape on
    the GPU. B200, Llama-3.1-70B's QKV at TP1 (n = 10240, k = 8192): TensorRT-LLM's table 22.2-22.8 us
    at m = 1-16 against vLLM's 13.1-15.3 and SGLang's 15.5-18.9 (the envelope's 13.1 at m = 4); at m = 4096
    180 against 156 and 157. Other formats (FP8 here) keep the engine's own table."""
    from simulator.hardware import MEASURED_DIR
    from simulator.silicon.in_model import in_model_factor
    from simulator.silicon.tables import AUTOTUNED_GEMMS, KernelBasis, load_measured

    assert AUTOTUNED_GEMMS == {"trtllm": frozenset({"nvfp4"})}
    prof = load_measured(str(MEASURED_DIR / "b200"))
    own = {e: KernelBasis(prof, engine=e) for e in ("trtllm", "vllm", "sglang")}
    f = in_model_factor("gemm")
    raw = {e: {m: prof.grid(own[e].chosen["gemm"])(("nvfp4",), (m, 10240, 8192)) * 1e-6 * f for m in (4, 4096)}
           for e in own}
    trt = own["trtllm"]
    assert trt.describe()["gemm nvfp4"] == "fastest of trtllm 1.3.0rc20, sglang 0.5.14, vllm 0.24.0"
    for m in (4, 4096):
        assert trt.gemm("nvfp4", m, 10240, 8192) == pytest.approx(min(raw[e][m] for e in raw), rel=1e-12)
    assert raw["vllm"][4] < 0.7 * raw["trtllm"][4]                  # the fallback tactic at decode sizes
    assert trt.gemm("nvfp4", 4, 10240, 8192) == pytest.approx(raw["vllm"][4], rel=1e-12)
    assert trt.gemm("fp8", 4, 10240, 8192) == pytest.approx(
        prof.grid(trt.chosen["gemm"])(("fp8",), (4, 10240, 8192)) * 1e-6 * f, rel=1e-12)
    # vLLM and SGLang run their own kernels, untouched
    assert own["vllm"].gemm("nvfp4", 4, 10240, 8192) == pytest.approx(raw["vllm"][4], rel=1e-12)
    assert "gemm nvfp4" not in own["vllm"].describe()
