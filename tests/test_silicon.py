"""Measured kernel tables: the format, the interpolator, engine/version choice and the cost model
reading them. Expected values are rows of the aiconfigurator-core 0.12.0 parquet files (converted
from ms to µs and from elements to bytes by scripts/import_silicon.py), quoted here by hand."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

from simulator.catalog import get_model
from simulator.costmodel.collectives import Group, collective_time
from simulator.costmodel.inference import InferenceModel, floor_slope_line
from simulator.costmodel.ops import gemm
from simulator.hardware import PROFILE_DIR, get_profile
from simulator.silicon.format import COLUMNS, read_rows, write_table
from simulator.silicon.grid import Grid
from simulator.silicon.in_model import in_model_factor
from simulator.silicon.tables import TablesWarning, bind, load_measured
from simulator.silicon.versions import choose, version_key

MEASURED = ("a100-sxm-80gb", "h100-sxm", "h200", "b200", "b300", "gb200", "gb300", "l40s", "rtx-pro-6000")


def test_versions_order_release_candidates_before_the_release() -> None:
    vs = ["1.3.0", "1.3.0rc20", "1.2.0rc5", "1.3.0rc10", "0.5.6.post2", "0.5.6"]
    assert sorted(vs, key=version_key) == ["0.5.6", "0.5.6.post2", "1.2.0rc5", "1.3.0rc10", "1.3.0rc20", "1.3.0"]
    assert version_key("2.27") == version_key("2.27.0")


def test_version_choice_newest_at_or_below_else_oldest() -> None:
    have = ["0.14.0", "0.19.0", "0.24.0"]
    assert choose(have, None) == ("0.24.0", None)
    assert choose(have, "0.19.0") == ("0.19.0", None)
    pick, warning = choose(have, "0.22.0")
    assert pick == "0.19.0" and warning is not None and "0.22.0" in warning
    pick, warning = choose(have, "0.1")
    assert pick == "0.14.0" and warning is not None and "oldest" in warning


def test_grid_is_exact_on_points_and_log_linear_between() -> None:
    # t = 2·m on m = 1, 4: at m = 2 (halfway in log m) log-linear interpolation gives 2·2 = 4 exactly
    g = Grid({"dtype": ["a", "a"], "m": [1.0, 4.0], "time_us": [2.0, 8.0]}, keys=["dtype"], axes=["m"])
    assert g(("a",), (1,)) == pytest.approx(2.0)
    assert g(("a",), (2,)) == pytest.approx(4.0)
    assert g(("a",), (8,)) is None            # outside: never extrapolated
    assert g(("b",), (2,)) is None            # key not measured
    # a 2-D cell with an unmeasured corner answers only on its measured edges
    g2 = Grid({"k": ["x"] * 3, "a": [1.0, 2.0, 1.0], "b": [1.0, 1.0, 2.0], "time_us": [1.0, 2.0, 2.0]},
              keys=["k"], axes=["a", "b"])
    assert g2(("x",), (1.5, 1.0)) is not None
    assert g2(("x",), (1.5, 1.5)) is None


def test_table_files_round_trip(tmp_path: Path) -> None:
    rows = [("bf16", 128, 4096, 4096, 12.5), ("bf16", 256, 4096, 4096, 20.25)]
    write_table(tmp_path / "g.csv.gz", "gemm", rows)
    cols = read_rows(tmp_path / "g.csv.gz", "gemm")
    assert tuple(cols) == COLUMNS["gemm"]
    assert cols["time_us"] == [12.5, 20.25] and cols["dtype"] == ["bf16", "bf16"]
    # the same rows give the same bytes (gzip without a timestamp)
    write_table(tmp_path / "h.csv.gz", "gemm", rows)
    assert (tmp_path / "g.csv.gz").read_bytes() == (tmp_path / "h.csv.gz").read_bytes()


@pytest.mark.parametrize("name", MEASURED)
def test_nine_gpus_are_measured_within_the_size_budget(name: str) -> None:
    hw = get_profile(name)
    assert hw.kernels is not None and hw.measured_profile is not None
    assert hw.measured_profile.source["name"] == "aiconfigurator-core"
    assert hw.measured_profile.source["licence"] == "Apache-2.0"
    folder = PROFILE_DIR / "measured" / name
    # 3.5 MB with the catalog's MoE expert shapes and its newer models' attention heads (was under 3 MB)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 4e6
    engines = hw.measured_profile.engines()
    assert {"vllm", "trtllm", "sglang", "nccl"} <= set(engines)


def test_gemm_reads_the_measured_row() -> None:
    # h100_sxm/gemm/vllm/0.24.0: bfloat16 m=32768 n=65536 k=12288 latency 60.324042 ms
    kb = get_profile("h100-sxm").with_engine("vllm").kernels
    assert kb is not None
    t = kb.gemm("bf16", 32768, 65536, 12288)
    assert t == pytest.approx(60.324042e-3 * in_model_factor("gemm"), rel=1e-5)
    # a GEMM wider than the grid (n = 128256 > 65536) is two measured column blocks
    assert kb.gemm("bf16", 1, 128256, 4096) == pytest.approx(2 * kb.gemm("bf16", 1, 64128, 4096), rel=1e-12)
    assert kb.coverage.misses == {}
    # a shape outside every table is counted, and the cost model times it by the roofline
    hw = get_profile("h100-sxm").with_engine("vllm")
    op = gemm(hw, "wide_k", 64, 4096, 200_000, "bf16")
    assert not op.measured and hw.kernels is not None
    assert [r["kind"] for r in hw.kernels.coverage.rows()] == ["gemm"]
    inside = gemm(hw, "qkv", 512, 6144, 4096, "bf16")
    assert inside.measured and inside.time == hw.kernels.gemm("bf16", 512, 6144, 4096)


def test_collectives_read_nccl_and_the_engines_all_reduce() -> None:
    # h100_sxm/comm/nccl/2.27.3: all_reduce, half, 8 GPUs, 268435456 elements (512 MiB): 2.11202 and
    # 2.11143 ms in its two measurement passes -> the median 2.111725 ms
    hw = get_profile("h100-sxm")
    assert collective_time(hw, "all_reduce", 2 * 268435456, Group(8, 8)) == pytest.approx(2.111725e-3, rel=1e-5)
    # vllm/0.24.0 custom all-reduce, 8 GPUs, 1048576 bf16 elements (2 MiB): graph 0.019390, eager 0.041416 ms
    kb = hw.with_engine("vllm").kernels
    assert kb is not None
    assert kb.collective("all_reduce", ranks=8, nbytes=2 * 1048576, tokens=256) == pytest.approx(19.390e-6, rel=1e-4)
    assert kb.collective("all_reduce", ranks=8, nbytes=2 * 1048576, tokens=4096) == pytest.approx(41.416e-6, rel=1e-4)
    # 16 GPUs in two nodes: the intra-node steps come from the table, the network step from the ring
    two_nodes = collective_time(hw, "all_reduce", 2 * 268435456, Group(16, 8))
    assert two_nodes > collective_time(hw, "all_reduce", 2 * 268435456, Group(8, 8))


def test_engine_choice_picks_that_engines_tables_and_warns_on_a_missing_version() -> None:
    mp = get_profile("h100-sxm").measured_profile
    assert mp is not None
    assert bind(mp, "trtllm").describe()["gemm"] == "trtllm 1.3.0rc20"
    assert bind(mp, "trtllm-bench").describe()["gemm"] == "trtllm 1.3.0rc20"
    assert bind(mp, "sglang").describe()["gemm"] == "sglang 0.5.14"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        basis = bind(mp, "vllm", "0.20.0")
    # collectives were measured for vLLM 0.14.0, 0.19.0 and 0.24.0: 0.20.0 takes 0.19.0
    assert basis.describe()["collective"] == "vllm 0.19.0"
    assert any(issubclass(w.category, TablesWarning) for w in caught)


def test_spec_only_gpu_has_no_tables() -> None:
    hw = get_profile("l4")
    assert hw.kernels is None and hw.with_engine("vllm").kernels is None


def test_floor_slope_line_by_hand() -> None:
    # floor 3 at the smallest point; slopes (t − 3)/w of the points with w ≥ 10: 0.5, 0.5, 0.7 -> median 0.5
    pts = [(1.0, 3.0), (10.0, 8.0), (100.0, 53.0), (1000.0, 703.0)]
    assert floor_slope_line(pts, 10.0) == pytest.approx((3.0, 0.5))
    assert floor_slope_line(pts, 500.0) is None      # fewer than 3 points where the work dominates


def test_decode_attention_line_matches_the_table_where_decode_is_bandwidth_bound() -> None:
    """Llama-3.1-8B on H100 with vLLM 0.24: the decode-attention line's per-token cost is within 10%
    of the table's slope between 4k and 16k cached tokens at batch 16, and that slope is within 25%
    of reading 4 KiB of K and V per token per layer at the datasheet 3.35 TB/s."""
    hw = get_profile("h100-sxm").with_engine("vllm")
    kb = hw.kernels
    assert kb is not None
    perf = InferenceModel(get_model("llama-3.1-8b"), hw)
    assert perf.attention_measured == {"prefill": 32, "decode": 32}
    key = dict(dtype="bf16", kv_dtype="bf16", heads=32, kv_heads=8, head_dim=128)
    t4, t16 = (kb.generation_attention(**key, batch=16, kv_len=c) for c in (4096, 16384))  # type: ignore[arg-type]
    assert t4 is not None and t16 is not None
    slope = (t16 - t4) / (16 * (16384 - 4096))
    assert perf.decode_coef / 32 == pytest.approx(slope, rel=0.10)
    assert slope == pytest.approx(2 * 8 * 128 * 2 / 3.35e12, rel=0.25)
    assert math.isfinite(perf.iteration_time(tokens=16, sampled=16, prefill_work=0, decode_seqs=16, decode_ctx=16 * 4096))


def test_every_manifest_lists_existing_files() -> None:
    for name in MEASURED:
        mp = load_measured(str(PROFILE_DIR / "measured" / name))
        for t in mp.tables:
            assert t.path.exists(), t.path
            assert t.entry["rows"] > 0


def test_an_old_calibrated_profile_says_how_to_upgrade(tmp_path: Path) -> None:
    import yaml

    from simulator.errors import CapsimError

    doc = yaml.safe_load((PROFILE_DIR / "l4.yaml").read_text())
    doc["name"] = "old-cal"
    doc["efficiency"]["gemm_table"] = [[128, 128, 128, 1.0]]
    path = tmp_path / "old-cal.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(CapsimError, match="old calibration format.*re-run `capsim calibrate`"):
        get_profile(str(path))


def test_static_fp8_scales_take_the_measured_dynamic_scale_kernel_off() -> None:
    # h200_sxm/quantize/trtllm/1.3.0rc20/computescale_perf.parquet: fp8, m=1, k=8192: 0.007197 ms (the
    # amax reduction the dynamic FP8 GEMM table includes)
    hw = get_profile("h200").with_engine("trtllm")
    kb = hw.kernels
    assert kb is not None
    scale = kb.quantize("compute_scale", "fp8", 1, 8192)
    assert scale == pytest.approx(7.197e-6, rel=1e-3)
    dynamic = gemm(hw, "qkv", 1, 1024, 8192, "fp8")
    static = gemm(hw, "qkv", 1, 1024, 8192, "fp8", static_scales=True)
    assert dynamic.time == kb.gemm("fp8", 1, 1024, 8192)
    assert static.time == pytest.approx(dynamic.time - scale, rel=1e-12)
    # bf16 GEMMs have no scale to take off
    assert gemm(hw, "qkv", 1, 1024, 8192, "bf16", static_scales=True).time == kb.gemm("bf16", 1, 1024, 8192)
    # never below the roofline: a tiny GEMM whose table time is mostly the scale kernel
    tiny = gemm(hw, "t", 1, 32, 1024, "fp8", static_scales=True)
    roof = max(2 * 32 * 1024 / (hw.peak_flops("fp8") * hw.gemm_max("fp8")),
               (1024 + 1024 * 32 + 32) * 2.0 / (hw.memory_bandwidth_tbps * 1e12))
    assert tiny.time >= roof
    # the presets: TensorRT-LLM serves calibrated ModelOpt checkpoints, vLLM quantizes per forward
    from simulator.serving.engines.presets import PRESETS
    assert PRESETS["trtllm"]["1.0"].fp8_scales == "static" and PRESETS["vllm"]["0.9"].fp8_scales == "dynamic"


@pytest.mark.parametrize("name", ["h100-sxm/gemm.vllm-0.24.0.csv.gz", "b200/generation_attention.trtllm-1.3.0rc20.csv.gz",
                                  "h200/quantize.trtllm-1.3.0rc20.csv.gz"])
def test_the_fast_table_reader_gives_the_csv_readers_columns(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from simulator.silicon import format as fmt

    path = PROFILE_DIR / "measured" / name
    kind = path.name.split(".")[0]
    fast = fmt._read_with_numpy(path, kind)
    monkeypatch.setattr(fmt, "_read_with_numpy", lambda *_: None)
    assert fast is not None and fast == fmt.read_rows(path, kind)      # every value, bit for bit


@pytest.mark.parametrize("name", MEASURED)
def test_every_committed_table_builds_its_grid(name: str) -> None:
    """Every table of every measured profile loads: positive times and sizes on a grid (a table that
    does not would fail the first scenario that reads it; B200's quantize tables once carried 0 us
    rows the collector had not timed, which the importer now drops)."""
    measured = load_measured(str(PROFILE_DIR / "measured" / name))
    assert measured.tables
    for ref in measured.tables:
        grid = measured.grid(ref)
        assert isinstance(grid, Grid), ref.path.name
