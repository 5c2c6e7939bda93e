"""Kernel-level validation of the measured tables, and the in-model factor derived from Vidur.

Three checks, each printed per GPU and kernel class with the house error table (rows, MAPE, median
and worst absolute error, bias, Spearman rank correlation of predicted against measured):

1. Held-out interpolation, on the committed tables (``hardware_profiles/measured/<gpu>/``): for
   each table and each size axis, every ``--every``-th interior grid line of each key (index k, 2k,
   ... of its sorted values, never the first or last) is left out with all its points, the
   interpolator is rebuilt from the rest exactly as the cost model builds it
   (``simulator.silicon.tables.table_grid``) and asked for the left-out points. A whole grid line
   goes, not single points: a single point would sit on a line that is still there and read back
   as unmeasured. Boundary values are never left out (an interpolator cannot predict them); a
   left-out point whose new cell has an unmeasured corner gets no prediction and is counted as
   skipped. Each prediction is compared with what the full grid reads at that point: the measured
   time, except where the table's decode-range envelope lowered a noise spike
   (``simulator.silicon.tables.MONOTONE``; the raw time is kept in the ``raw_us`` column), so this
   checks interpolation, not the envelope. Target: MAPE <= 5% per GPU and class.
2. In-model factor: Vidur's CUDA-timed operator times inside real models (fp16, A100 and H100,
   ``vidur_mlp_op_profiles_a100_h100.csv.gz``) against the isolated table time of the same GEMM
   (the training basis' bf16 table, read raw: no in-model factor). Factor = median(in-model /
   table) over the A100 rows; checked on the H100 rows (target: MAPE <= 8%). The memory-bound ops
   Vidur times (norms, activation, residual add, rope) are compared with the roofline
   ``costmodel.ops.memory_op`` (bytes / (HBM bandwidth x efficiency.elementwise) + kernel latency)
   the same way; reported, not applied.
3. Collectives: Vidur's measured all-reduce (and send/recv) on A100/H100 against
   ``costmodel.collectives.collective_time`` / ``p2p_time`` on the matching profile, and against
   the raw NCCL table (``hw.kernels.collective``) for single-node groups; per size band, small
   (latency-bound) messages apart. Target: MAPE <= 10% on one NVSwitch node; Vidur's multi-node
   rows (an unnamed network) and its pairwise-NVLink machines (not the NVSwitch node these profiles
   describe) are printed too, not targets.

Usage: python bench/validate_kernels.py [--reference DIR] [--every K] [--gpus a,b] [--derive]
       [--csv PREFIX]
``--derive`` prints only the in-model factor's derivation (the value in simulator/silicon/in_model.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.validate_training import spearman  # noqa: E402
from simulator.costmodel.collectives import Group, collective_time, p2p_time  # noqa: E402
from simulator.costmodel.ops import memory_op  # noqa: E402
from simulator.hardware import MEASURED_DIR, HardwareProfile, get_profile  # noqa: E402
from simulator.silicon.format import COLUMNS, KEYS, read_rows  # noqa: E402
from simulator.silicon.grid import _norm  # noqa: E402
from simulator.silicon.in_model import IN_MODEL  # noqa: E402
from simulator.silicon.tables import load_measured, table_grid  # noqa: E402

GPUS = ("a100-sxm-80gb", "h100-sxm", "h200", "b200", "b300", "gb200", "gb300", "l40s", "rtx-pro-6000")
HELD_KINDS = ("gemm", "context_attention", "generation_attention", "context_mla", "generation_mla", "collective", "moe")
# Vidur's GPU folders (a100, h100: its DGX-class nodes, memory size not stated) -> the capsim profiles
# with measured tables for those GPUs
VIDUR_GPUS = {"A100": "a100-sxm-80gb", "H100": "h100-sxm"}
VIDUR_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
VIDUR_MEMORY_OPS = ("input_layernorm", "post_attention_layernorm", "mlp_act", "add", "attn_rope")
FP16 = 2  # bytes per element: Vidur profiles in float16
# size bands of a collective's buffer: latency-bound, mixed, bandwidth-bound
BANDS = ((0, 2**16, "< 64 KiB"), (2**16, 2**20, "64 KiB-1 MiB"), (2**20, 2**24, "1-16 MiB"),
         (2**24, float("inf"), ">= 16 MiB"))
TARGET = {"held_out": 5.0, "in_model": 8.0, "collective": 10.0}


def error_stats(measured: Iterable[float], predicted: Iterable[float]) -> dict[str, float]:
    """The house error table of one group of rows (percent): MAPE, median, worst, bias, Spearman."""
    m, p = np.asarray(list(measured), dtype=float), np.asarray(list(predicted), dtype=float)
    ok = np.isfinite(p) & np.isfinite(m)
    m, p = m[ok], p[ok]
    if len(m) == 0:
        return {"rows": 0, "mape_pct": np.nan, "median_pct": np.nan, "worst_pct": np.nan, "bias_pct": np.nan,
                "spearman": np.nan}
    e = 100 * (p - m) / m
    return {"rows": len(m), "mape_pct": float(np.mean(np.abs(e))), "median_pct": float(np.median(np.abs(e))),
            "worst_pct": float(np.max(np.abs(e))), "bias_pct": float(np.mean(e)),
            "spearman": spearman(m, p) if len(m) > 2 else np.nan}


# ---- 1. held-out interpolation ----------------------------------------------------------------------
def held_out(profile: str, *, every: int = 5, kinds: Iterable[str] = HELD_KINDS, engines: Iterable[str] | None = None,
             dtypes: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per left-out point and axis of every table of ``profile``: its measured and predicted
    time (NaN: skipped, its cell in the reduced grid has an unmeasured corner)."""
    if every < 2:
        raise ValueError(f"--every must be at least 2 (got {every}): the neighbours of a left-out line must stay")
    measured = load_measured(str(MEASURED_DIR / profile))
    kinds, engines = set(kinds), None if engines is None else set(engines)
    out: list[pd.DataFrame] = []
    for ref in measured.tables:
        if ref.kind not in kinds or (engines is not None and ref.engine not in engines):
            continue
        cols = read_rows(ref.path, ref.kind)
        if dtypes is not None and "dtype" in cols:
            keep = np.isin(np.asarray(cols["dtype"]), list(dtypes))
            cols = {c: [v for v, k in zip(vs, keep, strict=True) if k] for c, vs in cols.items()}
        if not cols["time_us"]:
            continue
        for df in _held_out_table(cols, ref.kind, every):
            out.append(df.assign(gpu=profile, engine=ref.engine, version=ref.engine_version))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _held_out_table(cols: dict[str, list[Any]], kind: str, every: int) -> list[pd.DataFrame]:
    names = COLUMNS[kind]
    keys, axes = names[:KEYS[kind]], names[KEYS[kind]:-1]
    n = len(cols["time_us"])
    group = [tuple(_norm(cols[k][i]) for k in keys) for i in range(n)]
    time_us = np.asarray(cols["time_us"], dtype=float)
    full = table_grid(cols, kind)     # what the cost model reads at each point (the raw time, or its envelope)
    frames = []
    for axis in axes:
        x = np.asarray(cols[axis], dtype=float)
        lines: dict[tuple[Any, ...], set[float]] = {}
        for g, v in zip(group, x, strict=True):
            lines.setdefault(g, set()).add(float(v))
        held_lines = {g: {u[i] for i in range(every, len(u) - 1, every)} for g, u in
                      ((g, sorted(vs)) for g, vs in lines.items())}
        held = np.array([float(v) in held_lines[g] for g, v in zip(group, x, strict=True)])
        if not held.any():
            continue
        rest = {c: [v for v, h in zip(vs, held, strict=True) if not h] for c, vs in cols.items()}
        grid = table_grid(rest, kind)
        idx = np.flatnonzero(held)
        pred = [grid(group[i], tuple(cols[a][i] for a in axes)) for i in idx]
        dtype = [str(cols["dtype"][i]) for i in idx]
        frames.append(pd.DataFrame({
            "kind": kind, "cls": [f"gemm {d}" if kind == "gemm" else kind for d in dtype], "axis": axis,
            "key": [group[i] for i in idx], "point": [tuple(cols[a][i] for a in axes) for i in idx],
            "raw_us": time_us[idx],
            "measured_us": [full(group[i], tuple(cols[a][i] for a in axes)) for i in idx],
            "predicted_us": [np.nan if p is None else p for p in pred]}))
    return frames


def held_out_summary(d: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (gpu, cls), g in d.groupby(["gpu", "cls"], sort=False):
        s = error_stats(g.measured_us, g.predicted_us)
        rows.append({"gpu": gpu, "class": cls, "held": len(g), "skipped": int(g.predicted_us.isna().sum()), **s,
                     "target": "met" if s["mape_pct"] <= TARGET["held_out"] else "missed"})
    return pd.DataFrame(rows)


# ---- 2. in-model factor --------------------------------------------------------------------------
def vidur_ops(reference: Path) -> pd.DataFrame:
    """Vidur's in-model operator rows, one per (row, op), with the op's shape: GEMM m/n/k (Vidur's
    ColumnParallelLinear/RowParallelLinear shards, vidur/profiling/mlp/mlp_impl.py) or the bytes a
    memory-bound op moves (reads + writes, fp16)."""
    path = reference / "vidur_mlp_op_profiles_a100_h100.csv.gz"
    if not path.exists():
        sys.exit(f"no Vidur operator profiles at {path}; pass --reference")
    d = pd.read_csv(path)
    if set(d.dtype) != {"float16"}:
        raise ValueError(f"{path}: expected float16 rows only, found {sorted(set(d.dtype))}")
    d["gpu"] = d.gpu_type.str.split().str[0]
    d = d[d.gpu.isin(list(VIDUR_GPUS))]
    rows = []
    for r in d.itertuples():
        hd, tp, t, h = r.n_embd // r.n_head, r.tp, r.num_tokens, r.n_embd
        ffn = r.n_expanded_embd // tp
        gemms = {"attn_pre_proj": ((r.n_head + 2 * r.n_kv_head) * hd // tp, h),     # fused QKV
                 "attn_post_proj": (h, r.n_head * hd // tp),                          # attention output
                 "mlp_up_proj": ((2 if r.use_gated_mlp else 1) * ffn, h),             # gate+up fused
                 "mlp_down_proj": (h, ffn)}
        for op, (n, k) in gemms.items():
            rows.append({"gpu": r.gpu, "model": r.model, "tp": tp, "tokens": t, "op": op, "kind": "gemm",
                         "m": t, "n": n, "k": k, "bytes": np.nan, "vidur_us": 1e3 * getattr(r, f"{op}_median_ms")})
        gated = bool(r.use_gated_mlp)
        nbytes = {
            # RMSNorm (LayerNorm for phi-2): read x, write y, the weight (and LayerNorm's bias)
            "input_layernorm": FP16 * (2 * t * h + (1 if gated else 2) * h),
            "post_attention_layernorm": FP16 * (2 * t * h + h),
            # SiluAndMul reads gate and up, writes one; GELU reads and writes one
            "mlp_act": FP16 * t * ffn * (3 if gated else 2),
            # residual + hidden; phi-2 (parallel block) adds attention + mlp + residual: two kernels
            "add": FP16 * t * h * (3 if gated else 6),
            # rotary embedding in place on q and k, plus the cos/sin cache row and the int64 position
            "attn_rope": FP16 * (2 * t * (r.n_head + r.n_kv_head) // tp * hd + t * hd) + 8 * t,
        }
        for op, b in nbytes.items():
            ms = getattr(r, f"{op}_median_ms")
            if ms == ms:       # phi-2 has no post-attention norm (NaN)
                rows.append({"gpu": r.gpu, "model": r.model, "tp": tp, "tokens": t, "op": op, "kind": "memory",
                             "m": np.nan, "n": np.nan, "k": np.nan, "bytes": float(b), "vidur_us": 1e3 * ms})
    return pd.DataFrame(rows)


def isolated_times(ops: pd.DataFrame) -> pd.DataFrame:
    """Add ``table_us``: the raw (factor-free) interpolated bf16 GEMM time of each GEMM row from the
    training basis of its GPU (NaN where the table does not cover the shape), and ``roofline_us``
    for the memory-bound rows."""
    ops = ops.copy()
    ops["table_us"] = np.nan
    ops["roofline_us"] = np.nan
    for gpu, profile in VIDUR_GPUS.items():
        hw = get_profile(profile)
        basis = hw.kernels
        if basis is None or "gemm" not in basis.chosen:
            raise SystemExit(f"profile {profile} has no measured GEMM table")
        grid = basis.measured.grid(basis.chosen["gemm"])
        sel = (ops.gpu == gpu) & (ops.kind == "gemm")
        t = [grid(("bf16",), (m, n, k)) for m, n, k in zip(ops.m[sel], ops.n[sel], ops.k[sel], strict=True)]
        ops.loc[sel, "table_us"] = [np.nan if x is None else x for x in t]
        sel = (ops.gpu == gpu) & (ops.kind == "memory")
        ops.loc[sel, "roofline_us"] = [1e6 * memory_op(hw, op, b).time for op, b in
                                       zip(ops.op[sel], ops.bytes[sel], strict=True)]
    ops["isolated_us"] = ops.table_us.where(ops.kind == "gemm", ops.roofline_us)
    return ops


def derive_factors(ops: pd.DataFrame) -> dict[str, float]:
    """Median of in-model / isolated over the A100 rows: 'gemm' (all four GEMMs) and each memory op."""
    a = ops[(ops.gpu == "A100") & ops.isolated_us.notna()]
    ratio = a.vidur_us / a.isolated_us
    out = {"gemm": float(ratio[a.kind == "gemm"].median())}
    for op in VIDUR_MEMORY_OPS:
        out[op] = float(ratio[a.op == op].median())
    return out


def gemm_factor(reference: Path) -> float:
    """The GEMM in-model factor from the data (what ``IN_MODEL['gemm']`` must equal)."""
    ops = vidur_ops(reference)
    return derive_factors(isolated_times(ops[ops.kind == "gemm"]))["gemm"]


def in_model_report(ops: pd.DataFrame, factors: dict[str, float]) -> pd.DataFrame:
    """Error of isolated time x factor against Vidur's in-model time: the GEMMs together and one by
    one (the GEMM factor), each memory-bound op with its own factor; A100 fitted, H100 held out."""
    groups = [("GEMM (4 ops)", "gemm", "gemm")] + [(op, op, "gemm") for op in VIDUR_GEMMS] + [
        (op, op, op) for op in VIDUR_MEMORY_OPS]
    rows = []
    for gpu, role in (("A100", "fitted"), ("H100", "held out")):
        g = ops[ops.gpu == gpu]
        for name, what, factor in groups:
            x = g[(g.kind == what) | (g.op == what)]
            cov = x.isolated_us.notna()
            f = factors[factor]
            s = error_stats(x.vidur_us[cov], x.isolated_us[cov] * f)
            raw = error_stats(x.vidur_us[cov], x.isolated_us[cov])
            rows.append({"gpu": gpu, "role": role, "op": name, "rows": int(cov.sum()), "uncovered": int((~cov).sum()),
                         "factor": f, "own_median": float((x.vidur_us / x.isolated_us)[cov].median()),
                         "mape_pct": s["mape_pct"], "median_pct": s["median_pct"], "worst_pct": s["worst_pct"],
                         "bias_pct": s["bias_pct"], "spearman": s["spearman"], "mape_factor1_pct": raw["mape_pct"]})
    return pd.DataFrame(rows)


def layer_rows(ops: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Per Vidur row (one model, TP and token count): the sum of its four GEMMs, predicted vs measured."""
    g = ops[ops.kind == "gemm"].copy()
    g["row"] = g.groupby(["gpu", "model", "tp", "tokens", "op"]).cumcount()   # repeated measurements
    s = g.groupby(["gpu", "model", "tp", "tokens", "row"]).agg(vidur_us=("vidur_us", "sum"),
                                                              table_us=("table_us", lambda v: v.sum(min_count=4)))
    rows = []
    for gpu, x in s.groupby(level="gpu"):
        st = error_stats(x.vidur_us, x.table_us * factor)
        rows.append({"gpu": gpu, "what": "sum of the 4 GEMMs per Vidur row", **st})
    return pd.DataFrame(rows)


# ---- 3. collectives ------------------------------------------------------------------------------
def collectives(reference: Path) -> pd.DataFrame:
    path = reference / "vidur_collective_profiles.csv.gz"
    if not path.exists():
        sys.exit(f"no Vidur collective profiles at {path}; pass --reference")
    d = pd.read_csv(path)
    if set(d.dtype) != {"float16"}:
        raise ValueError(f"{path}: expected float16 rows only, found {sorted(set(d.dtype))}")
    hws: dict[str, HardwareProfile] = {g: get_profile(p) for g, p in VIDUR_GPUS.items()}
    rows = []
    for r in d.itertuples():
        hw = hws[r.gpu_type]
        n, per_node, b = int(r.num_workers), int(r.devices_per_node), float(r.size_bytes)
        single = per_node >= n
        if r.collective == "all_reduce":
            model = collective_time(hw, "all_reduce", b, Group(n, per_node))
            t = hw.kernels.collective("all_reduce", ranks=n, nbytes=b) if single and hw.kernels else None
        elif r.collective == "send_recv":
            model, t = p2p_time(hw, b, same_node=per_node == n), None
        else:
            continue
        # Vidur's *_pairwise_nvlink machines link GPUs in NVLink pairs, not through the NVSwitch of
        # the DGX/HGX node these profiles describe: reported, not a target
        topo = ("pairwise NVLink" if "pairwise" in r.network_profile else "NVSwitch node" if single
                else "multi-node")
        band = next(name for lo, hi, name in BANDS if lo <= b < hi)
        rows.append({"gpu": r.gpu_type, "network": r.network_profile, "topology": topo, "op": r.collective,
                     "ranks": n, "per_node": per_node, "bytes": b, "band": band, "measured_us": 1e3 * r.median_ms,
                     "model_us": 1e6 * model, "table_us": np.nan if t is None else 1e6 * t})
    return pd.DataFrame(rows)


def collective_summary(c: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = []
    for key, g in c.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        sm = error_stats(g.measured_us, g.model_us)
        st = error_stats(g.measured_us, g.table_us)
        rows.append({**dict(zip(by, key, strict=True)), "rows": len(g), "model_mape_pct": sm["mape_pct"],
                     "model_bias_pct": sm["bias_pct"], "table_mape_pct": st["mape_pct"],
                     "table_bias_pct": st["bias_pct"], "table_worst_pct": st["worst_pct"],
                     "table_spearman": st["spearman"]})
    return pd.DataFrame(rows)


def band_order(c: pd.DataFrame) -> pd.DataFrame:
    order = {name: i for i, (_, _, name) in enumerate(BANDS)}
    return c.assign(_o=c.band.map(order)).sort_values(["gpu", "topology", "op", "ranks", "per_node", "_o"]).drop(
        columns="_o")


# ---- driver --------------------------------------------------------------------------------------
def fmt(d: pd.DataFrame) -> str:
    return d.to_string(index=False, float_format=lambda x: f"{x:.2f}")


def print_derivation(ops: pd.DataFrame, factors: dict[str, float]) -> pd.DataFrame:
    rep = in_model_report(ops, factors)
    a = ops[(ops.gpu == "A100") & (ops.kind == "gemm")]
    print(f"== In-model factor (Vidur fp16 in-model / isolated bf16 table, training basis: "
          f"{get_profile('a100-sxm-80gb').kernels.describe()['gemm']} on A100, "
          f"{get_profile('h100-sxm').kernels.describe()['gemm']} on H100)")
    print(f"GEMM factor = median over {int(a.table_us.notna().sum())} A100 GEMM rows "
          f"({int(a.table_us.isna().sum())} outside the table) = {factors['gemm']:.4f}; "
          f"IN_MODEL['gemm'] = {IN_MODEL.get('gemm')} in simulator/silicon/in_model.py"
          f"{'' if abs(IN_MODEL.get('gemm', 1.0) - factors['gemm']) < 5e-4 else ' (DIFFERS: update it)'}")
    print(fmt(rep))
    print(fmt(layer_rows(ops, factors["gemm"])))
    return rep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--every", type=int, default=5, help="leave out every K-th interior grid line (default 5)")
    ap.add_argument("--gpus", default=",".join(GPUS), help="profiles for the held-out check")
    ap.add_argument("--derive", action="store_true", help="print only the in-model factor's derivation")
    ap.add_argument("--csv", help="write PREFIX_held_out.csv, PREFIX_in_model.csv, PREFIX_collectives.csv")
    a = ap.parse_args()
    pd.set_option("display.width", 220)
    t0 = time.perf_counter()
    ops = isolated_times(vidur_ops(a.reference))
    factors = derive_factors(ops)
    if a.derive:
        print_derivation(ops, factors)
        return

    gpus = [g.strip() for g in a.gpus.split(",") if g.strip()]
    unknown = [g for g in gpus if not (MEASURED_DIR / g).is_dir()]
    if unknown:
        sys.exit(f"no measured tables for {', '.join(unknown)}; profiles with tables: {', '.join(GPUS)}")
    print(f"== 1. Held-out interpolation (every {a.every}th interior grid line of each axis left out; "
          "all engines' tables pooled per GPU and class)")
    held = pd.concat([held_out(g, every=a.every) for g in gpus], ignore_index=True)
    hs = held_out_summary(held)
    print(fmt(hs))
    print("\nMAPE % by axis left out, and by engine:")
    print(breakdown(held).to_string(float_format=lambda x: f"{x:.1f}"))
    print(f"{int((hs.target == 'met').sum())} of {len(hs)} GPU x class rows within {TARGET['held_out']:.0f}%; "
          f"{int(hs.skipped.sum())} of {int(hs.held.sum())} left-out points skipped (a corner unmeasured)\n")

    print_derivation(ops, factors)
    print()

    print("== 3. Collectives: Vidur's measurements (eager torch.distributed NCCL, median kernel time) vs capsim's "
          "model (collective_time / p2p_time) and the raw NCCL table (single node)")
    coll = collectives(a.reference)
    print(fmt(collective_summary(band_order(coll), ["gpu", "topology", "op", "ranks", "per_node", "band"])))
    node = coll[(coll.topology == "NVSwitch node") & (coll.op == "all_reduce")]
    node_bands = collective_summary(band_order(node), ["gpu", "band"])
    large = collective_summary(node[node.bytes >= 2**20].assign(band=">= 1 MiB"), ["gpu", "band"])

    print("\n== Summary")
    print(f"Held-out interpolation, MAPE % (target <= {TARGET['held_out']:.0f}%):")
    print(hs.pivot_table(index="gpu", columns="class", values="mape_pct", sort=False).to_string(
        float_format=lambda x: f"{x:.1f}"))
    rep = in_model_report(ops, factors)
    print(f"In-model GEMM factor {factors['gemm']:.4f} (median over A100 rows), target H100 MAPE <= "
          f"{TARGET['in_model']:.0f}%:")
    print(fmt(rep[rep.op == "GEMM (4 ops)"]))
    print(f"Collectives, single NVSwitch node all-reduce (target <= {TARGET['collective']:.0f}%):")
    print(fmt(pd.concat([node_bands, large], ignore_index=True)))
    print(f"\n{len(held)} held-out points, {len(ops)} Vidur op rows, {len(coll)} collective rows in "
          f"{time.perf_counter() - t0:.0f} s")
    if a.csv:
        held.to_csv(f"{a.csv}_held_out.csv", index=False)
        ops.to_csv(f"{a.csv}_in_model.csv", index=False)
        coll.to_csv(f"{a.csv}_collectives.csv", index=False)


def breakdown(held: pd.DataFrame) -> pd.DataFrame:
    def mape(g: pd.DataFrame) -> float:
        return error_stats(g.measured_us, g.predicted_us)["mape_pct"]

    by_axis = held.groupby(["gpu", "cls", "axis"], sort=False).apply(mape).unstack("axis")
    by_engine = held.groupby(["gpu", "cls", "engine"], sort=False).apply(mape).unstack("engine")
    return by_axis.join(by_engine)


if __name__ == "__main__":
    main()
