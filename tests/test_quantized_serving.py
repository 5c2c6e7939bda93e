"""Quantization what-ifs (issue 20 item 7): weight and KV memory per format by hand, the KV capacity they
leave, and the one-command precision sweep with its refusal of a format the GPU cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from capsim.cli import app
from simulator.catalog import get_model
from simulator.costmodel.inference import InferenceModel
from simulator.hardware import get_profile

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("precision", "bytes_per_weight"), [
    ("bf16", 2.0), ("fp8", 1.0), ("w8a8-int8", 1.0),
    ("w4a16", 0.5 + 2 / 128),          # 4 bits + one fp16 scale per group of 128
    ("nvfp4", 0.5 + 1 / 16),           # 4 bits + one FP8 scale per 16
])
def test_weight_bytes_per_gpu_by_format(precision: str, bytes_per_weight: float):
    m = get_model("llama-3.1-70b")
    emb = m.embedding_params() + m.head_params()                 # embeddings and lm_head stay 16-bit
    linear = m.total_params() - emb
    im = InferenceModel(model=m, hw=get_profile("b200"), tp=4, precision=precision)
    assert im.weight_bytes_per_gpu() == pytest.approx((linear * bytes_per_weight + emb * 2.0) / 4)


def test_kv_capacity_grows_with_what_quantization_frees():
    m, hw = get_model("llama-3.1-8b"), get_profile("h100-sxm")
    caps = {}
    for prec, kv in (("bf16", "bf16"), ("fp8", "bf16"), ("fp8", "fp8")):
        im = InferenceModel(model=m, hw=hw, precision=prec, kv_precision=kv)
        caps[(prec, kv)], mem = im.kv_capacity_tokens(kv_fraction=0.9, max_tokens=8192, max_seqs=256)
        free = (mem["capacity_gib"] - mem["weights_gib"] - mem["workspace_gib"] - mem["runtime_gib"]) * 2**30
        per_token = 32 * 2 * 8 * 128 * (2 if kv == "bf16" else 1)   # 32 layers × K,V × 8 KV heads × 128
        assert caps[(prec, kv)] == int(0.9 * free // per_token)
    assert caps[("bf16", "bf16")] < caps[("fp8", "bf16")] < caps[("fp8", "fp8")]


def test_precision_sweep_is_one_command_with_reasons():
    r = CliRunner().invoke(app, ["sweep", str(ROOT / "examples" / "serve_quantized.yaml"), "--set",
                                 "workload.duration_s=5", "--grid", "precision=fp8,w4a16,nvfp4"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "weights_gib_per_gpu" in r.stdout and "kv_cache_tokens" in r.stdout
    assert "precision=w4a16" in r.stdout and "precision=fp8" in r.stdout
    assert "'nvfp4' cannot run on h100-sxm" in r.output and "needs Blackwell tensor cores" in r.output
