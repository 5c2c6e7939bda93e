"""Predict TensorRT-LLM's published offline throughput table and print the error per row.

Data: ``shared/reference/trtllm_llama31_8b_h200_fp8.csv`` — total output tokens/s of Llama-3.1-8B
FP8 on one H200 at fixed input/output lengths, unbounded request rate (``trtllm-bench
throughput``). Each row is simulated as an offline workload (every request queued at t = 0) run
the way TensorRT-LLM's perf-overview (docs/source/performance/perf-overview.md, v1.0) says it was:
``trtllm-bench --model $model throughput --dataset $dataset --backend pytorch`` on NVIDIA's ModelOpt
FP8 checkpoint, with its other options at their defaults. Those defaults are capsim's
``replica.engine: trtllm-bench`` preset (simulator/serving/engines/presets.py), not keys set here:

- ``max_batch_size`` / ``max_num_tokens`` from trtllm-bench's own sizing heuristic
  (tensorrt_llm/bench/build/tuning.py calc_engine_setting: the KV cache's request capacity at the
  row's ISL+OSL, rounded), raised to the longest prompt + max_batch_size with chunking off;
- chunked context off, capacity scheduler GUARANTEED_NO_EVICT (trtllm-bench throughput's defaults);
- KV cache: 90% of the memory left after the model (``--kv_cache_free_gpu_mem_fraction`` 0.90;
  the doc says 0.95 was used "in many cases" without saying which), in FP8 (the ModelOpt
  checkpoint's KV quantization, which ``kv_cache_dtype: auto`` keeps);
- in-flight batching, generation requests scheduled before context requests.
Each row runs the number of requests the doc's dataset table lists for it (30000 at 128/128 down
to 1000 at 20000/2000). Throughput = output tokens of all requests / time to finish them all.
Target: within 15% per row.

With ``--moe``: the newer table's MoE rows only (DeepSeek-R1-0528, GPT-OSS 120B/20B, Llama 4 Maverick,
Qwen3-235B-A22B, Qwen3-30B-A3B in NVFP4; DEPn = ``attention_dp: n``, ``ep: n``), per (model, GPU) too.

Usage: python bench/validate_serving.py [--reference DIR] [--requests N] [--csv OUT.csv] [--moe [--moe-requests N]]
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
from simulator.errors import CapsimError  # noqa: E402

MODELS = {"Llama-3.1-8B": "llama-3.1-8b"}
# requests per row, as the perf-overview's "Preparing a Dataset" table lists them ($num_requests by ISL/OSL)
DOC_REQUESTS = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (1000, 2000): 1500, (2048, 128): 3000,
                (2048, 2048): 1500, (5000, 500): 1500, (1000, 1000): 3000, (500, 2000): 3000, (20000, 2000): 1000}
GPUS = {"H200": "h200", "B200 180GB (DGX B200)": "b200", "GB200 192GB (GB200 NVL72)": "gb200",
        "RTX 6000 Pro Blackwell Server Edition": "rtx-pro-6000"}
# the newer perf-overview's dense rows: Llama 3.3 70B (Llama-3.1-70B's architecture) in NVIDIA's NVFP4 checkpoint
BLACKWELL_MODELS = {"LLaMA v3.3 70B": "llama-3.1-70b"}
BLACKWELL_REQUESTS = 1000   # the dense Blackwell rows' count (offline throughput is flat beyond a few batches)
# requests per MoE row, as the newer perf-overview's "Preparing a Dataset" table lists them ($num_requests by
# ISL/OSL; 1000/1000, absent there, from the older doc's table above). A DEP replica holds thousands of sequences
# (attention_dp × max_batch_size), so 1000 requests were one wave of prefill then decode, not the run's steady state
NEWER_DOC_REQUESTS = {(1024, 1024): 3000, (8192, 1024): 1500, (1024, 8192): 1500, (32768, 1024): 1000,
                      (1024, 32768): 1000, (1000, 1000): DOC_REQUESTS[(1000, 1000)]}
# its MoE rows (NVIDIA's NVFP4 checkpoints; GPT-OSS's MXFP4 experts on Blackwell's FP4 tensor cores), as capsim's
# config.json models (simulator/catalog/hf_configs); DEPn = attention_dp n × ep n, tp 1
MOE_MODELS = {"Deepseek R1 0528": "deepseek-r1", "GPT-OSS 120B": "gpt-oss-120b", "GPT-OSS 20B": "gpt-oss-20b",
              "LLaMA v4 Maverick": "llama-4-maverick", "Qwen3 235B A22B": "qwen3-235b-a22b",
              "Qwen3 30B A3B": "qwen3-30b-a3b"}


def scenario(row: pd.Series, requests: int) -> dict:
    return {
        "kind": "serving", "model": MODELS[row.model], "hardware": GPUS[row.gpu], "precision": row.precision.lower(),
        # everything else is the trtllm-bench preset: its sizing heuristic, chunking off, GNE, FP8 KV
        "replica": {"tp": int(row.tp), "batching": "continuous", "engine": "trtllm-bench"},
        "workload": {"arrival": {"process": "offline", "requests": requests},
                     "prompt_tokens": {"dist": "fixed", "value": int(row.isl)},
                     "output_tokens": {"dist": "fixed", "value": int(row.osl)}},
        "seed": 0,
    }


def blackwell(ref: pd.DataFrame, models: dict[str, str] = BLACKWELL_MODELS, label: str = "Llama 3.3 70B NVFP4",
              requests: int | None = BLACKWELL_REQUESTS) -> pd.DataFrame:
    """TensorRT-LLM's newer perf-overview (B200, GB200, RTX 6000 Pro): the rows of ``models`` (the dense ones by
    default; :data:`MOE_MODELS` with their attention DP and EP), per-GPU output tok/s."""
    rows = []
    for _, row in ref[ref.model.isin(list(models))].iterrows():
        d = {"kind": "serving", "model": models[row.model], "hardware": GPUS[row.gpu_type],
             "precision": {"FP4": "nvfp4", "FP8": "fp8"}[row.precision],
             "replica": {"tp": int(row.tp), "pp": int(row.pp), "attention_dp": int(row.attention_dp),
                         "ep": int(row.ep), "batching": "continuous", "engine": "trtllm-bench"},
             "pricing": {"usd_per_gpu_hour": 1.0},
             "workload": {"arrival": {"process": "offline",
                                      "requests": requests or NEWER_DOC_REQUESTS[(int(row.isl_tokens),
                                                                                  int(row.osl_tokens))]},
                          "prompt_tokens": {"dist": "fixed", "value": int(row.isl_tokens)},
                          "output_tokens": {"dist": "fixed", "value": int(row.osl_tokens)}},
             "seed": 0}
        try:
            r = simulate_serving(parse_scenario(d))
        except CapsimError as e:
            print(f"{models[row.model]:16} {GPUS[row.gpu_type]:13} {row.parallel_mapping:8} isl {row.isl_tokens:>6} "
                  f"osl {row.osl_tokens:>5}: not simulated: {str(e).splitlines()[0]}", flush=True)
            continue
        pred = r.output_tokens_per_s / int(row.num_gpus)
        meas = float(row.output_tokens_per_sec_per_gpu)
        err = 100 * (pred - meas) / meas
        rows.append({"model": models[row.model], "gpu": GPUS[row.gpu_type], "mapping": row.parallel_mapping,
                     "isl": row.isl_tokens,
                     "osl": row.osl_tokens, "measured": meas, "predicted": round(pred), "error_pct": round(err, 1)})
        print(f"{models[row.model]:16} {GPUS[row.gpu_type]:13} {row.parallel_mapping:8} isl {row.isl_tokens:>6} "
              f"osl {row.osl_tokens:>5}: "
              f"measured {meas:>7,.0f} tok/s/GPU, predicted {pred:>7,.0f} ({err:+.1f}%)"
              f"{f', {r.rejected} rejected' if r.rejected else ''}", flush=True)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    e = out["error_pct"]
    rho = out.measured.rank().corr(out.predicted.rank())
    print(f"\nTRT-LLM {label} (B200, GB200, RTX 6000 Pro) offline throughput: {len(out)} rows, MAPE "
          f"{e.abs().mean():.1f}%, max {e.abs().max():.1f}%, signed mean {e.mean():+.1f}%, Spearman {rho:.3f}")
    if models is not BLACKWELL_MODELS:
        for (mdl, gpu), g in out.groupby(["model", "gpu"]):
            eg = g["error_pct"]
            rg = g.measured.rank().corr(g.predicted.rank()) if len(g) >= 3 else float("nan")
            print(f"  {mdl:16} {gpu:13} {len(g):3} rows: MAPE {eg.abs().mean():5.1f}%, worst {eg.abs().max():5.1f}%, "
                  f"bias {eg.mean():+5.1f}%, Spearman {rg:.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, default=ROOT / "bench" / "data")
    ap.add_argument("--requests", type=int, default=None,
                    help="requests per row (default: the perf-overview's $num_requests for the row's ISL/OSL)")
    ap.add_argument("--csv", type=Path)
    ap.add_argument("--moe", action="store_true", help="only the newer table's MoE rows (DeepSeek-R1, GPT-OSS, "
                    "Llama 4 Maverick, Qwen3 MoE: attention DP × EP)")
    ap.add_argument("--moe-requests", type=int, default=None,
                    help="requests per MoE row (default: the newer perf-overview's $num_requests for its ISL/OSL)")
    a = ap.parse_args()
    newer = a.reference / "trtllm_perf_overview_post_v1.0_blackwell_rtx.csv"
    if a.moe:
        skip = 1 if newer.read_text().startswith("#") else 0
        moe = blackwell(pd.read_csv(newer, skiprows=skip), MOE_MODELS, "MoE NVFP4 (DEP/TP)", a.moe_requests)
        if a.csv:
            moe.to_csv(a.csv, index=False)
        return
    path = a.reference / "trtllm_llama31_8b_h200_fp8.csv"
    if not path.exists():
        sys.exit(f"no reference data at {path}; pass --reference")
    ref = pd.read_csv(path)
    rows = []
    t0 = time.perf_counter()
    for _, row in ref.iterrows():
        n = a.requests or DOC_REQUESTS[(int(row.isl), int(row.osl))]
        r = simulate_serving(parse_scenario(scenario(row, n)))
        pred = r.output_tokens_per_s
        err = (pred - row.output_tok_s_total) / row.output_tok_s_total
        eng = r.engine_settings
        rows.append({"isl": row.isl, "osl": row.osl, "measured": row.output_tok_s_total, "predicted": round(pred),
                     "error_pct": round(100 * err, 1), "kv_tokens": r.kv_cache_tokens_per_replica,
                     "max_batch_size": eng["max_num_seqs"], "max_num_tokens": eng["max_batched_tokens"],
                     "preemptions": r.preemptions, "rejected": r.rejected})
        print(f"isl {row.isl:>6} osl {row.osl:>5}: measured {row.output_tok_s_total:>7,.0f} tok/s, "
              f"predicted {pred:>7,.0f} ({100 * err:+.1f}%)  [max_batch_size {eng['max_num_seqs']}, "
              f"max_num_tokens {eng['max_batched_tokens']}{f', {r.rejected} rejected' if r.rejected else ''}]",
              flush=True)
    out = pd.DataFrame(rows)
    errs = out["error_pct"].abs()
    within = int((errs <= 15).sum())
    print(f"\nTRT-LLM Llama-3.1-8B FP8 H200 offline throughput: MAPE {errs.mean():.1f}%, max {errs.max():.1f}%, "
          f"{within}/{len(out)} rows within 15%, signed mean {out['error_pct'].mean():+.1f}% "
          f"({time.perf_counter() - t0:.1f} s)")
    rho = out["measured"].rank().corr(out["predicted"].rank())
    print(f"Spearman rank correlation over rows: {rho:.3f}")
    if newer.exists():
        print()
        # its first line is a '# ...' note; '#' also starts the anchors inside rows, so no comment=
        skip = 1 if newer.read_text().startswith("#") else 0
        bw = blackwell(pd.read_csv(newer, skiprows=skip))
        out = pd.concat([out.assign(table="h200_8b"), bw.assign(table="blackwell_70b")])
    if a.csv:
        out.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
