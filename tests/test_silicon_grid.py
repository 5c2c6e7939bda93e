"""The measured-table interpolator (simulator/silicon/grid.py): both methods read measured points
back, are exact on power laws, and the monotone cubic removes the bias of straight lines where a
kernel leaves its latency floor."""

import numpy as np
import pytest

from simulator.silicon.grid import Grid
from simulator.silicon.tables import INTERPOLATION, table_grid


def test_pchip_reads_back_measured_points_and_is_exact_on_power_laws():
    # t = 3 x^2 y on a 2-D grid: log-log linear in both axes, so both methods are exact between
    # grid lines, and a measured point reads back as measured
    xs, ys = [1.0, 2.0, 4.0, 8.0, 16.0], [1.0, 10.0, 100.0]
    cols = {"k": [], "x": [], "y": [], "time_us": []}
    for x in xs:
        for y in ys:
            cols["k"].append("a")
            cols["x"].append(x)
            cols["y"].append(y)
            cols["time_us"].append(3 * x * x * y)
    for method in ("linear", "pchip"):
        g = Grid(cols, keys=["k"], axes=["x", "y"], method=method)
        assert g(["a"], [4.0, 10.0]) == pytest.approx(480.0, rel=1e-12)
        assert g(["a"], [3.0, 30.0]) == pytest.approx(3 * 9 * 30, rel=1e-9)
        assert g(["a"], [17.0, 1.0]) is None


def test_pchip_removes_the_bias_of_straight_lines_on_a_latency_floor():
    # t = 10 + x (a 10 us floor, then linear): convex in log-log, so a straight line between
    # x = 4 and x = 16 at x = 8 gives sqrt(14 * 26) = 19.08 (+6%); the cubic's slopes from the
    # neighbouring cells bring it to within 1.5% of 18
    xs = [1.0, 4.0, 16.0, 64.0]
    cols = {"k": ["a"] * 4, "x": xs, "time_us": [10 + x for x in xs]}
    lin = Grid(cols, keys=["k"], axes=["x"])(["a"], [8.0])
    cub = Grid(cols, keys=["k"], axes=["x"], method="pchip")(["a"], [8.0])
    assert lin == pytest.approx(np.sqrt(14 * 26), rel=1e-12)
    assert abs(cub / 18 - 1) < 0.015 < lin / 18 - 1


def test_unknown_interpolation_method_is_an_error():
    with pytest.raises(ValueError, match="unknown interpolation method 'cubic'"):
        Grid({"k": ["a"], "x": [1.0], "time_us": [1.0]}, keys=["k"], axes=["x"], method="cubic")  # type: ignore[arg-type]


def test_cubic_does_not_overshoot_a_step():
    # a step (kernel switch) between two grid lines: the cubic stays within the measured values
    xs = [1.0, 2.0, 4.0, 8.0, 16.0]
    cols = {"k": ["a"] * 5, "x": xs, "time_us": [10.0, 10.0, 10.0, 40.0, 40.0]}
    g = Grid(cols, keys=["k"], axes=["x"], method="pchip")
    for x in np.geomspace(1, 16, 41):
        t = g(["a"], [float(x)])
        assert t is not None and 10.0 - 1e-9 <= t <= 40.0 + 1e-9


def test_an_unmeasured_outer_neighbour_makes_the_slope_one_sided():
    # t = x*y on x in 1, 2, 4, 8 and y in 1, 2, with (8, 2) unmeasured: the cell [2, 4] x [1, 2]
    # is answered (its slope at x = 4 then comes from one side, exact on a power law), the cell
    # [4, 8] x [1, 2] is not, and its edge y = 1 is
    cols: dict[str, list] = {"k": [], "x": [], "y": [], "time_us": []}
    for x in (1.0, 2.0, 4.0, 8.0):
        for y in (1.0, 2.0):
            if (x, y) != (8.0, 2.0):
                for c, v in zip(cols, ("a", x, y, x * y), strict=True):
                    cols[c].append(v)
    g = Grid(cols, keys=["k"], axes=["x", "y"], method="pchip")
    assert g(["a"], [3.0, 1.5]) == pytest.approx(4.5, rel=1e-9)
    assert g(["a"], [6.0, 1.5]) is None
    assert g(["a"], [6.0, 1.0]) == pytest.approx(6.0, rel=1e-9)


def test_table_kinds_pick_their_method():
    # attention's smooth floor-to-power-law curves, MLA's as the others' (both are fused attention kernels)
    assert INTERPOLATION == {"context_attention": "pchip", "generation_attention": "pchip", "context_mla": "pchip",
                             "generation_mla": "pchip", "collective": "pchip"}
    gemm = table_grid({"dtype": ["bf16"], "m": [1.0], "n": [2.0], "k": [3.0], "time_us": [4.0]}, "gemm")
    coll = table_grid({"op": ["all_reduce"], "implementation": ["nccl"], "dtype": ["fp16"], "ranks": [8],
                       "gpus_per_node": [8], "bytes": [1.0], "time_us": [5.0]}, "collective")
    assert (gemm.method, coll.method) == ("linear", "pchip")


def test_the_decode_range_envelope_takes_out_spikes_and_keeps_what_lies_beyond_it():
    # one key, m = 1..5 (B200 vLLM FP8's pattern: high at 1, 2 and 4), then two sizes past the range
    ms = [1.0, 2.0, 3.0, 4.0, 5.0, 600.0, 700.0]
    t = [27.0, 32.0, 13.0, 32.0, 12.5, 40.0, 35.0]
    cols = {"k": ["a"] * len(ms), "m": ms, "time_us": t}
    raw = Grid(cols, keys=["k"], axes=["m"])
    env = Grid(cols, keys=["k"], axes=["m"], monotone={"m": 512})
    assert [raw(["a"], [m]) for m in ms] == pytest.approx(t, rel=1e-12)
    # up to 512 each point reads the least time at its m or a larger one in the range (12.5 at m = 5);
    # 600 and 700 keep theirs, though 700 is faster than 600 (outside the range it can be a real kernel choice)
    assert [env(["a"], [m]) for m in ms] == pytest.approx([12.5] * 5 + [40.0, 35.0], rel=1e-12)
    # between m = 5 and 600 the interpolation runs from the envelope's 12.5 to the measured 40
    assert env(["a"], [50.0]) == pytest.approx(np.exp(np.interp(np.log(50), np.log([5, 600]), np.log([12.5, 40]))))


def test_the_envelope_keeps_unmeasured_points_unmeasured():
    # a 2-D key with a hole at (m=2, n=2): the hole stays unmeasured, and each n column is enveloped alone
    cols = {"k": ["a"] * 5, "m": [1.0, 2.0, 4.0, 1.0, 4.0], "n": [1.0, 1.0, 1.0, 2.0, 2.0],
            "time_us": [30.0, 10.0, 20.0, 50.0, 60.0]}
    g = Grid(cols, keys=["k"], axes=["m", "n"], monotone={"m": 512})
    assert g(["a"], [1.0, 1.0]) == pytest.approx(10.0)       # the spike at m = 1 reads m = 2's time
    assert g(["a"], [4.0, 1.0]) == pytest.approx(20.0)
    assert g(["a"], [1.0, 2.0]) == pytest.approx(50.0)       # 50 < 60: already non-decreasing
    assert g(["a"], [2.0, 2.0]) is None
    assert g(["a"], [2.0, 1.5]) is None                      # its cell has the unmeasured corner


def test_the_committed_b200_vllm_fp8_table_reads_no_decode_spike():
    """The case that found it: Llama-3.1-70B's QKV GEMM at TP4 (n = 2560, k = 8192), FP8, vLLM 0.24.0's
    B200 table, measured 27-33 us at m = 1, 2 and 4 and 12.6-13.1 us at m = 3 and 5-16; the cost model
    now reads at m = 4 the least time measured at m = 4..512, so a decode step at batch 4 is no longer
    slower than at batch 8."""
    from simulator.hardware import MEASURED_DIR
    from simulator.silicon.format import read_rows
    from simulator.silicon.tables import MONOTONE, load_measured

    assert MONOTONE == {"gemm": {"m": 512}}
    prof = load_measured(str(MEASURED_DIR / "b200"))
    ref = next(t for t in prof.find("gemm", "vllm") if t.engine_version == "0.24.0")
    rows = read_rows(ref.path, "gemm")
    raw = {int(m): t for d, m, n, k, t in zip(rows["dtype"], rows["m"], rows["n"], rows["k"], rows["time_us"],
                                                strict=True) if d == "fp8" and n == 2560 and k == 8192 and m <= 512}
    assert raw[4] > 2 * raw[5] and raw[1] > 2 * raw[3]
    grid = prof.grid(ref)
    at = {m: grid(("fp8",), (m, 2560, 8192)) for m in (1, 2, 3, 4, 5, 8)}
    assert at[4] == pytest.approx(min(raw[m] for m in raw if m >= 4), rel=1e-9)
    assert at[1] <= at[2] <= at[3] <= at[4] <= at[5] <= at[8]


def test_every_committed_gemm_table_reads_non_decreasing_in_m_over_the_decode_range():
    """The envelope holds on the real tables: for every measured GPU, engine table and GEMM format, at the
    (n, k) shapes of Llama-3.1-8B's TP1 layers, the time read at m = 1..512 never falls as m grows,
    and above 512 the measured times are read as they are (the largest m keeps its own time)."""
    from simulator.hardware import MEASURED_DIR
    from simulator.silicon.format import read_rows
    from simulator.silicon.tables import load_measured

    checked = 0
    for folder in sorted(p for p in MEASURED_DIR.iterdir() if (p / "tables.yaml").exists()):
        prof = load_measured(str(folder))
        for ref in (t for t in prof.tables if t.kind == "gemm"):
            grid = prof.grid(ref)
            for key in grid.keys_present():
                sizes = grid.axis_values(key)
                assert sizes is not None
                ms, ns, ks = (list(map(float, a)) for a in sizes)
                for n, k in ((6144.0, 4096.0), (4096.0, 14336.0)):
                    if n not in ns or k not in ks:
                        continue
                    reads = [grid(key, (m, n, k)) for m in ms if m <= 512]
                    got = [r for r in reads if r is not None]
                    assert got == sorted(got), (folder.name, ref.path.name, key, n, k)
                    checked += 1
            rows = read_rows(ref.path, "gemm")
            top = max(rows["m"])
            i = next(i for i, m in enumerate(rows["m"]) if m == top)
            assert grid((rows["dtype"][i],), (rows["m"][i], rows["n"][i], rows["k"][i])) == pytest.approx(
                rows["time_us"][i], rel=1e-9) or top <= 512
    assert checked > 50
