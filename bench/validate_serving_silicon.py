"""Predict aiconfigurator's measured closed-loop serving rows and print the error.

Every dense, aggregated row of ``bench/data/aiconfigurator_silicon_sample.csv`` is simulated as it
was run (bench/serving_silicon.py says how), and its mean TTFT, mean TPOT, E2E (TTFT + (OSL - 1) *
TPOT) and output tokens/s per GPU compared with the measured ones. Printed per engine and per
metric: MAPE, median, worst, signed mean (bias), and the Spearman rank correlation of TPOT and of
tokens/s per GPU across configurations (TP, concurrency) within each (model, GPU, engine,
ISL/OSL) group, as the median over groups of at least four rows.

With ``--moe``, the aggregated rows of MoE checkpoints instead (DeepSeek-R1/V3, Kimi-K2.5, GPT-OSS-120B,
Qwen3-235B-A22B, MiniMax-M2.5; ``bench.serving_silicon.moe_rows``: the row's tp, attention DP and EP), per
(model, GPU, engine) group too; the checkpoints capsim cannot express (Qwen3.5, GLM-5) are listed with
the reason and their row counts.

Usage: python bench/validate_serving_silicon.py [--moe] [--jobs N] [--limit N] [--csv OUT.csv] [--engine E]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving_silicon import Row, dense_rows, e2e_ms, moe_rows, simulate, spearman, tok_s_per_gpu  # noqa: E402


def _run(args: tuple[Row, str, bool]) -> dict[str, Any]:
    import warnings
    row, start, repeated = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # version fallbacks are reported per row below
        return simulate(row, start=start, repeated_prompts=repeated)


def frame(rows: list[Row], preds: list[dict[str, Any]]) -> pd.DataFrame:
    out = []
    for row, p in zip(rows, preds, strict=True):
        rec: dict[str, Any] = {"id": row.id, "engine": row.engine, "version": row.version or "?",
                               "model": row.model, "gpu": row.hardware, "precision": row.precision,
                               "precision_given": row.precision_given, "tp": row.tp, "dp": row.attention_dp,
                               "ep": row.ep, "c": row.concurrency,
                               "isl": row.isl, "osl": row.osl, "ttft_ms": row.ttft_ms, "tpot_ms": row.tpot_ms,
                               "error": p.get("error", "")}
        if "ttft_ms" in p:
            rec |= {"pred_ttft_ms": p["ttft_ms"], "pred_tpot_ms": p["tpot_ms"], "preemptions": p["preemptions"],
                    "e2e_ms": e2e_ms(row.ttft_ms, row.tpot_ms, row.osl),
                    "pred_e2e_ms": e2e_ms(p["ttft_ms"], p["tpot_ms"], row.osl),
                    "tok_s_gpu": tok_s_per_gpu(row, row.ttft_ms, row.tpot_ms),
                    "pred_tok_s_gpu": tok_s_per_gpu(row, p["ttft_ms"], p["tpot_ms"])}
        out.append(rec)
    d = pd.DataFrame(out)
    for m in ("ttft_ms", "tpot_ms", "e2e_ms", "tok_s_gpu"):
        if f"pred_{m}" in d:
            d[f"err_{m}"] = 100 * (d[f"pred_{m}"] - d[m]) / d[m]
    return d


def group_rho(d: pd.DataFrame, metric: str) -> tuple[float, int]:
    """Median over (model, GPU, engine, version, ISL/OSL) groups of >= 4 rows of the rank correlation."""
    rhos = [spearman(g[metric], g[f"pred_{metric}"]) for _, g in
            d.groupby(["model", "gpu", "engine", "version", "precision", "isl", "osl"]) if len(g) >= 4]
    rhos = [r for r in rhos if np.isfinite(r)]
    return (float(np.median(rhos)) if rhos else float("nan")), len(rhos)


def ttft_intercepts(d: pd.DataFrame) -> None:
    """The constant term of TTFT per campaign: in each (engine, version, model, GPU, precision, TP) group at
    its lowest concurrency, the line TTFT = a + b * ISL through the measured rows and through the predicted
    ones; a measured intercept above the predicted one is time the model does not charge (frontend,
    scheduling). Printed per engine and version as the median over groups with at least two ISLs."""
    ok = d[d["error"] == ""]
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for key, g in ok.groupby(["engine", "version", "model", "gpu", "precision", "tp"]):
        g = g[g["c"] == g["c"].min()].groupby("isl")[["ttft_ms", "pred_ttft_ms"]].mean().reset_index()
        if len(g) < 2:
            continue
        a_meas = np.polyfit(g["isl"], g["ttft_ms"], 1)[1]
        a_pred = np.polyfit(g["isl"], g["pred_ttft_ms"], 1)[1]
        out.setdefault((str(key[0]), str(key[1])), []).append((a_meas, a_pred))
    print("\nTTFT intercept at each group's lowest concurrency (median over groups, ms):")
    for (eng, ver), v in sorted(out.items()):
        m, p_ = np.median([x for x, _ in v]), np.median([y for _, y in v])
        print(f"  {eng:6} {ver:14} {len(v):3} groups: measured {m:7.1f}, predicted {p_:7.1f}, gap {m - p_:+7.1f}")


def tpot_gaps_by_tp(d: pd.DataFrame, *, max_c: int = 16) -> None:
    """Measured minus predicted TPOT (ms) at low concurrency (c <= ``max_c``), median per campaign (engine,
    version, model, GPU, precision) and TP. A gap that scales as 1/TP follows the GEMM time (a rate error); one
    that appears only at TP > 1 and grows with the all-reduces per step is a per-collective cost the tables miss."""
    ok = d[(d["error"] == "") & (d["c"] <= max_c)]
    if ok.empty:
        return
    gap = (ok["tpot_ms"] - ok["pred_tpot_ms"]).rename("gap")
    t = ok.assign(gap=gap).groupby(["engine", "version", "model", "gpu", "precision", "tp"])["gap"].median().unstack("tp")
    t = t[t.notna().sum(axis=1) >= 2]
    if t.empty:
        return
    print(f"\nTPOT gap, measured - predicted (ms), median at c <= {max_c}, by TP (campaigns with >= 2 TPs):")
    print(t.round(2).to_string(na_rep="-"))


# E2E / TTFT bands: how many times a relative E2E error a row's TTFT error can be
KAPPA_BANDS = (0, 5, 10, 30, 100, math.inf)


def ttft_conditioning(d: pd.DataFrame) -> None:
    """TTFT error by how well the row conditions it. In a closed loop TTFT is what is left of a user's cycle after
    its decode, TTFT = E2E - (OSL - 1)·TPOT (aiperf's definitions), so a relative error e in E2E is an error
    e·κ in TTFT, κ = E2E / TTFT (aiconfigurator's queueing design, docs/design/queueing_model.md §6.16: "steady
    TTFT is the small residual of two large terms"). Printed per band of κ: rows, TTFT, E2E and TPOT MAPE."""
    ok = d[d["error"] == ""]
    if ok.empty:
        return
    kappa = ok["e2e_ms"] / ok["ttft_ms"]
    bands = pd.cut(kappa, list(KAPPA_BANDS), right=False)
    print("\nTTFT error by kappa = E2E / TTFT (a relative E2E error e is kappa·e of TTFT):")
    for band, g in ok.groupby(bands, observed=True):
        print(f"  kappa {band!s:13} {len(g):5} rows: TTFT MAPE {g['err_ttft_ms'].abs().mean():6.1f}%, "
              f"E2E {g['err_e2e_ms'].abs().mean():5.1f}%, TPOT {g['err_tpot_ms'].abs().mean():5.1f}%")


def summary(d: pd.DataFrame, label: str) -> None:
    ok = d[d["error"] == ""]
    print(f"\n{label}: {len(d)} rows, {len(ok)} simulated, {len(d) - len(ok)} not expressible")
    for m, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("e2e_ms", "E2E"), ("tok_s_gpu", "tok/s/GPU")):
        if ok.empty:
            break
        e = ok[f"err_{m}"]
        print(f"  {name:9} MAPE {e.abs().mean():6.1f}%  median {e.abs().median():5.1f}%  worst {e.abs().max():6.1f}%"
              f"  bias {e.mean():+6.1f}%  within 10%: {int((e.abs() <= 10).sum())}/{len(e)}")
    if not ok.empty:
        for m, name in (("tpot_ms", "TPOT"), ("tok_s_gpu", "tok/s/GPU")):
            rho, n = group_rho(ok, m)
            print(f"  Spearman {name} within groups: median {rho:.2f} over {n} groups")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="every k-th row only, for a quick look")
    ap.add_argument("--engine", choices=["trtllm", "vllm", "sglang"])
    ap.add_argument("--csv", type=Path, help="write every row with its prediction")
    ap.add_argument("--repeated-prompts", action="store_true",
                    help="an open question: aiperf's 100-prompt dataset repeats and vLLM/SGLang keep their prefix "
                         "caches on (bench/serving_silicon.py)")
    ap.add_argument("--start", choices=["burst", "stationary"], default="burst",
                    help="how the c users start: burst (aiperf's concurrency mode, default) or stationary "
                         "(a sensitivity check: users already spread over one request lifetime)")
    ap.add_argument("--moe", action="store_true", help="the MoE rows (module docstring)")
    a = ap.parse_args()
    skipped: list[tuple[str, str, int]] = []
    rows, skipped = moe_rows() if a.moe else (dense_rows(), [])
    if a.engine:
        rows = [r for r in rows if r.engine == a.engine]
    if a.limit:
        rows = rows[:: max(1, len(rows) // a.limit)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as ex:
        preds = list(ex.map(_run, [(r, a.start, a.repeated_prompts) for r in rows], chunksize=4))
    d = frame(rows, preds)
    print(f"simulated {len(d)} rows in {time.perf_counter() - t0:.0f} s")
    for reason, n in d[d["error"] != ""]["error"].value_counts().items():
        print(f"  not expressible ({n} rows): {reason}")
    for ckpt, why, n in skipped:
        print(f"  not expressible ({n} rows): {ckpt}: {why}")
    summary(d, "all MoE aggregated rows" if a.moe else "all dense aggregated rows")
    if a.moe:
        ok = d[d["error"] == ""]
        print("\nper (model, GPU, engine): rows, tok/s/GPU MAPE, worst, bias, Spearman; TPOT MAPE, bias")
        for (mdl, gpu, eng), g in ok.groupby(["model", "gpu", "engine"]):
            e, t = g["err_tok_s_gpu"], g["err_tpot_ms"]
            rho = spearman(g["tok_s_gpu"], g["pred_tok_s_gpu"])
            print(f"  {mdl:16} {gpu:9} {eng:6} {len(g):4}  {e.abs().mean():6.1f}% {e.abs().max():6.1f}% {e.mean():+6.1f}%"
                  f"  {rho:5.2f}   {t.abs().mean():6.1f}% {t.mean():+6.1f}%")
    for eng, g in d.groupby("engine"):
        summary(g, f"engine {eng}")
        for ver, gv in g.groupby("version"):
            ok = gv[gv["error"] == ""]
            if len(ok):
                print(f"    {eng} {ver:14} {len(ok):4} rows: TTFT MAPE {ok['err_ttft_ms'].abs().mean():5.1f}% "
                      f"(bias {ok['err_ttft_ms'].mean():+5.1f}%), TPOT MAPE {ok['err_tpot_ms'].abs().mean():5.1f}% "
                      f"(bias {ok['err_tpot_ms'].mean():+5.1f}%)")
    ttft_intercepts(d)
    ttft_conditioning(d)
    tpot_gaps_by_tp(d)
    flagged = d[~d["precision_given"] & (d["error"] == "")]
    if len(flagged):
        summary(flagged, "flagged: rows with no precision given, simulated as bf16")
    if a.csv:
        d.to_csv(a.csv, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
