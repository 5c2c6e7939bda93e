"""Megatron-Core r0.8.0's H100 weak-scaling table (Megatron-LM README, "Performance Benchmarking"), as it ran.

Data: ``bench/data/megatron_lm_h100_weak_strong_scaling.csv`` (transcribed from the README's
``images/model_table.png``): GPT models of 1.7B to 462B parameters on 48 to 6,144 H100s, each
with its heads, hidden size, layers, TP, PP, DP and global batch, sequence 4,096, vocabulary
131,072, and the TFLOP/s per GPU it reached.

What the README states and each row is simulated with: fine-grained overlap of the data-parallel
(``--overlap-grad-reduce --overlap-param-gather``, so the distributed optimizer: ZeRO-1),
tensor-parallel (``--tp-comm-overlap``, which needs ``--sequence-parallel``: on whenever TP > 1)
and pipeline-parallel communication; BF16 (the MFU column is the TFLOP/s over 989); the
``megatron-core`` preset for the rest of the stack. What it does not state is read as
Megatron-LM's defaults and flagged on every row: micro-batch 1, no interleaving, no
recomputation, and a GPT of Megatron's defaults (LayerNorm, GeLU MLP of 4·hidden, learned
positions, embeddings tied to the output layer).

The measured step time comes from the row's TFLOP/s through the FLOP count Megatron reports them
with (``megatron/training/training.py`` ``num_floating_point_operations``: 12·B·s·l·h²·((1 + g/a +
s/h)·q/h + f/h + V/(2·l·h)), full attention, no recomputation), so capsim is compared on seconds.
The two strong-scaling end points (177B on 96 and 4,608 GPUs) give no layout and are listed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

MODEL_SIZES = "model_size"


def megatron_flops(*, batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """Megatron-LM's model FLOPs of one step of a GPT (multi-head attention, 4·h GeLU MLP)."""
    return 12 * batch * seq * layers * hidden * hidden * ((2 + seq / hidden) + 4 + vocab / (2 * layers * hidden))


def doc(r: object) -> dict:
    """The scenario of one table row (module docstring)."""
    tp, pp, dp = int(r.tp), int(r.pp), int(r.dp)                        # type: ignore[attr-defined]
    gpus, seq = int(r.num_gpus), int(r.seq_len)                          # type: ignore[attr-defined]
    model = {"name": f"gpt-{r.model_size}", "layers": int(r.num_layers),  # type: ignore[attr-defined]
             "hidden": int(r.hidden_size), "heads": int(r.attention_heads),  # type: ignore[attr-defined]
             "vocab": int(r.vocab_size), "max_positions": seq}          # type: ignore[attr-defined]
    return {"kind": "training", "model": model, "hardware": "h100-sxm",
            "cluster": {"nodes": max(1, gpus // 8), "gpus_per_node": min(gpus, 8)},
            "parallelism": {"tp": tp, "pp": pp, "dp": dp, "zero_stage": 1, "sequence_parallel": tp > 1,
                            "tp_comm_overlap": tp > 1},
            "training": {"framework": "megatron-core", "seq_len": seq,
                         "global_batch": int(r.global_batch_size_seqs), "micro_batch": 1,  # type: ignore[attr-defined]
                         "precision": "bf16", "recompute": "none", "flash_attention": True, "dropout": False,
                         "overlap_grad_reduce": True, "overlap_param_gather": True}}


def weak_scaling(path: Path, simulate_row) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """Every weak-scaling row as it ran (module docstring), and the rows not simulated with why."""
    d = pd.read_csv(path)
    rows, skipped = [], []
    for r in d.itertuples():
        if r.tp != r.tp or r.table_row != r.table_row:
            skipped.append({"model": r.model_size, "reason": "strong-scaling end point: layout not stated"})
            continue
        flops = megatron_flops(batch=int(r.global_batch_size_seqs), seq=int(r.seq_len), layers=int(r.num_layers),
                               hidden=int(r.hidden_size), vocab=int(r.vocab_size))
        measured = flops / (float(r.tflops_per_sec_per_gpu) * 1e12 * int(r.num_gpus))
        rec = {"model": r.model_size, "gpus": int(r.num_gpus), "tp": int(r.tp), "pp": int(r.pp), "dp": int(r.dp),
               "gb": int(r.global_batch_size_seqs), "measured_s": measured,
               "flag": "micro-batch, interleaving, recompute not stated: 1, none, none"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # r0.8.0 is older than the preset (0.12): same keys
            rows.append(simulate_row(doc(r), rec))
    out = pd.DataFrame(rows)
    out["error_pct"] = 100 * (out.predicted_s - out.measured_s) / out.measured_s
    out["group"] = [str(i) for i in range(len(out))]   # one layout per model: none to rank
    return out, pd.DataFrame(skipped)
