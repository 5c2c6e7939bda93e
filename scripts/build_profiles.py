"""Regenerate hardware_profiles/*.yaml and hardware_profiles/prices.yaml from ../shared/reference.

The CSVs are the single source of truth for datasheet numbers and prices; the few numbers they do
not carry (SM counts, FP32 peaks, measured link bandwidths, efficiency defaults) are listed here
with their provenance. Run: ``python scripts/build_profiles.py [REFERENCE_DIR]``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "hardware_profiles"

# profile name -> (gpu_specs.csv row, extras)
# Efficiency maxima: best measured torch BF16 GEMM over peak from shared/reference/README.md
# (A100 271/312, H100 795/989, H200 FP8 1453/1979, MI300X 668/1307). GPUs without a measurement
# use 0.75 (assumed, between the A100 and H100 figures) until calibrated.
# Collective bus bandwidths: NCCL measured, shared/reference/README.md (A100 NVLink ~230 GB/s,
# H100 NVLink ~370 GB/s, NDR 400 Gb/s IB ~46-48 GB/s per NIC). Others are assumed as noted.
PROFILES: dict[str, dict] = {
    "h100-sxm": dict(row="H100-SXM5-80GB", num_sms=132, fp32=67, gemm_max=0.80, gemm_src="measured 795/989 TF (reference README)",
                     intra=("nvlink", 370, "NCCL ring all-reduce busbw measured (reference README)"),
                     inter=("infiniband-ndr", 46, "NDR 400 Gb/s per GPU, measured 46-48 GB/s (reference README)")),
    "h100-pcie": dict(row="H100-PCIe-80GB", num_sms=114, fp32=51, gemm_max=0.75, gemm_src="assumed",
                      intra=("pcie5", 40, "assumed: PCIe Gen5 x16 64 GB/s/dir, ~60% achieved by NCCL"),
                      inter=("ethernet", 12.5, "assumed: 100 Gb/s per GPU")),
    "h200": dict(row="H200-SXM-141GB", num_sms=132, fp32=67, gemm_max=0.80, gemm_src="same die as H100 SXM: measured 795/989 TF",
                 fp8_max=0.73, intra=("nvlink", 370, "NVLink4 as H100 SXM (reference README)"),
                 inter=("infiniband-ndr", 46, "NDR 400 Gb/s per GPU (reference README)")),
    "a100-sxm-80gb": dict(row="A100-SXM4-80GB", num_sms=108, fp32=19.5, gemm_max=0.87, gemm_src="measured 271/312 TF (reference README)",
                          intra=("nvlink", 230, "NCCL all-reduce busbw measured on A100 NVLink (reference README)"),
                          inter=("infiniband-hdr", 23, "DGX A100: 8x HDR 200 Gb/s = 25 GB/s per GPU; 92% achieved as NDR measurements")),
    "a100-sxm-40gb": dict(row="A100-SXM4-40GB", num_sms=108, fp32=19.5, gemm_max=0.87, gemm_src="measured 271/312 TF on A100 (reference README)",
                          intra=("nvlink", 230, "NCCL all-reduce busbw measured on A100 NVLink (reference README)"),
                          inter=("infiniband-hdr", 23, "DGX A100: 8x HDR 200 Gb/s per node, 92% achieved")),
    "l4": dict(row="L4", num_sms=58, fp32=30.3, gemm_max=0.75, gemm_src="assumed",
               intra=("pcie4", 20, "assumed: PCIe Gen4 x16 32 GB/s/dir, ~60% achieved"),
               inter=("ethernet", 6.25, "assumed: 50 Gb/s per GPU")),
    "l40s": dict(row="L40S", num_sms=142, fp32=91.6, gemm_max=0.75, gemm_src="assumed",
                 intra=("pcie4", 20, "assumed: PCIe Gen4 x16, ~60% achieved"),
                 inter=("ethernet", 12.5, "assumed: 100 Gb/s per GPU")),
    "a10g": dict(row="A10G", num_sms=80, fp32=31.2, gemm_max=0.75, gemm_src="assumed",
                 intra=("pcie4", 20, "assumed: PCIe Gen4 x16, ~60% achieved"),
                 inter=("ethernet", 6.25, "assumed: 50 Gb/s per GPU")),
    "t4": dict(row="T4", num_sms=40, fp32=8.1, gemm_max=0.70, gemm_src="assumed", dtype_peak="fp16",
               intra=("pcie3", 10, "assumed: PCIe Gen3 x16 16 GB/s/dir, ~60% achieved"),
               inter=("ethernet", 3.1, "assumed: 25 Gb/s per GPU")),
    "mi300x": dict(row="MI300X", num_sms=304, fp32=163.4, gemm_max=0.51, gemm_src="measured 668/1307 TF (reference README)",
                   intra=("infinity-fabric", 300, "assumed: RCCL all-reduce over 7x64 GB/s/dir links, ~67% achieved"),
                   inter=("infinity-ib", 46, "assumed: 400 Gb/s per GPU as NDR")),
    "b200": dict(row="B200-HGX", num_sms=148, fp32=80, gemm_max=0.80, gemm_src="assumed equal to H100's measured fraction",
                 intra=("nvlink5", 740, "assumed: NVLink5 900 GB/s/dir at H100's measured 370/450 fraction"),
                 inter=("infiniband-xdr", 46, "assumed: 400 Gb/s per GPU as NDR")),
}

GPU_FOR_PRICE = {  # cloud_prices.csv 'gpu' column -> profile
    "H100-SXM": "h100-sxm", "H200": "h200", "A100-40GB": "a100-sxm-40gb", "A100-80GB": "a100-sxm-80gb",
    "B200": "b200", "L40S": "l40s", "L4": "l4", "A10G": "a10g", "T4": "t4", "H100-NVL": None,
}


def _num(x: str) -> float | None:
    x = (x or "").strip()
    return float(x) if x else None


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
            },
        }
        path = OUT / f"{name}.yaml"
        path.write_text("# generated by scripts/build_profiles.py from shared/reference; edit the script, not this file\n"
                        + yaml.safe_dump(doc, sort_keys=False, width=120))
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
