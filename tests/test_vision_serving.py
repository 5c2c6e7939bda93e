"""Serving models that generate nothing (ViT, BERT, CNNs): inputs sized by the model, convolutions as
implicit GEMMs, a result without TTFT/TPOT/KV, and a Jetson against a cloud GPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from simulator import CapsimError, parse_scenario, simulate_serving
from simulator.catalog import get_model
from simulator.convnets import ConvNetSpec, conv_layers, conv_macs
from simulator.costmodel.convolution import conv_forward_ops
from simulator.costmodel.inference import InferenceModel
from simulator.hardware import get_profile

ROOT = Path(__file__).resolve().parents[1]


def serving(model: str, hardware: str = "h100-sxm", **workload: object) -> dict:
    return {"kind": "serving", "model": model, "hardware": hardware,
            "replica": {"batching": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 2},
            "workload": {"arrival": {"process": "poisson", "rate_rps": 50, "requests": 200}, **workload}, "seed": 1}


# ---- the catalog: shapes from the papers --------------------------------------------------------------
def test_resnet50_and_efficientnet_b0_parameters_and_multiply_adds() -> None:
    # torchvision.models: resnet50 25,557,032 parameters, 4.09 GFLOPS (multiply-adds); efficientnet_b0
    # 5,288,548 and 0.39; He et al. 2016 Table 1 (stride on the first 1x1): 3.8 x 10^9
    r50, b0 = get_model("resnet-50"), get_model("efficientnet-b0")
    assert r50.total_params() == 25_557_032 and b0.total_params() == 5_288_548
    assert r50.conv_macs() == pytest.approx(4.09e9, rel=2e-3)
    assert 2 * r50.conv_macs() == pytest.approx(8.2e9, rel=3e-3)          # FLOPs
    assert b0.conv_macs() == pytest.approx(0.39e9, rel=0.02)
    paper = conv_macs(conv_layers(ConvNetSpec(family="resnet", stride_in_3x3=False), 224, 3, 1000))
    assert paper == pytest.approx(3.86e9, rel=2e-3)
    # the stem by hand: 7x7x3 -> 64 at stride 2 on 224x224: 112^2 * 64 * 3 * 49 multiply-adds
    assert r50.conv_ops()[0].macs() == 112**2 * 64 * 3 * 49


def test_a_cnn_is_served_on_one_gpu_per_replica() -> None:
    d = serving("resnet-50")
    d["replica"]["tp"] = 2
    with pytest.raises(CapsimError, match="convolutional network, served on one GPU"):
        simulate_serving(parse_scenario(d))


# ---- inputs sized by the model -------------------------------------------------------------------------
def test_vit_inputs_are_its_patches_and_class_token() -> None:
    r = simulate_serving(parse_scenario(serving("vit-b-16")))
    assert set(r.requests.prompt_tokens) == {(224 // 16) ** 2 + 1} == {197}
    assert r.scenario.workload.prompt_tokens.value == 197      # the result's scenario says so
    with pytest.raises(CapsimError, match=r"vit-b-16 is 224x224 images in 16x16 patches: 196 patches \+ the class "
                                          r"token = 197 tokens.*remove workload.prompt_tokens"):
        simulate_serving(parse_scenario(serving("vit-b-16", prompt_tokens={"dist": "fixed", "value": 512})))
    with pytest.raises(CapsimError, match="generates no tokens.*remove workload.output_tokens"):
        simulate_serving(parse_scenario(serving("vit-b-16", output_tokens={"dist": "fixed", "value": 128})))
    with pytest.raises(CapsimError, match="slo.ttft_p99_s.*no time to first token.*slo.e2e_p99_s"):
        simulate_serving(parse_scenario({**serving("vit-b-16"), "slo": {"ttft_p99_s": 0.1}}))


def test_vit_mfu_counts_197_tokens() -> None:
    # offline, one replica: MFU = 2 * params * 197 * images / (peak * GPU-seconds)
    d = serving("vit-b-16")
    d["workload"]["arrival"] = {"process": "offline", "requests": 64}
    r = simulate_serving(parse_scenario(d))
    peak = get_profile("h100-sxm").peak_flops("bf16")
    assert r.mfu == pytest.approx(2 * 86_567_656 * 197 * 64 / (peak * r.simulated_s), rel=1e-3)


def test_bert_reads_its_sequence_length() -> None:
    r = simulate_serving(parse_scenario(serving("bert-large")))
    assert set(r.requests.prompt_tokens) == {512}                   # max_positions: padded to the engine's shape
    r = simulate_serving(parse_scenario(serving("bert-large", prompt_tokens={"dist": "fixed", "value": 128})))
    assert set(r.requests.prompt_tokens) == {128} and r.item == "sequence"
    with pytest.raises(CapsimError, match="bert-large reads at most 512 tokens"):
        simulate_serving(parse_scenario(serving("bert-large", prompt_tokens={"dist": "uniform", "low": 8,
                                                                             "high": 600})))


# ---- the result keeps its shape ------------------------------------------------------------------------
def test_non_generative_result_has_null_token_fields_and_items_per_s() -> None:
    vit = simulate_serving(parse_scenario(serving("vit-b-16")))
    llm = simulate_serving(parse_scenario({"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
                                           "workload": {"arrival": {"process": "poisson", "rate_rps": 2,
                                                                    "requests": 20}}}))
    v, g = json.loads(vit.to_json()), json.loads(llm.to_json())
    assert list(v) == list(g)                                        # same keys, same order
    assert v["generative"] is False and g["generative"] is True
    for key in ("ttft_s", "tpot_s", "itl_s", "kv_cache_tokens_per_replica", "kv_cache_utilization",
                "cost_per_million_tokens_usd"):
        assert v[key] is None, key
    assert v["replica_layout"]["kv_cache_precision"] is None and list(v["replica_layout"]) == list(g["replica_layout"])
    assert v["items_per_s"] == v["throughput_rps"] > 0 and v["item"] == "image"
    assert g["items_per_s"] is None and g["ttft_s"]["p50"] > 0
    assert v["e2e_s"]["p50"] > 0 and v["cost_per_million_items_usd"] > 0


def test_cli_shows_ms_images_per_s_and_no_token_latencies(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from capsim.cli import app

    f = tmp_path / "vit.yaml"
    f.write_text(yaml.safe_dump(serving("vit-b-16")))
    res = CliRunner().invoke(app, ["serve", str(f)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "images/s" in res.output and "ms per image" in res.output
    for absent in ("TTFT", "TPOT", "KV cache", "output tokens/s"):
        assert absent not in res.output, absent
    cost = CliRunner().invoke(app, ["cost", str(f)], env={"COLUMNS": "200"})
    assert cost.exit_code == 0 and "forward" in cost.output and "decode" not in cost.output
    f.write_text(yaml.safe_dump(serving("resnet-50")))
    cost = CliRunner().invoke(app, ["cost", str(f)], env={"COLUMNS": "200"})
    assert "layer1.0.conv2" in cost.output and "decode" not in cost.output


# ---- a Jetson against a cloud GPU ----------------------------------------------------------------------
def test_jetson_profiles_are_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location("build_edge_profiles", ROOT / "scripts" / "build_edge_profiles.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in mod.MODES:
        assert yaml.safe_load((ROOT / "hardware_profiles" / f"{name}.yaml").read_text()) == mod.edge_profile(name)
    # AGX Orin 64GB MAXN: 16 SMs x 4 tensor cores x 512 INT8 MACs x 2 x 2 (sparse) x 1.3005 GHz = the datasheet's
    # 170 sparse GPU TOPS; the 15 W mode gates 5 of 8 TPCs and caps the GPU at 408 MHz, the memory at 2133 MHz
    maxn, w15 = get_profile("jetson-agx-orin-64gb-maxn"), get_profile("jetson-agx-orin-64gb-15w")
    assert 2 * maxn.peak_tflops["int8"] == pytest.approx(170.5, abs=0.1)
    assert maxn.peak_tflops["fp16"] == pytest.approx(16 * 4 * 256 * 2 * 1.3005e9 / 1e12, abs=0.01)
    assert w15.peak_tflops["fp16"] == pytest.approx(6 * 4 * 256 * 2 * 0.408e9 / 1e12, abs=0.01)
    assert w15.memory_bandwidth_tbps == pytest.approx(0.2048 * 2133 / 3199, abs=1e-4)
    nano = get_profile("jetson-orin-nano-8gb-15w")     # 40 sparse INT8 TOPS at 625 MHz on 8 SMs
    assert 2 * nano.peak_tflops["int8"] == pytest.approx(40.96, abs=0.01)


def test_resnet50_conv_by_hand_on_jetson_and_h100() -> None:
    """layer1.0.conv2, a 3x3 64->64 convolution on 56x56, batch 1: implicit GEMM M = 3136, N = 64, K = 576,
    231.2 MFLOP. Jetson AGX Orin MAXN fp16 (42.61 TFLOP/s x 0.75 GEMM max): 13 tiles of 256x128 on 16 SMs
    fill 13/16 of one wave, so compute = 231.2e6 / (42.61e12 x 0.75 x 13/16) + 4 us = 12.90 us; memory
    (in and out 56x56x64 x 2 B, weights 36,864 x 2 B = 876,544 B) at 0.85 x 204.8 GB/s + 4 us = 9.04 us: compute-bound.
    H100 SXM: 13 big tiles cannot fill 132 SMs, so 64x64 tiles: 49 of them, 49/132 of a wave; 989 TFLOP/s x
    0.804 (its profile's GEMM max) x 49/132: 0.78 us + 4 us = 4.79 us, above the memory time (876,544 B at
    0.85 x 3.35 TB/s + 4 us = 4.31 us): the kernel latency dominates."""
    flops = 2 * 3136 * 64 * 576
    assert flops == 231_211_008
    by_hand_orin = max(flops / (42.61e12 * 0.75 * 13 / 16) + 4e-6, 876_544 / (0.85 * 204.8e9) + 4e-6)
    h100 = get_profile("h100-sxm")
    by_hand_h100 = max(flops / (h100.peak_flops("bf16") * h100.gemm_max("bf16") * 49 / 132) + 4e-6,
                       876_544 / (0.85 * h100.memory_bandwidth_tbps * 1e12) + 4e-6)
    for hw, expected in (("jetson-agx-orin-64gb-maxn", by_hand_orin), ("h100-sxm", by_hand_h100)):
        ops = conv_forward_ops(get_profile(hw), get_model("resnet-50").conv_ops(), 1, "bf16")
        conv2 = next(o for o in ops if o.name == "layer1.0.conv2")
        assert conv2.time == pytest.approx(expected, rel=1e-9), hw
    assert by_hand_orin == pytest.approx(12.90e-6, abs=0.01e-6) and by_hand_h100 == pytest.approx(4.79e-6, abs=0.01e-6)


def test_batch_one_latency_and_images_per_watt_jetson_vs_h100() -> None:
    """One user sending one image after another (closed loop, no batching): the GPU is always busy, so
    the latency is one forward and images/s per watt is 1 / (forward x TDP). At batch 1 ResNet-50's 72
    kernels are mostly launch-bound on an H100 (0.37 ms, 700 W) and the Jetson, 3x slower (1.10 ms at 60 W),
    serves about 4x the images per joule."""
    out = {}
    for hw in ("jetson-agx-orin-64gb-maxn", "h100-sxm"):
        d = serving("resnet-50", hw)
        d["replica"] = {"batching": "none"}
        d["workload"]["arrival"] = {"process": "closed_loop", "concurrency": 1, "requests": 50}
        d["pricing"] = {"usd_per_gpu_hour": 0.08}       # a Jetson has no cloud price: its amortised purchase
        r = simulate_serving(parse_scenario(d))
        profile = get_profile(hw).with_engine(None)
        forward = InferenceModel(model=get_model("resnet-50"), hw=profile).forward_time(1, 1)
        assert r.e2e_s.p50 == pytest.approx(forward, rel=1e-5)     # results keep 6 digits
        assert r.items_per_s == pytest.approx(1 / forward, rel=1e-4)
        assert r.items_per_joule == pytest.approx(1 / (forward * profile.tdp_w), rel=1e-3)
        out[hw] = (forward, r.items_per_joule)
    (t_orin, e_orin), (t_h100, e_h100) = out["jetson-agx-orin-64gb-maxn"], out["h100-sxm"]
    assert t_orin == pytest.approx(1.103e-3, rel=0.01) and t_h100 == pytest.approx(0.371e-3, rel=0.01)
    assert 3.5 < e_orin / e_h100 < 4.2


def test_report_and_tui_rows_of_a_vision_model(tmp_path: Path) -> None:
    from simulator.report import write_html
    from tui.present import compare, headline

    r = simulate_serving(parse_scenario(serving("resnet-50")))
    page = tmp_path / "r.html"
    write_html(r, page)
    text = page.read_text()
    assert "latency per image p50 / p99" in text and "images/s" in text and "$ / M images" in text
    assert "TTFT p50 / p99" not in text and "TPOT p50 / p99" not in text and "KV cache used" not in text
    rows = dict(headline(r))
    assert "TTFT p50/p99" not in rows and rows["latency p50/p99"].endswith("ms per image")
    assert rows["throughput"].startswith(f"{r.items_per_s:,.1f} images/s")
    _, table = compare([r, r])
    assert dict((row[0][0], row[1][0]) for row in table)["TTFT p99 s"] == "-"
