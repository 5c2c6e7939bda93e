"""Predict TensorRT-LLM's published offline throughput table and print the error per row.

Data: ``shared/reference/trtllm_llama31_8b_h200_fp8.csv`` — total output tokens/s of Llama-3.1-8B
FP8 on one H200 at fixed input/output lengths, unbounded request rate (``trtllm-bench
throughput``). Each row is simulated as an offline workload (every request queued at t = 0)
with TensorRT-LLM's engine defaults, not tuned per row:
- ``max_batch_size`` 2048 and ``max_num_tokens`` 8192 (trtllm-build defaults),
- KV cache: 90% of the memory left after weights (``kv_cache_free_gpu_mem_fraction`` 0.9), FP8
  (set explicitly: capsim's ``kv_cache_precision: auto`` is bf16 for FP8 weights, as vLLM's),
- in-flight batching with chunked context (continuous batching, chunked prefill),
- capacity scheduler GUARANTEED_NO_EVICT (TensorRT-LLM's default): a request is admitted only when
  its final KV cache fits beside those already running, so nothing is ever preempted.
Throughput = output tokens of all requests / time to finish them all. Target: within 15% per row.

Usage: python bench/validate_serving.py [--reference DIR] [--requests N] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import parse_scenario, simulate_serving  # noqa: E402

MODELS = {"Llama-3.1-8B": "llama-3.1-8b"}
GPUS = {"H200": "h200"}


def scenario(row: pd.Series, requests: int) -> dict:
    return {
        "kind": "serving", "model": MODELS[row.model], "hardware": GPUS[row.gpu], "precision": row.precision.lower(),
        "replica": {"tp": int(row.tp), "batching": "continuous", "max_num_seqs": 2048, "max_batched_tokens": 8192,
                    "chunked_prefill": True, "kv_cache_fraction": 0.9, "scheduler_policy": "guaranteed_no_evict",
                    # the published rows are trtllm-bench runs of an FP8 checkpoint with an FP8 KV cache
                    "engine": "trtllm-bench", "kv_cache_precision": "fp8"},
        "workload": {"arrival": {"process": "offline", "requests": requests},
                     "prompt_tokens": {"dist": "fixed", "value": int(row.isl)},
                     "output_tokens": {"dist": "fixed", "value": int(row.osl)}},
        "seed": 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--requests", type=int, default=3000, help="requests per row (trtllm-bench datasets: thousands)")
    ap.add_argument("--csv", type=Path)
    a = ap.parse_args()
    path = a.reference / "trtllm_llama31_8b_h200_fp8.csv"
    if not path.exists():
        sys.exit(f"no reference data at {path}; pass --reference")
    ref = pd.read_csv(path)
    rows = []
    t0 = time.perf_counter()
    for _, row in ref.iterrows():
        r = simulate_serving(parse_scenario(scenario(row, a.requests)))
        pred = r.output_tokens_per_s
        err = (pred - row.output_tok_s_total) / row.output_tok_s_total
        rows.append({"isl": row.isl, "osl": row.osl, "measured": row.output_tok_s_total, "predicted": round(pred),
                     "error_pct": round(100 * err, 1), "kv_tokens": r.kv_cache_tokens_per_replica,
                     "preemptions": r.preemptions})
        print(f"isl {row.isl:>6} osl {row.osl:>5}: measured {row.output_tok_s_total:>7,.0f} tok/s, "
              f"predicted {pred:>7,.0f} ({100 * err:+.1f}%)", flush=True)
    out = pd.DataFrame(rows)
    errs = out["error_pct"].abs()
    within = int((errs <= 15).sum())
    print(f"\nTRT-LLM Llama-3.1-8B FP8 H200 offline throughput: MAPE {errs.mean():.1f}%, max {errs.max():.1f}%, "
          f"{within}/{len(out)} rows within 15%, signed mean {out['error_pct'].mean():+.1f}% "
          f"({time.perf_counter() - t0:.1f} s)")
    rho = out["measured"].rank().corr(out["predicted"].rank())
    print(f"Spearman rank correlation over rows: {rho:.3f}")
    if a.csv:
        out.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
