"""Predict every measured training row in bench/data (copied from the reference set) and print the error.

Data: vTrain (MICRO'24) A100 single-node (1,440 rows) and multi-node (109 rows) Megatron-DeepSpeed
iteration times, activation checkpointing on; Korthikanti et al. 2022 Table 5 (full recompute and
sequence parallel + selective recompute); llm-foundry's FSDP runs, Megatron-Bridge's and NeMo 24.07's
performance tables and Megatron-Core r0.8.0's H100 weak scaling (``bench/megatron_scaling.py``).
Prints per-row error, MAPE, and the Spearman rank
correlation of layouts within each group of rows that train the same model on the same GPUs.

Usage: python bench/validate_training.py [--reference DIR] [--rows] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.megatron_scaling import weak_scaling  # noqa: E402
from bench.nemo_long_sequence import long_sequence  # noqa: E402
from simulator.scenario import parse_scenario  # noqa: E402
from simulator.training import simulate_training  # noqa: E402

VTRAIN_COLS = ["gpus", "global_batch", "micro_batch", "hidden", "heads", "layers", "seq", "tp", "dp", "pp", "measured_ms"]


def gpt(hidden: int, heads: int, layers: int, seq: int) -> dict:
    return {"name": f"gpt-h{hidden}-l{layers}", "layers": layers, "hidden": hidden, "heads": heads,
            "vocab": 51200, "max_positions": max(seq, 2048)}


# The software stack each data set was measured with. vTrain ran Megatron-DeepSpeed under DeepSpeed's
# engine, which reduces fp16 gradients after the backward (no overlap_comm) and adds each micro-batch's
# gradients into its fp16 accumulator in a pass of its own (no gradient-accumulation fusion), and its pipeline engine,
# whose rank topology puts data parallel inside pipeline parallel (as Megatron does). Korthikanti et al. ran
# Megatron-LM (2022), which also reduced after the backward, with DP = 1 so it does not matter.
# Each is a framework preset (simulator/training/frameworks.py, every value cited there).
DEEPSPEED = {"framework": "deepspeed"}
MEGATRON_2022 = {"framework": "megatron-2021"}


def predict(model: dict, *, gpus: int, tp: int, pp: int, dp: int, gb: int, mb: int, seq: int, recompute: str,
            stack: dict, sp: bool = False, v: int = 1, precision: str = "fp16",
            hardware: str = "a100-sxm-80gb") -> float:
    nodes = max(1, gpus // 8)
    doc = {
        "kind": "training", "model": model, "hardware": hardware,
        "cluster": {"nodes": nodes, "gpus_per_node": min(gpus, 8)},
        "parallelism": {"tp": tp, "pp": pp, "dp": dp, "sequence_parallel": sp, "virtual_stages": v,
                        "schedule": "interleaved" if v > 1 else "1f1b"},
        "training": {"seq_len": seq, "global_batch": gb, "micro_batch": mb, "precision": precision,
                     "recompute": recompute, "flash_attention": False, **stack},
    }
    return simulate_training(parse_scenario(doc)).iteration_time_s


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def vtrain(path: Path, multi: bool, hardware: str = "a100-sxm-80gb", **stack: object) -> pd.DataFrame:
    d = pd.read_csv(path, encoding="utf-8-sig")
    if multi:
        d = d.drop(columns=d.columns[0])
    d.columns = VTRAIN_COLS
    preds = []
    for r in d.itertuples():
        preds.append(1e3 * predict(gpt(r.hidden, r.heads, r.layers, r.seq), gpus=r.gpus, tp=r.tp, pp=r.pp, dp=r.dp,
                                   gb=r.global_batch, mb=r.micro_batch, seq=r.seq, recompute="full",
                                   stack={**DEEPSPEED, **stack}, hardware=hardware))
    d["predicted_ms"] = preds
    d["error_pct"] = 100 * (d.predicted_ms - d.measured_ms) / d.measured_ms
    d["group"] = [f"h{r.hidden} l{r.layers} {r.gpus}gpu gb{r.global_batch}" for r in d.itertuples()]
    return d


def korthikanti(path: Path, hardware: str = "a100-sxm-80gb", **stack: object) -> pd.DataFrame:
    d = pd.read_csv(path)
    rows = []
    for r in d.itertuples():
        m = gpt(r.hidden, r.heads, r.layers, r.seq)
        m["vocab"] = r.vocab
        # Interleaved with 3 virtual stages where the layers allow it (the paper's Figure 1 memory
        # matches v=3 for 175B and 530B).
        v = 3 if r.pp > 1 and r.layers % (r.pp * 3) == 0 and (r.global_batch // r.micro_batch) % r.pp == 0 else 1
        for mode, sp, rec, col in (("full recompute", False, "full", "iter_s_full_recompute"),
                                   ("SP+selective", True, "selective", "iter_s_seqpar_selective")):
            pred = predict(m, gpus=r.gpus, tp=r.tp, pp=r.pp, dp=r.dp, gb=r.global_batch, mb=r.micro_batch,
                           seq=r.seq, recompute=rec, sp=sp, v=v,
                           stack={**MEGATRON_2022, **stack}, hardware=hardware)
            meas = getattr(r, col)
            rows.append({"model": r.model, "mode": mode, "gpus": r.gpus, "measured_s": meas, "predicted_s": pred,
                         "error_pct": 100 * (pred - meas) / meas})
    return pd.DataFrame(rows)


# llm-foundry ran PyTorch FSDP under Composer: FULL_SHARD is ZeRO-3, SHARD_GRAD_OP ZeRO-2; its mixed
# precision PURE keeps parameters and gradients (so the reduce-scatter) in bf16, DEFAULT reduces fp32
# gradients (composer/trainer/mosaic_fsdp.py mixed_precision presets); gradients reduce as each layer's
# backward ends (FSDP's backward hooks), so overlapped. Attention: submit_benchmarks.py, which made every
# A100 row (commits 300cc5c5 to b2a43a14, 2023), sets attn_impl from --attn_impl, default 'triton':
# llm-foundry's Triton FlashAttention (the FlashAttention-1 algorithm), in the torch 1.13.1 image. MPT's
# configuration_mpt.py defaults attn_pdrop, resid_pdrop and emb_pdrop to 0 (no dropout) and modeling_mpt.py
# loss_fn to fused_crossentropy (flash-attn's xentropy kernel on the 16-bit logits).
FOUNDRY_ZERO = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0}
FOUNDRY_GRAD = {"PURE": "bf16", "DEFAULT": "fp32"}
FOUNDRY_GPU = {"A100-80GB": "a100-sxm-80gb", "A100-40GB": "a100-sxm-40gb"}


def simulate_row(doc: dict, rec: dict) -> dict:
    """``rec`` with the predicted step time of the scenario ``doc`` and, when capsim cannot run it as
    it ran (does not fit, refused), the reason: the row is reported, not dropped."""
    try:
        res = simulate_training(parse_scenario(doc))
        rec["predicted_s"] = res.iteration_time_s
        rec["error"] = "" if res.fits_in_memory else "does not fit in memory (ran in the data)"
    except Exception as e:  # the row is reported with the reason capsim refused it
        rec["predicted_s"], rec["error"] = float("nan"), str(e).splitlines()[0][:120]
    return rec


def with_error(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    out["error_pct"] = 100 * (out.predicted_s - out.measured_s) / out.measured_s
    return out


def llmfoundry(path: Path) -> pd.DataFrame:
    """The MPT rows as they ran (issue 17's configuration): a GPT of the row's d_model, heads, layers,
    FFN ratio and vocabulary; data parallel over every GPU; the row's micro and global batch; full
    recompute with activation checkpointing, else none; bf16. Rows capsim cannot fit are kept with
    the reason (the issue's exception count)."""
    skip = 1 if path.read_text().startswith("#") else 0
    d = pd.read_csv(path, skiprows=skip)
    rows = []
    for r in d.itertuples():
        model = {"name": f"mpt-d{r.d_model}-l{r.n_layers}", "layers": int(r.n_layers), "hidden": int(r.d_model),
                 "heads": int(r.n_heads), "ffn_hidden": int(r.ffn_expansion_ratio * r.d_model),
                 "vocab": int(r.vocab_size), "max_positions": int(r.seq_len)}
        gpus = int(r.num_gpus)
        doc = {"kind": "training", "model": model, "hardware": FOUNDRY_GPU[r.gpu_type],
               "cluster": {"nodes": max(1, gpus // 8), "gpus_per_node": min(gpus, 8)},
               "parallelism": {"tp": 1, "pp": 1, "dp": gpus, "zero_stage": FOUNDRY_ZERO[r.fsdp_sharding_strategy]},
               "training": {"framework": "llm-foundry", "seq_len": int(r.seq_len),
                            "global_batch": int(r.global_batch_size_seqs), "micro_batch": int(r.micro_batch_size),
                            "precision": "bf16", "grad_precision": FOUNDRY_GRAD[r.mp_mode],
                            "recompute": "full" if r.activation_checkpointing else "none", "flash_attention": True,
                            "attention_kernel": "flash1", "dropout": False}}
        rec = {"model": r.model, "gpus": gpus, "gpu": r.gpu_type, "seq": int(r.seq_len), "mb": int(r.micro_batch_size),
               "ckpt": bool(r.activation_checkpointing), "measured_s": float(r.derived_step_time_s)}
        rows.append(simulate_row(doc, rec))
    out = with_error(rows)
    out["group"] = [f"{m} {g}" for m, g in zip(out.model, out.gpu, strict=True)]
    return out


# Megatron-Bridge's performance table (containers 25.09-26.06). Each row as the table states it: layout
# (TP, PP, CP, VP, FSDP), micro and global batch, sequence, precision. What the table does not state is
# the framework's benchmark default, its preset (training.framework: nemo, version 25.09, in
# simulator/training/frameworks.py), cited from the recipes at the docs' commit 067f987d
# (src/megatron/bridge/perf_recipes): the distributed optimizer (ZeRO-1; FSDP rows shard everything,
# ZeRO-3), sequence parallelism with TP > 1 and its TP communication overlap (every TP > 1 Llama recipe sets
# a userbuffers tp_comm_overlap_cfg, e.g. llama/h100/llama3.py userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192; the
# TP1 8B recipes turn it off), the parameter all-gather overlapped with the next forward whenever dp > 1
# (training/comm_overlap.py _get_optimizer_overlap_cfgs), gradients reduced in bf16 (Megatron-Core's
# DistributedDataParallelConfig grad_reduce_in_fp32 default False), overlapped, TE's fused attention
# (flash2 class), no dropout (Llama), TE's fused cross entropy (_common._benchmark_common sets
# cross_entropy_fusion_impl "te"), no recompute (the table names none; later recipes recompute some
# layers of the 8B, so those rows are flagged). Precision: FP8-CS is FP8 with current scaling, FP8-MX
# and MXFP8 are mxfp8; "FP8" with no recipe (25.09 "primary", 26.x H100) takes the container's default
# and is flagged; the "alternate granularity" rows are fp8-block on H100 (128x128 weights, 1x128
# activations, as the table's note says) and mxfp8 on B200 (flagged: the note says 32x32 blocks).
BRIDGE_MODEL = {"LLAMA3_8B": "llama-3.1-8b", "LLAMA3_70B": "llama-3.1-70b", "LLAMA3.1_405B": "llama-3.1-405b"}
BRIDGE_GPU = {"H100-SXM-80GB": "h100-sxm", "B200": "b200"}


def bridge_precision(text: str, gpu: str) -> tuple[str, str | None, str]:
    """(capsim precision, fp8 recipe or None, flag) for the table's precision column."""
    t = text.strip()
    if t == "BF16":
        return "bf16", None, ""
    if t == "FP8-CS":
        return "fp8", "current", ""
    if t in ("FP8-MX", "MXFP8"):
        return "mxfp8", None, ""
    if t.startswith("FP8 alt granularity"):
        if gpu == "H100-SXM-80GB":
            return "fp8-block", None, ""
        return "mxfp8", None, "32x32-block FP8 read as mxfp8"
    if t.startswith("FP8"):
        return "fp8", "current", "FP8 recipe not stated (read as current scaling)"
    if t == "NVFP4":
        return "nvfp4", None, ""
    raise ValueError(f"unknown precision {text!r}")


def _bridge_doc(r: object, model: str, precision: str, recipe: str | None, *, ep: int = 1) -> dict:
    """One Megatron-Bridge table row as it ran: its layout and batch, the nemo 25.09 preset for the rest."""
    tp, pp, cp = int(r.tp), int(r.pp), int(r.cp)                       # type: ignore[attr-defined]
    v = int(r.vp) if r.vp == r.vp and r.vp > 1 else 1                   # type: ignore[attr-defined]
    fsdp = r.fsdp == r.fsdp and r.fsdp > 0                              # type: ignore[attr-defined]
    gpus = int(r.num_gpus)                                              # type: ignore[attr-defined]
    training = {"framework": "nemo", "framework_version": "25.09", "seq_len": int(r.seq_len),  # type: ignore[attr-defined]
                "global_batch": int(r.global_batch_size), "micro_batch": int(r.micro_batch_size),  # type: ignore[attr-defined]
                "precision": precision, "recompute": "none", "flash_attention": True, "dropout": False}
    if recipe is not None:
        training["fp8_recipe"] = recipe
    return {"kind": "training", "model": model, "hardware": BRIDGE_GPU[r.gpu_type],  # type: ignore[attr-defined]
            "cluster": {"nodes": max(1, gpus // 8), "gpus_per_node": min(gpus, 8)},
            "parallelism": {"tp": tp, "pp": pp, "cp": cp, "dp": gpus // (tp * pp * cp), **({"ep": ep} if ep > 1 else {}),
                            **({"zero_stage": 3} if fsdp else {}),
                            "virtual_stages": v, "schedule": "interleaved" if v > 1 else "1f1b"},
            "training": training}


def _bridge_rec(r: object, flag: str) -> dict:
    v = int(r.vp) if r.vp == r.vp and r.vp > 1 else 1                   # type: ignore[attr-defined]
    return {"model": r.model, "gpu": r.gpu_type, "gpus": int(r.num_gpus),  # type: ignore[attr-defined]
            "container": r.container_release, "precision": r.precision[:22],  # type: ignore[attr-defined]
            "tp": int(r.tp), "pp": int(r.pp), "cp": int(r.cp), "vp": v, "mb": int(r.micro_batch_size),  # type: ignore[attr-defined]
            "measured_s": float(r.derived_step_time_s), "flag": flag}  # type: ignore[attr-defined]


def megatron_bridge(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dense Llama pre-training rows as they ran (above); the other rows, with why they are not
    simulated."""
    d = pd.read_csv(path, skiprows=1)
    rows, skipped = [], []
    for r in d.itertuples():
        if r.task != "Pre-Training" or r.model not in BRIDGE_MODEL:
            why = (f"{r.task}: fine-tuning is out of scope for now" if r.task != "Pre-Training"
                   else "MoE/hybrid pre-training: see the MoE set below (issue 17 item 5)")
            skipped.append({"model": r.model, "gpu": r.gpu_type, "container": r.container_release, "reason": why})
            continue
        precision, recipe, flag = bridge_precision(r.precision, r.gpu_type)
        if r.model == "LLAMA3_8B":
            flag = "; ".join(x for x in (flag, "recompute not stated") if x)
        rows.append(simulate_row(_bridge_doc(r, BRIDGE_MODEL[r.model], precision, recipe), _bridge_rec(r, flag)))
    out = with_error(rows)
    # each model runs one layout per GPU (the rows repeat it over containers and recipes): no layouts to rank
    out["group"] = [str(i) for i in range(len(out))]
    return out, pd.DataFrame(skipped)


# The MoE pre-training rows of the same table, simulated as they ran (issue 17 item 5): experts sharded
# over EP by Megatron-Core's parallel folding with the recipes' expert-TP 1, balanced routing (the perf
# recipes set moe_router_force_load_balancing), each local expert's GEMM at the measured rate of its shape
# (Transformer Engine's GroupedLinear), the fused permute/unpermute, the recipe's dispatcher (alltoall or
# flex, below) and EP all-to-all overlap, the dropless dispatcher's host sync
# (simulator/costmodel/moe_training.py). The token-drop rows run their recipe's capacity factor 1 padded to
# capacity (apply_moe_token_drop's defaults): every expert gets exactly its capacity, so their shapes do not
# depend on the routing. The MTP row and the hybrid Mamba (Nemotron 3) rows are listed.
BRIDGE_MOE = {"Qwen3_30B_a3B": "qwen3-30b-a3b", "Qwen3_235B_a22B": "qwen3-235b-a22b", "GPT OSS 120B": "gpt-oss-120b",
              "DeepSeekV3": "deepseek-v3"}


# Each MoE row's recipe as its container ran it (bench/data/megatron_bridge_moe_recipes.csv, read from
# Megatron-Bridge's perf configs at the tag whose docs first list the container; how, in the .md beside
# it): the recipe's layout (the table's layout columns disagree on six rows, and where the two can be told
# apart by the measured times the recipe's is the one that ran: see the .md), the token dispatcher (flex:
# DeepEP or HybridEP), EP all-to-all overlap, TP communication overlap, and the token-drop rows' capacity
# factor and padding, the CUDA graph scopes, the selective recompute's modules. What capsim does not model
# from it is flagged on the row (the recompute of MLA's up-projections); HybridEP's SM count is not modelled.
RECIPES = "megatron_bridge_moe_recipes.csv"


def _first_word(text: object) -> str:
    return str(text).split(" ")[0].strip() if text == text else ""


def _listed(text: object) -> list[str]:
    """``[attn, moe_router] (WBC); ...`` → ``["attn", "moe_router"]``."""
    return [x.strip() for x in str(text).split("]")[0].strip("[").split(",")]


def _recipe_layout(text: str) -> dict[str, int]:
    """``mbs1 gbs1024 tp1 pp2 vp12 ep8 ngpu16`` → ints by key (``vp-`` → 1)."""
    out = {}
    for tok in text.split():
        key = tok.rstrip("0123456789-")
        val = tok[len(key):]
        out[key] = int(val) if val.isdigit() else 1
    return out


def bridge_moe_recipe(rec: pd.Series) -> tuple[dict, dict, str]:
    """(parallelism keys, training keys, flag) of one recipe row (above)."""
    lay = _recipe_layout(rec.recipe_layout)
    par = {"tp": lay["tp"], "pp": lay["pp"], "ep": lay["ep"], "virtual_stages": lay["vp"],
           "schedule": "interleaved" if lay["vp"] > 1 else "1f1b",
           "tp_comm_overlap": _first_word(rec.tp_comm_overlap) == "True" and lay["tp"] > 1}
    tr: dict = {"micro_batch": lay["mbs"], "global_batch": lay["gbs"],
                "moe_dispatcher": "flex" if _first_word(rec.moe_token_dispatcher_type) == "flex" else "alltoall",
                "moe_a2a_overlap": _first_word(rec["moe_a2a_overlap(overlap_moe_expert_parallel_comm)"]) == "True"}
    cf = _first_word(rec.moe_expert_capacity_factor)
    if cf not in ("None", ""):
        tr["moe_capacity_factor"] = float(cf)
        tr["moe_pad_to_capacity"] = _first_word(rec.moe_pad_expert_input_to_capacity) == "True"
    impl = _first_word(rec.cuda_graph_impl)
    if impl == "transformer_engine":              # TE-scoped graphs: the scopes the recipe lists
        tr["cuda_graph_scope"] = _listed(rec.cuda_graph_scope)
    elif impl == "local":                         # 25.09's legacy enable_cuda_graph: the whole layer
        tr["cuda_graph_scope"] = ["full"]
    flags = []
    if rec.layout_match != "yes":
        flags.append(f"recipe layout, table says {rec.csv_layout}")
    if _first_word(rec.recompute_granularity) == "selective":
        modules = _listed(rec.recompute_modules)
        tr["recompute"], tr["recompute_modules"] = "selective", [m for m in modules if m != "mla_up_proj"]
        if "mla_up_proj" in modules:      # capsim's training model runs MLA's projections as one QKV GEMM
            flags.append("recompute of mla_up_proj not modelled")
    return par, tr, "; ".join(flags)


def megatron_bridge_moe(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The MoE rows (above) as they ran, with capsim's MoE training as it is; the rest listed."""
    d = pd.read_csv(path, skiprows=1)
    recipes = pd.read_csv(path.parent / RECIPES).set_index("csv_row")
    rows, skipped = [], []
    for r in d.itertuples():
        if r.task != "Pre-Training" or r.model in BRIDGE_MODEL:
            continue
        base, _, variant = str(r.model).partition(" (")
        if base not in BRIDGE_MOE or "MTP" in variant:
            why = ("hybrid Mamba-MoE: out of scope for now" if base.startswith("Nemotron")
                   else "multi-token prediction heads: not modelled")
            skipped.append({"model": r.model, "reason": why})
            continue
        if r.derived_step_time_s != r.derived_step_time_s:
            skipped.append({"model": r.model, "reason": "no step time in the table"})
            continue
        precision, recipe, flag = bridge_precision(r.precision, r.gpu_type)
        if precision == "fp8" and str(recipes.loc[r.Index].fp8_recipe).startswith("FP8 current scaling"):
            flag = ""                                  # the recipe states it: current scaling
        par, tr, recipe_flag = bridge_moe_recipe(recipes.loc[r.Index])
        rec = _bridge_rec(r, "; ".join(x for x in (flag, recipe_flag) if x))
        doc = _bridge_doc(r, BRIDGE_MOE[base], precision, recipe, ep=par["ep"])
        doc["parallelism"].update(par)
        doc["parallelism"]["dp"] = int(r.num_gpus) // (par["tp"] * par["pp"] * int(r.cp))
        doc["training"].update(tr)
        rec.update(tp=par["tp"], pp=par["pp"], ep=par["ep"], vp=par["virtual_stages"], mb=tr["micro_batch"])
        rows.append(simulate_row(doc, rec))
    out = with_error(rows)
    out["group"] = [str(i) for i in range(len(out))]
    return out, pd.DataFrame(skipped)


# NeMo 24.07's performance table (DGX-H100, FP8), pre-training rows as they ran: the table's layout (TP, PP,
# CP, VP), batch, sequence; where it is silent, NeMo 24.07's performance configs (the nemo 24.07 preset):
# the distributed optimizer
# (distributed_fused_adam, ZeRO-1) with bf16 gradient sync and overlapped grad and param sync (the launcher's
# training configs: overlap_grad_sync and overlap_param_sync true), sequence parallelism and userbuffers TP overlap
# with TP > 1, Transformer Engine's FP8 with delayed scaling (fp8_hybrid, amax history; flagged, the table
# names no recipe), TE fused attention, Llama's zero dropout and GPT-3's 0.1, the default unfused fp32 loss,
# no recompute (the table names none).
NEMO_MODEL = {"GPT3-175B": "gpt3-175b", "LLAMA2-7B": "llama-2-7b", "LLAMA2-13B": "llama-2-13b",
              "LLAMA2-70B": "llama-2-70b", "LLAMA3-8B": "llama-3.1-8b", "LLAMA3-70B": "llama-3.1-70b"}


def nemo(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pre-training rows of models capsim has the shape of, as they ran (above); the rest listed."""
    d = pd.read_csv(path)
    rows, skipped = [], []
    for r in d.itertuples():
        if r.task != "pretrain" or r.model not in NEMO_MODEL:
            why = (f"{r.task}: fine-tuning is out of scope for now" if r.task != "pretrain"
                   else "model shape not in the table or the catalog (NeMo's GPT-3 5B/20B and Nemotron configs)")
            skipped.append({"model": r.model, "reason": why})
            continue
        tp, pp, cp = int(r.tp), int(r.pp), int(r.cp)
        v = int(r.vp) if r.vp == r.vp and r.vp > 1 else 1
        gpus = int(r.num_gpus)
        doc = {"kind": "training", "model": NEMO_MODEL[r.model], "hardware": "h100-sxm",
               "cluster": {"nodes": max(1, gpus // 8), "gpus_per_node": min(gpus, 8)},
               "parallelism": {"tp": tp, "pp": pp, "cp": cp, "dp": gpus // (tp * pp * cp), "virtual_stages": v,
                               "schedule": "interleaved" if v > 1 else "1f1b"},
               "training": {"framework": "nemo", "framework_version": "24.07", "seq_len": int(r.seq_len),
                            "global_batch": int(r.global_batch_size), "micro_batch": int(r.micro_batch_size),
                            "precision": "fp8", "recompute": "none", "flash_attention": True,
                            "dropout": r.model.startswith("GPT3")}}
        rec = {"model": r.model, "gpus": gpus, "tp": tp, "pp": pp, "cp": cp, "vp": v, "mb": int(r.micro_batch_size),
               "gb": int(r.global_batch_size), "measured_s": float(r.derived_step_time_s),
               "flag": "FP8 recipe read as delayed; recompute not stated"}
        rows.append(simulate_row(doc, rec))
    out = with_error(rows)
    out["group"] = [str(i) for i in range(len(out))]   # one layout per model: none to rank
    return out, pd.DataFrame(skipped)


def summarize(name: str, d: pd.DataFrame) -> dict:
    groups = [g for _, g in d.groupby("group") if len(g) >= 3]
    rhos = [spearman(g.measured_ms.to_numpy(), g.predicted_ms.to_numpy()) for g in groups]
    rhos = [x for x in rhos if x == x]
    return {"set": name, "rows": len(d), "mape_pct": d.error_pct.abs().mean(),
            "median_ape_pct": d.error_pct.abs().median(), "max_ape_pct": d.error_pct.abs().max(),
            "bias_pct": d.error_pct.mean(), "groups": len(rhos),
            "spearman_mean": float(np.mean(rhos)) if rhos else float("nan"),
            "spearman_min": float(np.min(rhos)) if rhos else float("nan")}


def print_summary(name: str, ok: pd.DataFrame) -> None:
    """One summary line of the rows that ran (seconds, as the per-row tables print them)."""
    print(pd.DataFrame([summarize(name, ok.rename(columns={"measured_s": "measured_ms", "predicted_s": "predicted_ms"}))])
          .to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def print_rows(rows: pd.DataFrame, cols: list[str], skipped: pd.DataFrame, name: str) -> None:
    """A development file's rows, its summary over those that fit, and the rows not simulated."""
    extra = ["flag"] if "flag" in rows else []
    print(rows[[*cols, "measured_s", "predicted_s", "error_pct", *extra, "error"]]
          .to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print_summary(name, rows[rows.error == ""])
    print(f"  not simulated: {len(skipped)} rows: "
          + "; ".join(f"{n} {why}" for why, n in skipped.reason.value_counts().items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, default=ROOT / "bench" / "data")
    ap.add_argument("--rows", action="store_true", help="print every single-node row too")
    ap.add_argument("--csv", type=Path, help="write all per-row predictions to this CSV")
    a = ap.parse_args()
    t0 = time.perf_counter()
    k = korthikanti(a.reference / "korthikanti2022_table5_a100.csv")
    multi = vtrain(a.reference / "vtrain_a100_multi_node.csv", multi=True)
    single = vtrain(a.reference / "vtrain_a100_single_node.csv", multi=False)
    pd.set_option("display.width", 200)
    print("== Korthikanti et al. 2022, Table 5 (A100, DP=1)")
    print(k.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"mean |error| {k.error_pct.abs().mean():.1f}%  max {k.error_pct.abs().max():.1f}%\n")
    print("== vTrain multi-node (64-512 A100), per row")
    cols = ["gpus", "hidden", "layers", "tp", "dp", "pp", "micro_batch", "measured_ms", "predicted_ms", "error_pct"]
    print(multi[cols].to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    if a.rows:
        print("\n== vTrain single-node, per row")
        print(single[cols].to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    print()
    summary = pd.DataFrame([summarize("vTrain multi-node", multi.assign(group=multi.hidden.astype(str))),
                            summarize("vTrain single-node", single)])
    print("== summary (Spearman: rank correlation of layouts within each model group)")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"Korthikanti Table 5: mean |error| {k.error_pct.abs().mean():.2f}%, max {k.error_pct.abs().max():.2f}%")
    foundry = llmfoundry(a.reference / "llmfoundry_mpt_training_throughput_a100.csv")
    ok = foundry[foundry.error == ""]
    print(f"\n== llm-foundry MPT on A100 with PyTorch FSDP (issue 17's development rows): "
          f"{len(foundry)} rows, {len(foundry) - len(ok)} flagged does-not-fit or refused")
    print_summary("llm-foundry FSDP", ok)
    for reason, n in foundry.loc[foundry.error != "", "error"].value_counts().items():
        print(f"  {n} rows: {reason}")
    bridge, skipped = megatron_bridge(a.reference / "megatron_bridge_perf_summary_h100_b200.csv")
    print(f"\n== Megatron-Bridge dense Llama pre-training on H100/B200 ({len(bridge)} rows), per row")
    print_rows(bridge, ["model", "gpu", "gpus", "container", "precision", "tp", "pp", "cp", "vp", "mb"], skipped,
               "Megatron-Bridge dense")
    moe, moe_skipped = megatron_bridge_moe(a.reference / "megatron_bridge_perf_summary_h100_b200.csv")
    print(f"\n== Megatron-Bridge MoE pre-training on H100/B200 ({len(moe)} rows), per row (targets not met yet: "
          "see the README)")
    print_rows(moe, ["model", "gpu", "gpus", "precision", "tp", "pp", "ep", "vp", "mb"], moe_skipped,
               "Megatron-Bridge MoE")
    nemo_rows, nemo_skipped = nemo(a.reference / "nemo_24.07_perf_summary_h100.csv")
    print(f"\n== NeMo 24.07 pre-training on H100, FP8 ({len(nemo_rows)} rows), per row")
    print_rows(nemo_rows, ["model", "gpus", "tp", "pp", "cp", "vp", "mb", "gb"], nemo_skipped, "NeMo 24.07 FP8")
    weak, weak_skipped = weak_scaling(a.reference / "megatron_lm_h100_weak_strong_scaling.csv", simulate_row)
    print(f"\n== Megatron-Core r0.8.0 weak scaling on H100, BF16 ({len(weak)} rows), per row "
          "(measured seconds from the table's TFLOP/s through Megatron's FLOP count)")
    print_rows(weak, ["model", "gpus", "tp", "pp", "dp", "gb"], weak_skipped, "Megatron-Core weak scaling")
    longs, longs_skipped = long_sequence(a.reference / "nemo_long_sequence_cp_scaling.csv", simulate_row)
    print(f"\n== NeMo long sequences with context parallelism, Llama 2 7B on H100, FP8 ({len(longs)} rows), per row "
          "(measured seconds from the table's TFLOP/s through NeMo's FLOP count of that time)")
    print_rows(longs, ["model", "seq_k", "gpus", "tp", "pp", "dp", "cp", "gb"], longs_skipped, "NeMo long sequences")
    n = len(k) + len(multi) + len(single) + len(foundry) + len(bridge) + len(moe) + len(nemo_rows) + len(weak) + len(longs)
    print(f"{n} "
          f"rows in {time.perf_counter() - t0:.1f} s")
    if a.csv:
        pd.concat([k.assign(set="korthikanti"), multi.assign(set="vtrain-multi"), single.assign(set="vtrain-single"),
                   foundry.assign(set="llm-foundry")]).to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
