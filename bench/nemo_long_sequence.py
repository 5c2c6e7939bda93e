"""NeMo's long-sequence context-parallel table (docs/source/performance/performance_long_sequence.md), as it ran.

Data: ``bench/data/nemo_long_sequence_cp_scaling.csv``: Llama 2 7B on DGX-H100 (NeMo 24.03.01,
FP8) at 4K to 1M tokens, each row with its TP, PP, DP and CP, global batch and the TFLOP/s per
GPU it reached with context parallelism; and Llama 3 8B on DGX-B200 (NeMo 25.04).

Each H100 row is simulated as the table states it: its layout (GPUs = TP·PP·DP·CP), sequence and
batch, FP8, and the ``nemo`` preset (24.07, the oldest: the distributed optimizer, overlapped
gradient and parameter sync, sequence parallelism and TP overlap with TP > 1, delayed-scaling FP8,
TE's fused attention), the model from the catalog. Not stated, and flagged: micro-batch (read as
1) and recomputation (none).

Measured seconds: the TFLOP/s through the FLOP count NeMo's performance tables of that time use,
12·h²·(1 + g/a) + 18·h·f + 12·s·h per token and layer plus 6·h·V for the logits, times three
passes: attention over the full s × s scores, not causal. That convention is checked on NeMo
24.07's own table (Llama 2 7B at 4K: 767 TFLOP/s at 16,634 tokens/s is 4.611e10 FLOPs per
token; the formula gives 4.609e10 with full attention and 4.287e10 causal). Megatron-Bridge's
tables from 25.09 count attention causally (Llama 3 8B at 8K: 51.47e9 per token), and the
B200 rows' NeMo 25.04 lies between the two, so which count its TFLOP/s use is not known (a
factor of up to 2 at 1M tokens): those rows are listed, not simulated. So are the rows' "without
CP" columns, whose layouts the table does not give.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

LLAMA2_7B = {"layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 32, "ffn": 11008, "vocab": 32000}


def nemo_flops_per_token(*, seq: int, layers: int, hidden: int, heads: int, kv_heads: int, ffn: int,
                         vocab: int) -> float:
    """FLOPs per token of one training step by NeMo's count of that time (full attention)."""
    h = hidden
    return layers * h * h * (12 + 12 * kv_heads / heads + 18 * ffn / h + 12 * seq / h + 6 * vocab / (layers * h))


def doc(r: object) -> dict:
    tp, pp, dp, cp = (int(getattr(r, f"with_cp_{k}")) for k in ("tp", "pp", "dp", "cp"))
    gpus, seq = tp * pp * dp * cp, int(r.seq_len_tokens)                 # type: ignore[attr-defined]
    return {"kind": "training", "model": "llama-2-7b", "hardware": "h100-sxm",
            "cluster": {"nodes": max(1, gpus // 8), "gpus_per_node": min(gpus, 8)},
            "parallelism": {"tp": tp, "pp": pp, "cp": cp, "dp": dp},
            "training": {"framework": "nemo", "framework_version": "24.07", "seq_len": seq,
                         "global_batch": int(r.global_batch_size), "micro_batch": 1,  # type: ignore[attr-defined]
                         "precision": "fp8", "recompute": "none", "flash_attention": True, "dropout": False}}


def long_sequence(path: Path, simulate_row) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """The H100 rows as they ran (module docstring), and the rows not simulated with why."""
    d = pd.read_csv(path)
    rows, skipped = [], []
    for r in d.itertuples():
        if r.gpu_type != "H100-SXM-80GB":
            skipped.append({"model": r.model, "reason": "NeMo 25.04 (B200): its TFLOP/s' attention count (full or "
                                                         "causal) is not established"})
            continue
        dd = doc(r)
        par = dd["parallelism"]
        gpus = par["tp"] * par["pp"] * par["dp"] * par["cp"]
        seq, gbs = dd["training"]["seq_len"], dd["training"]["global_batch"]
        flops = gbs * seq * nemo_flops_per_token(seq=seq, **LLAMA2_7B)
        rec = {"model": r.model, "seq_k": int(r.seq_len_k), "gpus": gpus, "tp": par["tp"], "pp": par["pp"],
               "dp": par["dp"], "cp": par["cp"], "gb": gbs,
               "measured_s": flops / (float(r.tflops_per_gpu_with_cp) * 1e12 * gpus),
               "flag": "NeMo 24.03 read as the 24.07 preset; micro-batch 1, recompute none (not stated)"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows.append(simulate_row(dd, rec))
    out = pd.DataFrame(rows)
    out["error_pct"] = 100 * (out.predicted_s - out.measured_s) / out.measured_s
    out["group"] = "llama-2-7b h100"       # one model, one layout per sequence length: ranked as a group
    return out, pd.DataFrame(skipped)
