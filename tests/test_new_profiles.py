"""Spec-sheet profiles for GB200, GB300, B300, RTX PRO 6000, H20, MI325X and MI355X (issue 15, item 6).

The expected numbers are the cited datasheet values of hardware_profiles/spec_sheets.csv (dense peaks:
vendors' sparse figures halved), and bus bandwidths worked out by hand from the imported NCCL tables.
"""

import csv
import gzip
import importlib.util
import math
from pathlib import Path

import pytest
import yaml

from hardware_profiles import PROFILE_DIR
from simulator import parse_scenario, simulate_training
from simulator.errors import CapsimError
from simulator.hardware import find_instance, get_profile

ROOT = Path(__file__).resolve().parents[1]

# name: (gpu, dense bf16, dense fp8, dense fp4 or None, memory GiB, HBM TB/s, NVLink domain, link GB/s per direction)
SPECS = {
    # NVIDIA GB200 NVL72 per-GPU table: 5 / 10 / 20 PFLOPS with sparsity; 189471 MiB by nvidia-smi; 8 TB/s; NVLink5 1.8 TB/s
    "gb200": ("GB200", 2500, 5000, 10000, 185.0, 8.0, 72, 900),
    # Blackwell Ultra datasheet (aiconfigurator gb300.yaml), dense: 2.5 / 5 / 15 PFLOPS; 284208 MiB; 8 TB/s
    "gb300": ("GB300", 2500, 5000, 15000, 277.5, 8.0, 72, 900),
    # HGX B300: 4.5 / 9 PFLOPS sparse, 14 PFLOPS FP4 dense; 275040 MiB; 62 TB/s / 8
    "b300": ("B300-SXM6", 2250, 4500, 14000, 268.6, 7.75, 8, 900),
    # RTX PRO 6000 Blackwell: 4,000 FP4 AI TOPS with sparsity -> 2,000 dense, FP8 half, BF16 a quarter; PCIe Gen5 x16
    "rtx-pro-6000": ("RTX-PRO-6000-Blackwell-Server", 500, 1000, 2000, 95.6, 1.792, 1, 64),
    # HGX H20: 148 TFLOPS BF16, 296 FP8 (dense), 96 GB HBM3 at 4.0 TB/s, NVLink 900 GB/s total
    "h20": ("H20", 148, 296, None, 96, 4.0, 8, 450),
    # MI325X: 1,307.4 / 2,614.9 TFLOPS dense, 256 GiB, 6 TB/s, 7 x 128 GB/s Infinity Fabric links
    "mi325x": ("MI325X", 1307.4, 2614.9, None, 256, 6.0, 8, 448),
    # MI355X: 256 CUs x 2.4 GHz x 4096 / 8192 / 16384 FLOP/clk; 288 GiB; 8 TB/s; 7 x 153.6 GB/s links
    "mi355x": ("MI355X", 2516.6, 5033.2, 10066.3, 288, 8.0, 8, 537.6),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_profile_carries_its_datasheet_numbers(name):
    gpu, bf16, fp8, fp4, mem, bw, domain, link = SPECS[name]
    hw = get_profile(name)
    assert (hw.name, hw.gpu) == (name, gpu)
    assert hw.peak_tflops["bf16"] == bf16
    assert hw.peak_tflops["fp8"] == fp8
    assert hw.peak_tflops.get("fp4") == fp4
    assert hw.memory_gib == mem
    assert hw.memory_bandwidth_tbps == bw
    assert hw.nvlink_domain_gpus == domain
    assert hw.intra_node.link_gb_s_per_direction == link
    assert all(p in hw.source and hw.source[p].split(":")[0] in ("vendor", "derived", "measured", "assumed")
               for p in hw.peak_tflops)


def test_mi355x_peaks_are_cu_count_times_clock_times_rate():
    hw = get_profile("mi355x")
    for prec, flop_per_clk in (("bf16", 4096), ("fp8", 8192), ("fp4", 16384)):
        assert hw.peak_tflops[prec] == pytest.approx(256 * 2.4e9 * flop_per_clk / 1e12, abs=0.05)
    assert "tf32" not in hw.peak_tflops      # CDNA 4 has no TF32 hardware


@pytest.mark.parametrize("name", sorted(SPECS))
def test_lower_precision_is_faster(name):
    p = get_profile(name).peak_tflops
    assert p["fp8"] == pytest.approx(2 * p["bf16"], abs=0.15)    # the vendors' roundings (2614.9 = 2 x 1307.45)
    if "fp4" in p:
        assert p["fp4"] > p["fp8"] > p["bf16"]


def _nccl_busbw(name: str) -> float:
    """By hand: the fp16 all-reduce at the largest buffer for the largest rank count, median time."""
    (table,) = (PROFILE_DIR / "measured" / name).glob("collective.nccl-*.csv.gz")
    with gzip.open(table, "rt") as f:
        rows = [r for r in csv.DictReader(f) if r["op"] == "all_reduce" and r["dtype"] == "fp16"]
    n = max(int(r["ranks"]) for r in rows)
    size = max(int(r["bytes"]) for r in rows if int(r["ranks"]) == n)
    times = sorted(float(r["time_us"]) for r in rows if int(r["ranks"]) == n and int(r["bytes"]) == size)
    mid = len(times) // 2
    t = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2
    return 2 * (n - 1) / n * size / (t * 1e-6) / 1e9


@pytest.mark.parametrize("name,busbw", [("gb200", 633.2), ("gb300", 635.3), ("b300", 700.9), ("rtx-pro-6000", 24.7)])
def test_measured_collective_bandwidth_comes_from_the_nccl_table(name, busbw):
    assert _nccl_busbw(name) == pytest.approx(busbw, abs=0.05)
    assert get_profile(name).intra_node.busbw_gb_s == busbw


@pytest.mark.parametrize("name", ["h20", "mi325x", "mi355x"])
def test_unmeasured_collective_bandwidth_is_the_h100_fraction_of_the_link(name):
    hw = get_profile(name)
    link = hw.intra_node.link_gb_s_per_direction
    assert link is not None
    assert hw.intra_node.busbw_gb_s == round(370 / 450 * link, 1)


@pytest.mark.parametrize("name,nic_gbps", [("gb200", 400), ("gb300", 800), ("b300", 800), ("h20", 400)])
def test_network_per_gpu_is_the_nic_line_rate_at_the_ndr_fraction(name, nic_gbps):
    inter = get_profile(name).inter_node
    assert inter.link_gb_s_per_direction == nic_gbps / 8
    assert inter.busbw_gb_s == pytest.approx(46 / 50 * nic_gbps / 8)


@pytest.mark.parametrize("name,domain", [("h100-sxm", 8), ("h200", 8), ("a100-sxm-80gb", 8), ("a100-sxm-40gb", 8),
                                         ("b200", 8), ("mi300x", 8), ("h100-pcie", 1), ("l4", 1), ("l40s", 1),
                                         ("a10g", 1), ("t4", 1)])
def test_existing_profiles_name_their_nvlink_domain(name, domain):
    assert get_profile(name).nvlink_domain_gpus == domain


def test_committed_yaml_is_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("build_profiles", ROOT / "scripts" / "build_profiles.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sheets = mod.read_spec_sheets(PROFILE_DIR / "spec_sheets.csv")
    assert set(sheets) == set(SPECS)
    for name, sheet in sheets.items():
        assert yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text()) == mod.spec_profile(name, sheet), name


GB200_RACK = {"kind": "training", "model": "megatron-7.5b", "hardware": "gb200",
              "cluster": {"nodes": 1, "gpus_per_node": 72},
              "parallelism": {"tp": 8},
              "training": {"seq_len": 2048, "global_batch": 144, "micro_batch": 1, "recompute": "full"}}


def test_training_on_one_gb200_rack_with_tp8():
    r = simulate_training(parse_scenario(GB200_RACK))
    assert (r["layout"]["tp"], r["layout"]["dp"]) == (8, 9)        # 72 GPUs of one NVLink domain
    assert r["fits_in_memory"]
    assert r["time_breakdown_s"]["tp_comm_s"] > 0
    assert math.isfinite(r["iteration_time_s"]) and r["iteration_time_s"] > 0
    h20 = simulate_training(parse_scenario({**GB200_RACK, "hardware": "h20", "cluster": {"nodes": 9, "gpus_per_node": 8}}))
    assert r["iteration_time_s"] < h20["iteration_time_s"]          # 17x the BF16 peak, 2x the NVLink


def test_a_gpu_without_a_catalog_price_says_how_to_price_it():
    sc = {**GB200_RACK, "hardware": "h20", "cluster": {"nodes": 1, "gpus_per_node": 8},
          "training": {**GB200_RACK["training"], "global_batch": 64, "total_tokens": 1e9}}
    with pytest.raises(CapsimError, match="no price in the catalog.*pricing.usd_per_gpu_hour"):
        simulate_training(parse_scenario(sc))
    priced = simulate_training(parse_scenario(sc, ["pricing.usd_per_gpu_hour=2.5"]))
    assert priced["usd_per_gpu_hour"] == 2.5


def test_b300_is_priced_from_the_catalog():
    inst = find_instance(gpu="b300")
    assert (inst.provider, inst.instance, inst.gpus) == ("aws", "p6-b300.48xlarge", 8)
    assert inst.usd_per_gpu_hour("on_demand") == pytest.approx(142.416 / 8)
