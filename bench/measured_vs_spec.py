"""Measured-table time vs spec-sheet time for two kernels' worth of work users ask about.

- one decode step of Llama-3.1-8B on one H100 (vLLM 0.24 tables), batch 1 and 64, 2,048 cached
  tokens per sequence;
- one 8,192-token prefill of Llama-3.1-70B on B200 with TP=8 (vLLM 0.24 tables), bf16 and fp8.

The spec-sheet time is the same cost model with the GPU's tables set aside (``spec_only``): datasheet
peaks × the profile's efficiency, with wave quantization, and the ring model for collectives.

Usage: python bench/measured_vs_spec.py
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator.catalog import get_model  # noqa: E402
from simulator.costmodel.inference import InferenceModel  # noqa: E402
from simulator.costmodel.transformer import decode_step_ops, prefill_ops  # noqa: E402
from simulator.hardware import HardwareProfile, get_profile  # noqa: E402


def by_kind(ops: tuple) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for o in ops:
        out[o.kind] += o.time
    return out


def show(title: str, measured: dict[str, float], spec: dict[str, float], extra_m: float, extra_s: float) -> None:
    print(f"\n{title}")
    print(f"  {'kernels':12s} {'measured ms':>12s} {'spec ms':>10s} {'ratio':>7s}")
    for k in sorted(set(measured) | set(spec)):
        m, s = measured.get(k, 0.0), spec.get(k, 0.0)
        print(f"  {k:12s} {m * 1e3:12.3f} {s * 1e3:10.3f} {m / s if s else float('nan'):7.2f}")
    tm, ts = sum(measured.values()) + extra_m, sum(spec.values()) + extra_s
    if extra_m or extra_s:
        print(f"  {'head+embed':12s} {extra_m * 1e3:12.3f} {extra_s * 1e3:10.3f}")
    print(f"  {'total':12s} {tm * 1e3:12.3f} {ts * 1e3:10.3f} {tm / ts:7.2f}")


def decode(hw: HardwareProfile, batch: int, ctx: int) -> tuple[dict[str, float], float]:
    m = get_model("llama-3.1-8b")
    kinds: dict[str, float] = defaultdict(float)
    for spec, n in m.layer_groups():
        for k, v in by_kind(decode_step_ops(spec, hw, tp=1, batch=batch, kv_tokens=batch * ctx, precision="bf16")).items():
            kinds[k] += n * v
    head = InferenceModel(m, hw).head_time(batch)
    return kinds, head


def prefill(hw: HardwareProfile, seq: int, precision: str) -> dict[str, float]:
    m = get_model("llama-3.1-70b")
    kinds: dict[str, float] = defaultdict(float)
    for spec, n in m.layer_groups():
        for k, v in by_kind(prefill_ops(spec, hw, tp=8, batch=1, seq=seq, precision=precision)).items():
            kinds[k] += n * v
    return kinds


def main() -> None:
    h100 = get_profile("h100-sxm")
    for batch in (1, 64):
        mh, sh = h100.with_engine("vllm"), h100.spec_only()
        (km, hm), (ks, hs) = decode(mh, batch, 2048), decode(sh, batch, 2048)
        show(f"Llama-3.1-8B decode step, H100 SXM, bf16, batch {batch}, 2,048 cached tokens each "
             f"(tables: {', '.join(f'{k} {v}' for k, v in (mh.kernels.describe() if mh.kernels else {}).items())})",
             km, ks, hm, hs)
    b200 = get_profile("b200")
    for precision in ("bf16", "fp8"):
        mb, sb = b200.with_engine("vllm"), b200.spec_only()
        show(f"Llama-3.1-70B prefill of 8,192 tokens, B200 TP=8, {precision} (80 layers, no head)",
             prefill(mb, 8192, precision), prefill(sb, 8192, precision), 0.0, 0.0)
        if mb.kernels is not None and mb.kernels.coverage.misses:
            print("  outside the tables:", "; ".join(f"{r['kind']} {r['shape']}" for r in mb.kernels.coverage.rows()))


if __name__ == "__main__":
    main()
