"""Trace replay in each public layout (capsim, Azure, BurstGPT, Mooncake, named columns) and its errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from simulator import CapsimError, parse_scenario, simulate_serving
from simulator.scenario import Trace
from simulator.serving.traces import read_trace

DATA = Path(__file__).parent / "data" / "traces"
ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_trace_samples", ROOT / "scripts" / "make_trace_samples.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def trace(path: Path | str, **kw: object) -> Trace:
    return Trace.model_validate({"process": "trace", "path": str(path), **kw})


def test_committed_samples_are_what_the_script_writes(tmp_path: Path) -> None:
    mod = _script()
    mod.main(tmp_path)
    for name in ("capsim.csv", "azure.csv", "burstgpt.csv", "mooncake.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_every_format_replays_the_same_requests() -> None:
    t_ms, prompt, output = _script().requests()
    expected_t = t_ms / 1000.0
    for fmt, name in (("capsim", "capsim.csv"), ("azure", "azure.csv"), ("burstgpt", "burstgpt.csv"),
                      ("mooncake", "mooncake.jsonl")):
        t, p, o, warnings = read_trace(trace(DATA / name, format=fmt))
        assert t == pytest.approx(expected_t, abs=1e-6), fmt
        assert p.tolist() == prompt.tolist() and o.tolist() == output.tolist(), fmt
        assert (warnings == ["trace %s: 2 failed requests (Response tokens 0) were not replayed" % (DATA / name)]
                if fmt == "burstgpt" else warnings == []), (fmt, warnings)


def test_first_rows_by_hand() -> None:
    # azure.csv rows 2-3: 18:17:03.9799600 and 18:17:04.5589600 → 0.579 s apart; mooncake: 579 ms
    t, p, o, _ = read_trace(trace(DATA / "azure.csv", format="azure"))
    assert t[:2].tolist() == pytest.approx([0.0, 0.579]) and p[:2].tolist() == [1038, 2612] and o[0] == 379
    t, *_ = read_trace(trace(DATA / "mooncake.jsonl", format="mooncake"))
    assert t[1] == pytest.approx(0.579)
    t, *_ = read_trace(trace(DATA / "mooncake.jsonl", format="mooncake", time_scale=0.5))
    assert t[1] == pytest.approx(0.2895)


def test_named_columns_and_time_units(tmp_path: Path) -> None:
    f = tmp_path / "mine.csv"
    f.write_text("arrived_us,in,out\n2000000,10,3\n2500000,20,4\n")
    t, p, o, _ = read_trace(trace(f, columns={"timestamp": "arrived_us", "prompt_tokens": "in", "output_tokens": "out"},
                                  time_unit="us"))
    assert t.tolist() == pytest.approx([0.0, 0.5]) and p.tolist() == [10, 20] and o.tolist() == [3, 4]
    g = tmp_path / "dates.csv"      # columns without a unit: date-times are recognised, with a time zone too
    g.write_text("when,in,out\n2024-05-10T00:00:01+00:00,10,3\n2024-05-10T00:00:03.5+00:00,20,4\n")
    t, *_ = read_trace(trace(g, columns={"timestamp": "when", "prompt_tokens": "in", "output_tokens": "out"}))
    assert t.tolist() == pytest.approx([0.0, 2.5])
    j = tmp_path / "mine.jsonl"
    j.write_text('{"t": 3, "i": 5, "o": 2}\n\n{"t": 1, "i": 6, "o": 1}\n')
    t, p, _, warnings = read_trace(trace(j, columns={"timestamp": "t", "prompt_tokens": "i", "output_tokens": "o"}))
    assert t.tolist() == [0.0, 2.0] and p.tolist() == [6, 5] and "sorted" in warnings[0]


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CapsimError, match=r"lacks column\(s\) Timestamp, Request tokens, Response tokens.*has "
                                          r"TIMESTAMP, ContextTokens, GeneratedTokens.*format"):
        read_trace(trace(DATA / "azure.csv", format="burstgpt"))
    with pytest.raises(CapsimError, match="row 2 has timestamp '2023-11-16 18:17:03.9799600'; expected a number in s "
                                          r"\(date-time strings: set time_unit: datetime\)"):
        read_trace(trace(DATA / "azure.csv", columns={"timestamp": "TIMESTAMP", "prompt_tokens": "ContextTokens",
                                                      "output_tokens": "GeneratedTokens"}, time_unit="s"))
    bad_date = tmp_path / "a.csv"
    bad_date.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.97,10,2\n2023-13-45 99:00,5,1\n")
    with pytest.raises(CapsimError, match="row 3 has timestamp '2023-13-45 99:00', which is not a date-time"):
        read_trace(trace(bad_date, format="azure"))
    numbers = tmp_path / "n.csv"
    numbers.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n1.5,10,2\n")
    with pytest.raises(CapsimError, match="row 2 has timestamp 1.5; expected a date-time"):
        read_trace(trace(numbers, format="azure"))
    words = tmp_path / "w.csv"
    words.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                     "0.5,ChatGPT,12,3,15,API log\n0.7,ChatGPT,many,3,15,API log\n")
    with pytest.raises(CapsimError, match="row 3 has Request tokens .many.; token counts must be whole numbers from 1 to"):
        read_trace(trace(words, format="burstgpt"))
    empty = tmp_path / "e.csv"
    empty.write_text("timestamp,prompt_tokens,output_tokens\n0,10,\n")
    with pytest.raises(CapsimError, match="row 2 has output_tokens an empty cell"):
        read_trace(trace(empty))
    frac = tmp_path / "f.jsonl"
    frac.write_text('{"timestamp": 0, "input_length": 10.5, "output_length": 2}\n')
    with pytest.raises(CapsimError, match="line 1 has input_length 10.5"):
        read_trace(trace(frac, format="mooncake"))
    lacking = tmp_path / "l.jsonl"
    lacking.write_text('{"timestamp": 0, "input_length": 10, "output_length": 2}\n{"timestamp": 5, "input_length": 3}\n')
    with pytest.raises(CapsimError, match="line 2 has output_length no value"):
        read_trace(trace(lacking, format="mooncake"))
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"timestamp": 0, "input_length": 10, "output_length": 2}\n{"timestamp": 5,\n')
    with pytest.raises(CapsimError, match="line 2 is not JSON"):
        read_trace(trace(broken, format="mooncake"))
    negative = tmp_path / "neg.csv"
    negative.write_text("timestamp,prompt_tokens,output_tokens\n-1,10,2\n")
    with pytest.raises(CapsimError, match="row 2 has timestamp -1; expected a number >= 0 in s"):
        read_trace(trace(negative))
    with pytest.raises(ValueError, match="format"):
        trace(DATA / "azure.csv", format="splitwise")


def test_azure_sample_is_served() -> None:
    sc = parse_scenario({"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
                         "workload": {"arrival": {"process": "trace", "path": str(DATA / "azure.csv"),
                                                  "format": "azure"}}})
    r = simulate_serving(sc)
    assert r["completed"] == 40
    arrivals = r.requests.arrival_s.to_numpy()
    assert arrivals == pytest.approx(np.sort(_script().requests()[0] / 1000.0), abs=1e-6)
