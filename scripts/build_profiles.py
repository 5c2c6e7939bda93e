"""Regenerate hardware_profiles/*.yaml and hardware_profiles/prices.yaml.

Two sources of datasheet numbers:

* ``../shared/reference/gpu_specs.csv`` (REFERENCE_DIR) for the profiles in ``PROFILES``; the few
  numbers it does not carry (SM counts, FP32 peaks, measured link bandwidths, efficiency defaults)
  are listed here with their provenance. Prices come from REFERENCE_DIR/cloud_prices.csv.
* ``hardware_profiles/spec_sheets.csv`` (committed) for the spec-sheet profiles in ``SPEC_PROFILES``:
  one row per number, each with its kind (vendor / derived / measured / assumed) and citation,
  which the profile's ``source`` map repeats.

Run: ``python scripts/build_profiles.py [REFERENCE_DIR]`` (default ../shared/reference).
"""

from __future__ import annotations

import csv
import gzip
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "hardware_profiles"
SPEC_SHEETS = OUT / "spec_sheets.csv"
MEASURED = OUT / "measured"

# profile name -> (gpu_specs.csv row, extras)
# Efficiency maxima: best measured torch BF16 GEMM over peak from shared/reference/README.md
# (A100 271/312, H100 795/989, H200 FP8 1453/1979, MI300X 668/1307). GPUs without a measurement
# use 0.75 (assumed, between the A100 and H100 figures) until calibrated.
# Collective bus bandwidths: NCCL measured, shared/reference/README.md (A100 NVLink ~230 GB/s,
# H100 NVLink ~370 GB/s, NDR 400 Gb/s IB ~46-48 GB/s per NIC). Others are assumed as noted.
# domain: GPUs per NVLink (Infinity Fabric) domain, HardwareProfile.nvlink_domain_gpus: 8 on HGX/DGX
# SXM baseboards and the MI300X platform, 1 on PCIe cards without a bridge (see DOMAIN_SOURCE).
PROFILES: dict[str, dict] = {
    "h100-sxm": dict(domain=8, row="H100-SXM5-80GB", num_sms=132, fp32=67, gemm_max=0.80, gemm_src="measured 795/989 TF (reference README)",
                     intra=("nvlink", 370, "NCCL ring all-reduce busbw measured (reference README)"),
                     inter=("infiniband-ndr", 46, "NDR 400 Gb/s per GPU, measured 46-48 GB/s (reference README)")),
    "h100-pcie": dict(domain=1, domain_src="PCIe card; the optional NVLink bridge joins only pairs of cards, so 1 (no bridge) is assumed",
                      row="H100-PCIe-80GB", num_sms=114, fp32=51, gemm_max=0.75, gemm_src="assumed",
                      intra=("pcie5", 40, "assumed: PCIe Gen5 x16 64 GB/s/dir, ~60% achieved by NCCL"),
                      inter=("ethernet", 12.5, "assumed: 100 Gb/s per GPU")),
    "h200": dict(domain=8, row="H200-SXM-141GB", num_sms=132, fp32=67, gemm_max=0.80, gemm_src="same die as H100 SXM: measured 795/989 TF",
                 fp8_max=0.73, intra=("nvlink", 370, "NVLink4 as H100 SXM (reference README)"),
                 inter=("infiniband-ndr", 46, "NDR 400 Gb/s per GPU (reference README)")),
    "a100-sxm-80gb": dict(domain=8, row="A100-SXM4-80GB", num_sms=108, fp32=19.5, gemm_max=0.87, gemm_src="measured 271/312 TF (reference README)",
                          intra=("nvlink", 230, "NCCL all-reduce busbw measured on A100 NVLink (reference README)"),
                          inter=("infiniband-hdr", 23, "DGX A100: 8x HDR 200 Gb/s = 25 GB/s per GPU; 92% achieved as NDR measurements")),
    "a100-sxm-40gb": dict(domain=8, row="A100-SXM4-40GB", num_sms=108, fp32=19.5, gemm_max=0.87, gemm_src="measured 271/312 TF on A100 (reference README)",
                          intra=("nvlink", 230, "NCCL all-reduce busbw measured on A100 NVLink (reference README)"),
                          inter=("infiniband-hdr", 23, "DGX A100: 8x HDR 200 Gb/s per node, 92% achieved"),
                          tables_from=("a100-sxm-80gb", "A100-SXM4-80GB")),
    "l4": dict(domain=1, row="L4", num_sms=58, fp32=30.3, gemm_max=0.75, gemm_src="assumed",
               intra=("pcie4", 20, "assumed: PCIe Gen4 x16 32 GB/s/dir, ~60% achieved"),
               inter=("ethernet", 6.25, "assumed: 50 Gb/s per GPU")),
    "l40s": dict(domain=1, row="L40S", num_sms=142, fp32=91.6, gemm_max=0.75, gemm_src="assumed",
                 intra=("pcie4", 20, "assumed: PCIe Gen4 x16, ~60% achieved"),
                 inter=("ethernet", 12.5, "assumed: 100 Gb/s per GPU")),
    "a10g": dict(domain=1, row="A10G", num_sms=80, fp32=31.2, gemm_max=0.75, gemm_src="assumed",
                 intra=("pcie4", 20, "assumed: PCIe Gen4 x16, ~60% achieved"),
                 inter=("ethernet", 6.25, "assumed: 50 Gb/s per GPU")),
    "t4": dict(domain=1, row="T4", num_sms=40, fp32=8.1, gemm_max=0.70, gemm_src="assumed", dtype_peak="fp16",
               intra=("pcie3", 10, "assumed: PCIe Gen3 x16 16 GB/s/dir, ~60% achieved"),
               inter=("ethernet", 3.1, "assumed: 25 Gb/s per GPU")),
    "mi300x": dict(domain=8, row="MI300X", num_sms=304, fp32=163.4, gemm_max=0.51, gemm_src="measured 668/1307 TF (reference README)",
                   intra=("infinity-fabric", 300, "assumed: RCCL all-reduce over 7x64 GB/s/dir links, ~67% achieved"),
                   inter=("infinity-ib", 46, "assumed: 400 Gb/s per GPU as NDR")),
    "b200": dict(domain=8, row="B200-HGX", num_sms=148, fp32=80, gemm_max=0.80, gemm_src="assumed equal to H100's measured fraction",
                 intra=("nvlink5", 740, "assumed: NVLink5 900 GB/s/dir at H100's measured 370/450 fraction"),
                 inter=("infiniband-xdr", 46, "assumed: 400 Gb/s per GPU as NDR")),
}

DOMAIN_SOURCE = {
    8: "8 GPUs on one NVSwitch baseboard (HGX/DGX) or Infinity Fabric platform (MI300X)",
    1: "PCIe card without NVLink: each GPU is its own domain",
}

# Spec-sheet profiles written from hardware_profiles/spec_sheets.csv. Peaks are DENSE TFLOP/s (TOP/s for int8).
SPEC_PROFILES = ("gb200", "gb300", "b300", "rtx-pro-6000", "h20", "mi325x", "mi355x")
PEAK_KEYS = ("bf16", "fp16", "tf32", "fp8", "fp6", "fp4", "int8", "fp32")
# Collective bandwidth where no NCCL table is measured: the H100's measured all-reduce bus bandwidth over
# its per-direction NVLink bandwidth (370 of 450 GB/s, reference README) times the part's link bandwidth.
H100_BUSBW_FRACTION = 370 / 450
# Inter-node bus bandwidth: the NIC line rate at the fraction NDR 400 Gb/s reaches (46 of 50 GB/s, reference README).
NIC_BUSBW_FRACTION = 46 / 50
DEFAULT_GEMM_MAX = 0.75   # assumed where nothing is measured (between the A100 and H100 figures above)

GPU_FOR_PRICE = {  # cloud_prices.csv 'gpu' column -> profile
    "H100-SXM": "h100-sxm", "H200": "h200", "A100-40GB": "a100-sxm-40gb", "A100-80GB": "a100-sxm-80gb",
    "B200": "b200", "B300": "b300", "L40S": "l40s", "L4": "l4", "A10G": "a10g", "T4": "t4", "H100-NVL": None,
}

HEADER = "# generated by scripts/build_profiles.py from shared/reference; edit the script, not this file\n"
SPEC_HEADER = ("# generated by scripts/build_profiles.py from hardware_profiles/spec_sheets.csv; "
               "edit the CSV or the script, not this file\n")


# Memory-bound kernel classes measured inside real models: Vidur's CUDA-timed fp16 operator profiles
# (bench/data/vidur_mlp_op_profiles_a100_h100.csv.gz, microsoft/vidur data/profiling/compute, MIT):
# RMSNorm, the gated/ungated activation and RoPE, bytes read + written over the median time, as a
# share of HBM bandwidth; the median over models and TP at >= 2048 tokens (below that launch latency
# shows). GPUs of the same die take their sibling's shares.
VIDUR = ROOT / "bench" / "data" / "vidur_mlp_op_profiles_a100_h100.csv.gz"
MEMORY_KERNEL_GPU = {"a100-sxm-80gb": "A100", "a100-sxm-40gb": "A100", "h100-sxm": "H100", "h200": "H100"}
VIDUR_BANDWIDTH_TBPS = {"A100": 2.039, "H100": 3.35}


def vidur_memory_shares(gpu: str) -> dict[str, float]:
    """Median achieved share of HBM bandwidth per kernel class on ``gpu`` (A100 or H100)."""
    shares: dict[str, list[float]] = {"norm": [], "activation": [], "rope": []}
    with gzip.open(VIDUR, "rt") as f:
        for r in csv.DictReader(f):
            if not r["gpu_type"].startswith(gpu) or int(r["num_tokens"]) < 2048:
                continue
            t, h, tp = int(r["num_tokens"]), int(r["n_embd"]), int(r["tp"])
            width = int(r["n_expanded_embd"]) / tp
            up = width * (2 if r["use_gated_mlp"] == "True" else 1)
            head_dim = h / int(r["n_head"])
            moved = {"norm": (2 * t * h * 2, "input_layernorm_median_ms"),
                     "activation": (t * (up + width) * 2, "mlp_act_median_ms"),
                     "rope": (2 * t * (int(r["n_head"]) + int(r["n_kv_head"])) / tp * head_dim * 2,
                              "attn_rope_median_ms")}
            for k, (nbytes, col) in moved.items():
                shares[k].append(nbytes / (float(r[col]) * 1e-3) / (VIDUR_BANDWIDTH_TBPS[gpu] * 1e12))
    return {k: round(statistics.median(v), 2) for k, v in shares.items()}


def _num(x: str) -> float | None:
    x = (x or "").strip()
    return float(x) if x else None


Sheet = dict[str, tuple[str, str, str]]   # field -> (value, kind, citation)


def read_spec_sheets(path: Path) -> dict[str, Sheet]:
    """spec_sheets.csv as {profile: {field: (value, kind, citation)}}, checked for the fields a profile needs."""
    kinds = {"vendor", "derived", "measured", "assumed"}
    required = {"gpu", "bf16", "fp32", "memory_gib", "memory_bandwidth_tbps", "link", "link_gb_s_per_direction",
                "nvlink_domain_gpus", "nic_gbps", "inter_link", "tdp_w", "num_sms"}
    sheets: dict[str, Sheet] = {}
    for i, r in enumerate(csv.DictReader(path.open()), start=2):
        if r["kind"] not in kinds or not r["source"].strip():
            raise SystemExit(f"{path}:{i}: kind must be one of {sorted(kinds)} and every number needs a source")
        sheet = sheets.setdefault(r["profile"], {})
        if r["field"] in sheet:
            raise SystemExit(f"{path}:{i}: {r['profile']}.{r['field']} given twice")
        sheet[r["field"]] = (r["value"], r["kind"], r["source"])
    for name, sheet in sheets.items():
        if name not in SPEC_PROFILES:
            raise SystemExit(f"{path}: profile {name!r} is not in SPEC_PROFILES")
        missing = required - set(sheet)
        if missing:
            raise SystemExit(f"{path}: profile {name!r} lacks {sorted(missing)}")
    if set(sheets) != set(SPEC_PROFILES):
        raise SystemExit(f"{path}: no rows for {sorted(set(SPEC_PROFILES) - set(sheets))}")
    return sheets


def measured_allreduce_busbw(name: str) -> tuple[float, str] | None:
    """Large-message all-reduce bus bandwidth from the profile's imported NCCL table, or None.

    busbw = 2(n-1)/n · bytes / time (nccl-tests' definition) for fp16, the largest rank count and the
    largest buffer; the median time where the table repeats that point.
    """
    tables = sorted((MEASURED / name).glob("collective.nccl-*.csv.gz"))
    if not tables:
        return None
    table = tables[-1]
    with gzip.open(table, "rt") as f:
        rows = [r for r in csv.DictReader(f) if r["op"] == "all_reduce" and r["dtype"] == "fp16"]
    n = max(int(r["ranks"]) for r in rows)
    size = max(int(r["bytes"]) for r in rows if int(r["ranks"]) == n)
    times = [float(r["time_us"]) for r in rows if int(r["ranks"]) == n and int(r["bytes"]) == size]
    t_us = statistics.median(times)
    busbw = round(2 * (n - 1) / n * size / (t_us * 1e-6) / 1e9, 1)
    version = table.name.removeprefix("collective.nccl-").removesuffix(".csv.gz")
    return busbw, (f"measured: NCCL {version} fp16 all_reduce, {n} GPUs, {size} B in {t_us:g} us "
                   f"(median of {len(times)}): busbw = 2*{n - 1}/{n}*bytes/time = {busbw} GB/s "
                   f"(hardware_profiles/measured/{name}/{table.name}, from aiconfigurator-core 0.12.0)")


def spec_profile(name: str, sheet: Sheet) -> dict:
    """One spec-sheet profile document from its spec_sheets.csv rows."""
    def num(field: str) -> float:
        return float(sheet[field][0])

    def cite(field: str) -> str:
        return f"{sheet[field][1]}: {sheet[field][2]}"

    peak = {k: num(k) for k in PEAK_KEYS if k in sheet}
    gemm_max = {k: DEFAULT_GEMM_MAX for k in peak if k != "fp32"}
    gemm_max["fp32"] = 0.85  # assumed: non-tensor-core SGEMM, as the profiles above
    link_dir = num("link_gb_s_per_direction")
    measured = measured_allreduce_busbw(name)
    if measured:
        intra_busbw, intra_src = measured
    else:
        intra_busbw = round(H100_BUSBW_FRACTION * link_dir, 1)
        intra_src = (f"derived: no measurement; the H100's measured all-reduce fraction 370/450 of the per-direction "
                     f"link bandwidth: 370/450 x {link_dir:g} = {intra_busbw} GB/s")
    nic_gb_s = num("nic_gbps") / 8
    inter_busbw = round(NIC_BUSBW_FRACTION * nic_gb_s, 1)
    tdp = num("tdp_w")
    source = {
        "datasheet": f"hardware_profiles/spec_sheets.csv rows {name}: {sheet['gpu'][2]}",
        "peak_tflops": "DENSE peaks (no 2:4 sparsity); where a vendor prints only sparse figures they are halved "
                       "(kind 'derived' below); int8 in TOP/s",
        **{k: cite(k) for k in peak},
        "memory_gib": cite("memory_gib"),
        "memory_bandwidth_tbps": cite("memory_bandwidth_tbps"),
        "num_sms": cite("num_sms"),
        "tdp_w": cite("tdp_w"),
        "idle_w": "assumed 10% of TDP",
        "link_gb_s_per_direction": cite("link_gb_s_per_direction"),
        "intra_node": intra_src,
        "inter_node": (f"derived: busbw = {NIC_BUSBW_FRACTION:.2f} x {nic_gb_s:g} GB/s, the fraction NDR 400 Gb/s reaches "
                       f"(46 of 50 GB/s measured, reference README), for a {num('nic_gbps'):g} Gb/s NIC per GPU "
                       f"({cite('nic_gbps')})"),
        "nvlink_domain_gpus": cite("nvlink_domain_gpus"),
        "gemm_max": f"assumed {DEFAULT_GEMM_MAX} (no GEMM measurement folded in; measured tables, where present, "
                    "take precedence in the cost model); fp32 0.85 assumed",
    }
    return {
        "name": name,
        "gpu": sheet["gpu"][0],
        "memory_gib": num("memory_gib"),
        "memory_bandwidth_tbps": num("memory_bandwidth_tbps"),
        "peak_tflops": peak,
        "num_sms": int(num("num_sms")),
        "tdp_w": tdp,
        "idle_w": round(0.1 * tdp, 1),
        "intra_node": {"link": sheet["link"][0], "busbw_gb_s": intra_busbw, "link_gb_s_per_direction": link_dir},
        "inter_node": {"link": sheet["inter_link"][0], "busbw_gb_s": inter_busbw, "link_gb_s_per_direction": nic_gb_s},
        "nvlink_domain_gpus": int(num("nvlink_domain_gpus")),
        "efficiency": {"gemm_max": gemm_max},
        "source": source,
    }


def build(ref: Path) -> None:
    rows = {r["gpu"]: r for r in csv.DictReader((ref / "gpu_specs.csv").open())}
    for name, ex in PROFILES.items():
        r = rows[ex["row"]]
        peak = {k: _num(r[f"dense_{k}_tflops"]) for k in ("bf16", "fp16", "fp8", "fp4")}
        peak = {k: v for k, v in peak.items() if v}
        peak["fp32"] = ex["fp32"]
        gemm_max = {p: ex["gemm_max"] for p in peak if p != "fp32"}
        gemm_max["fp32"] = 0.85  # assumed: non-tensor-core SGEMM
        if "fp8_max" in ex:
            gemm_max["fp8"] = ex["fp8_max"]
        intra, inter = ex["intra"], ex["inter"]
        doc = {
            "name": name,
            "gpu": ex["row"],
            "memory_gib": float(r["hbm_gb"]),
            "memory_bandwidth_tbps": float(r["mem_bw_tbps"]),
            "peak_tflops": peak,
            "num_sms": ex["num_sms"],
            "tdp_w": _num(r["tdp_w"]),
            "idle_w": round(0.1 * (_num(r["tdp_w"]) or 0), 1),
            "intra_node": {"link": intra[0], "busbw_gb_s": intra[1],
                           "link_gb_s_per_direction": float(r["interconnect_gbps_per_gpu"]) / 2},
            "inter_node": {"link": inter[0], "busbw_gb_s": inter[1]},
            "nvlink_domain_gpus": ex["domain"],
            "efficiency": {"gemm_max": gemm_max},
            "source": {
                "datasheet": f"shared/reference/gpu_specs.csv row {ex['row']}: {r['source']} (verified: {r['verified']})",
                "memory_gib": "the datasheet's GB figure read as GiB (usable HBM is within 2% of it)",
                "fp32": "non-tensor FP32 TFLOP/s, vendor datasheet (from memory, UNVERIFIED)",
                "num_sms": "vendor architecture whitepaper (compute units for MI300X)",
                "gemm_max": ex["gemm_src"],
                "intra_node": intra[2],
                "inter_node": inter[2],
                "idle_w": "assumed 10% of TDP",
                "interconnect_note": r["interconnect_note"],
                "nvlink_domain_gpus": ex.get("domain_src") or DOMAIN_SOURCE[ex["domain"]],
            },
        }
        if name in MEMORY_KERNEL_GPU:
            gpu = MEMORY_KERNEL_GPU[name]
            doc["efficiency"]["memory_kernels"] = vidur_memory_shares(gpu)
            doc["source"]["memory_kernels"] = (
                f"Vidur's in-model {gpu} fp16 operator times (RMSNorm, activation, RoPE; bench/data/"
                "vidur_mlp_op_profiles_a100_h100.csv.gz): bytes moved over the median time, as a share of "
                f"the {gpu}'s HBM bandwidth, median over models and TP at >= 2048 tokens"
                + ("" if ex["row"].startswith(gpu) else f"; the same die as the {gpu}"))
        if "tables_from" in ex:      # a sibling of the same silicon with faster memory ran the tables
            sibling, sibling_row = ex["tables_from"]
            doc["measured"] = f"measured/{sibling}"
            doc["measured_bandwidth_tbps"] = float(rows[sibling_row]["mem_bw_tbps"])
            doc["source"]["measured"] = (f"the {sibling} tables: the same die, SM count, clocks and NVLink; only HBM "
                                         "capacity and bandwidth differ, so table times are held to this GPU's "
                                         "memory roofline (simulator/hardware.py measured_bandwidth_tbps)")
        path = OUT / f"{name}.yaml"
        path.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, width=120))
    for name, sheet in read_spec_sheets(SPEC_SHEETS).items():
        (OUT / f"{name}.yaml").write_text(SPEC_HEADER + yaml.safe_dump(spec_profile(name, sheet), sort_keys=False, width=120))
    prices = []
    for r in csv.DictReader((ref / "cloud_prices.csv").open()):
        prof = GPU_FOR_PRICE.get(r["gpu"])
        count = _num(r["gpu_count"])
        if not prof or not count or count < 1:
            continue
        prices.append({
            "provider": r["provider"], "instance": r["instance_type"], "gpu": prof, "gpus": int(count),
            "region": r["region"] or None,
            "on_demand_usd_per_hour": _num(r["ondemand_usd_hr"]),
            "spot_usd_per_hour": _num(r["spot_usd_hr_min"]),
            "source": r["source"], "notes": r["notes"] or None,
        })
    (OUT / "prices.yaml").write_text(
        "# generated by scripts/build_profiles.py from shared/reference/cloud_prices.csv (SkyPilot catalog)\n"
        "# spot_usd_per_hour is the catalog's lowest zone price. Prices change: override in a scenario.\n"
        + yaml.safe_dump({"instances": prices}, sort_keys=False, width=120))


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "reference")
