"""Bad input never gives a traceback or a silent nonsense number (issue 21): every case the issue
found, run in-process through the CLI. Each bad input ends in exit 2 with a short message naming
what is wrong; each accepted one gives results whose counts are conserved."""

from __future__ import annotations

import json
import time
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from capsim.cli import app
from simulator.errors import CapsimError
from simulator.files import MAX_YAML_NODES, excerpt, read_json_object, read_text, safe_name
from simulator.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]
SERVE = str(ROOT / "examples/serve_llama3_8b.yaml")
TRAIN = str(ROOT / "examples/train_gpt3_175b.yaml")
SHORT = ["--set", "workload.duration_s=2"]       # a few simulated seconds: each run well under a second


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), (
        f"{args} raised {type(r.exception).__name__}: {r.exception}")
    return r.exit_code, r.stdout, r.stderr


def fails(*args: str, says: str) -> str:
    code, _, stderr = cli(*args)
    assert code == 2, f"{args}: exit {code}, stderr {stderr[:300]!r}"
    text = " ".join(stderr.split())
    assert "Traceback" not in stderr and says in text, text[:500]
    assert len(stderr) < 2000, f"message of {len(stderr)} characters"
    return text


# ---- item 1: numbers that pass gt=0 but are not physical -------------------------------------------
@pytest.mark.parametrize(("override", "says"), [
    ("workload.prompt_tokens={dist: lognormal, mean: .inf}", "workload.prompt_tokens.mean: Input should be a finite"),
    ("workload.output_tokens={dist: exponential, mean: 1.0e+30}", "output_tokens.mean: must be at most 10,000,000 tokens"),
    ("workload.prompt_tokens={dist: lognormal, mean: 100, sigma: 1.0e30}", "prompt_tokens.sigma: must be at most 4"),
    ("workload.arrival.rate_rps=.inf", "workload.arrival.rate_rps: Input should be a finite number"),
    ("workload.duration_s=.inf", "workload.duration_s: Input should be a finite number"),
    ("workload.duration_s=1.0e12", "workload.duration_s: must be at most 31,622,400 s"),
    ("workload.arrival={process: offline, requests: 1000000000000}", "requests: must be at most 1,000,000,000"),
    ("workload.arrival={process: diurnal, mean_rps: 1, period_s: 1.0e-9}", "period_s: must be from 1 to"),
    ("network_hop_ms=.inf", "network_hop_ms: Input should be a finite number"),
    ("network_hop_ms=.nan", "network_hop_ms: Input should be a finite number"),
    ("seed=-1", "seed: must be from 0 to"),
    ("cluster.replicas=10000000", "cluster.replicas: must be at most 100,000 replicas"),
    ("replica={batching: dynamic, max_queue_delay_ms: .inf}", "replica.max_queue_delay_ms: Input should be a finite"),
    ("replica={batching: static, latency_table: [[1, .nan]]}", "latency_table"),
    ("autoscaling={policy: hpa, sync_period_s: 1.0e-9}", "autoscaling.sync_period_s: must be from 0.1 to"),
])
def test_serving_numbers_out_of_range(override: str, says: str) -> None:
    fails("serve", SERVE, "--json", "--set", override, says=says)


@pytest.mark.parametrize(("override", "says"), [
    ("training.total_tokens=.inf", "training.total_tokens: Input should be a finite number"),
    ("training.dispatch_us=.inf", "training.dispatch_us: Input should be a finite number"),
    ("training.global_batch=1000000000000", "training.global_batch: must be at most 10,000,000"),
    ("reliability.runs=1000000000", "reliability.runs: must be at most 10,000"),
])
def test_training_numbers_out_of_range(override: str, says: str) -> None:
    fails("train", TRAIN, "--json", "--set", override, says=says)


def test_every_numeric_key_has_a_documented_range() -> None:
    """No numeric scenario key is bounded only by gt=0 (where .inf and 1e300 pass)."""
    from simulator import limits
    from simulator.scenario.base import _MODELS

    def numeric(ann: object) -> bool:
        if ann in (int, float):
            return True
        if typing.get_origin(ann) is typing.Literal or (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return False
        return any(numeric(a) for a in typing.get_args(ann))

    # capsim's own models (a test's plug-in registers models of its own, whose numbers are only finite)
    ours = [m for m in _MODELS if m.__module__.startswith("simulator.")]
    missing = [f"{m.__name__}.{name}" for m in ours for name, f in m.model_fields.items()
               if numeric(f.annotation) and limits.range_of(m.__name__, name) is None]
    assert missing == []
    assert numeric(list[tuple[float, int]] | None) and not numeric(typing.Literal[0, 1, 2])


def test_ranges_keep_real_scenarios() -> None:
    for p in sorted((ROOT / "examples").glob("*.yaml")):
        doc = yaml.safe_load(p.read_text())
        assert parse_scenario(doc).kind == doc["kind"]


# ---- item 1: files that are not what they should be --------------------------------------------------
@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "folder.yaml").mkdir()
    (d / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\x00\x00\x00binary")
    (d / "utf16.yaml").write_bytes("kind: serving\n".encode("utf-16"))
    (d / "latin1.yaml").write_bytes("kind: serving\nname: caf\xe9\n".encode("latin-1"))
    (d / "list.json").write_text("[1, 2]")
    (d / "config.json").mkdir()
    bomb = ["kind: serving", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    (d / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    return {p.stem: p for p in d.iterdir()}


@pytest.mark.parametrize(("kind", "says"), [
    ("folder", "is a folder, not a file"), ("binary", "is a binary file"), ("utf16", "is UTF-16 text"),
    ("latin1", "is not UTF-8 text (byte 0xe9 at offset 23); save it as UTF-8"),
])
def test_every_loader_reports_unreadable_files(bad: dict[str, Path], kind: str, says: str) -> None:
    f = str(bad[kind])
    fails("serve", f, says=f"scenario file {excerpt(f)} {says}")
    fails("sweep", f, "--grid", "seed=1,2", says=f"scenario file {excerpt(f)} {says}")
    fails("serve", SERVE, "--set", f"hardware={f}", says=f"hardware profile {excerpt(f)} {says}")
    fails("serve", SERVE, *SHORT, "--set", f"workload.arrival={{process: trace, path: {f}}}",
          says=f"trace {excerpt(f)} {says}")
    fails("serve", SERVE, *SHORT, "--set", f"workload.prompt_tokens={{dist: empirical, path: {f}}}",
          says=f"empirical length file {excerpt(f)} {says}")
    fails("cost", SERVE, "--set", f"workload.prompt_tokens={{dist: empirical, path: {f}}}",
          says=f"empirical length file {excerpt(f)} {says}")


def test_model_config_json_must_be_an_object(bad: dict[str, Path]) -> None:
    fails("serve", SERVE, "--set", f"model={bad['list']}", says="must hold a JSON object {...}, not a list")
    fails("serve", SERVE, "--set", f"model={bad['config']}", says="config.json/config.json' does not exist")


def test_yaml_alias_bomb_is_refused_quickly(bad: dict[str, Path]) -> None:
    t = time.perf_counter()
    fails("serve", str(bad["bomb"]), says=f"expands to more than {MAX_YAML_NODES:,} values")
    assert time.perf_counter() - t < 10


def test_messages_quote_only_an_excerpt(tmp_path: Path) -> None:
    doc = {"kind": "serving", "model": [[["x"] * 50] * 50] * 50}   # 125,000 strings: the message quotes ~80 chars
    f = tmp_path / "big.yaml"
    f.write_text(yaml.safe_dump(doc))
    text = fails("serve", str(f), says="model.str: Input should be a valid string")
    assert "hardware: Field required" in text and "(got {" not in text.split("hardware: Field required")[1][:10]


def test_readers_directly(tmp_path: Path) -> None:
    with pytest.raises(CapsimError, match="does not exist"):
        read_text(tmp_path / "missing.csv", "trace")
    (tmp_path / "ok.txt").write_bytes("\ufeffa,b\n".encode())
    assert read_text(tmp_path / "ok.txt", "trace") == "a,b\n"          # a UTF-8 BOM is dropped
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CapsimError, match="deep.json"):
        read_json_object(tmp_path / "deep.json", "model config")
    assert len(excerpt("x" * 10_000)) == 80 and "..." in excerpt("x" * 10_000)
    row = "[0, 1, 2, 3, 4, 5, ...]"
    assert excerpt([[list(range(100))] * 100] * 100) == f"[[{row}, {row}, {row}, ..."


# ---- item 1: profile and model numbers ---------------------------------------------------------------
def _profile(tmp_path: Path, **changes: object) -> str:
    doc = yaml.safe_load((ROOT / "hardware_profiles/h100-sxm.yaml").read_text())
    for key, value in changes.items():
        node = doc
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    doc["name"] = "h100-test"
    f = tmp_path / "h100-test.yaml"
    f.write_text(yaml.safe_dump(doc))
    return str(f)


@pytest.mark.parametrize(("change", "says"), [
    ({"peak_tflops__bf16": -989}, "peak_tflops.bf16: Input should be greater than 0"),
    ({"peak_tflops__bf16": float("nan")}, "peak_tflops.bf16: Input should be a finite number"),
    ({"memory_bandwidth_tbps": 0}, "memory_bandwidth_tbps: Input should be greater than 0"),
    ({"num_sms": 0}, "num_sms: Input should be greater than or equal to 1"),
    ({"intra_node__step_latency_us": -6}, "intra_node.step_latency_us: Input should be greater than or equal to 0"),
    ({"inter_node__busbw_gb_s": float("inf")}, "inter_node.busbw_gb_s: Input should be a finite number"),
    ({"efficiency__gemm_max__bf16": 7}, "efficiency.gemm_max.bf16: Input should be less than or equal to 1"),
])
def test_profile_numbers_checked_on_load(tmp_path: Path, change: dict, says: str) -> None:
    fails("train", TRAIN, "--set", f"hardware={_profile(tmp_path, **change)}", says=says)


def test_model_numbers_checked_on_load(tmp_path: Path) -> None:
    fails("serve", SERVE, "--set", "model={layers: 2, hidden: 64, heads: 4, kv_heads: -2, vocab: 100}",
          says="model: kv_heads: Input should be greater than or equal to 0 (got -2)")
    fails("serve", SERVE, "--set", "model={layers: 2, hidden: 64, heads: 4, kv_heads: 3, vocab: 100}",
          says="heads=4 is not a multiple of kv_heads=3")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64,
                               "num_attention_heads": 4, "num_key_value_heads": -4, "intermediate_size": 128,
                               "vocab_size": 100}))
    fails("serve", SERVE, "--set", f"model={cfg}", says="kv_heads")


# ---- item 1: traces and the sweep's arguments -----------------------------------------------------
@pytest.mark.parametrize(("rows", "says"), [
    ("0,abc,10\n1,5,5\n", "row 2 has prompt_tokens 'abc'; token counts must be whole numbers from 1 to 10,000,000"),
    ("0,1e30,10\n", "row 2 has prompt_tokens 1e+30; token counts must be whole numbers"),
    ("0,5,-3\n", "row 2 has output_tokens -3"),
])
def test_trace_token_counts(tmp_path: Path, rows: str, says: str) -> None:
    f = tmp_path / "trace.csv"
    f.write_text("timestamp,prompt_tokens,output_tokens\n" + rows)
    fails("serve", SERVE, "--set", f"workload.arrival={{process: trace, path: {f}}}", says=says)


@pytest.mark.parametrize(("args", "says"), [
    (["--grid", "cluster.replicas=[1,2"], "'[1' is not a YAML value"),
    (["--grid", "name.x=1,2"], "--grid name.x: not a key of a serving scenario; closest: name"),
    (["--grid", "cluster.replicas=1,2", "--constraint", "ttft_p99_s<=fast"], "'fast' is not a number"),
    (["--grid", "cluster.replicas=1,2", "--random", "0"], "--random 0: give a number of configurations >= 1"),
])
def test_sweep_arguments(args: list[str], says: str) -> None:
    fails("sweep", SERVE, *args, says=says)


def test_max_queue_zero_rejects_every_request() -> None:
    code, stdout, _ = cli("serve", SERVE, "--json", *SHORT, "--set", "replica.max_queue=0")
    r = json.loads(stdout)
    assert code == 0 and r["arrived"] > 0 and r["completed"] == 0 and r["in_flight"] == 0
    assert r["rejected"] == r["arrived"] == r["rejected_by_reason"]["queue_full"] and r["slo_met"] is False


def test_safe_name() -> None:
    assert safe_name("../../../x") == "x"
    assert safe_name("llama 3/8b: chat") == "llama_3_8b_chat"
    assert safe_name("...") == "capsim" and safe_name("a" * 300) == "a" * 80


# ---- item 2: results that cannot lie ---------------------------------------------------------------
FAULTS = ["--set", "workload.duration_s=120", "--set", "faults.replica_mtbf_hours=0.01", "--set",
          "autoscaling.node_provision_s=5", "--set", "autoscaling.model_load_s=5"]


def test_retries_count_resent_requests_not_losses() -> None:
    """max_retries 0: every request on a lost replica fails and none is re-sent (the old counter said one
    retry per loss, 7,320 with max_retries 0)."""
    code, out0, _ = cli("serve", SERVE, "--json", *FAULTS, "--set", "faults.max_retries=0")
    r0 = json.loads(out0)
    assert code == 0 and r0["replica_failures"] > 0 and r0["failed"] > 0 and r0["retries"] == 0
    assert r0["completed"] + r0["failed"] + r0["rejected"] + r0["in_flight"] == r0["arrived"]
    code, out2, _ = cli("serve", SERVE, "--json", *FAULTS, "--set", "faults.max_retries=2")
    r2 = json.loads(out2)
    # the same arrivals and failures: what failed with no retry was re-sent at least once instead
    assert r2["replica_failures"] == r0["replica_failures"] and r2["arrived"] == r0["arrived"]
    assert r2["retries"] >= r0["failed"] and r2["retries"] >= 2 * r2["failed"]


def test_counts_are_checked_not_derived() -> None:
    from simulator.invariants import ResultError, check_serving_counts

    check_serving_counts(arrived=10, completed=6, rejected=2, failed=1, in_flight=1, finished_unarrived=0)
    with pytest.raises(ResultError, match=r"arrived 39 != completed 45 \+ rejected 0 \+ failed 0 \+ in flight 0"):
        check_serving_counts(arrived=39, completed=45, rejected=0, failed=0, in_flight=0, finished_unarrived=0)
    with pytest.raises(ResultError, match="in_flight = -4633"):
        check_serving_counts(arrived=0, completed=4633, rejected=0, failed=0, in_flight=-4633, finished_unarrived=0)
    with pytest.raises(ResultError, match="3 requests finished without arriving"):
        check_serving_counts(arrived=3, completed=3, rejected=0, failed=0, in_flight=0, finished_unarrived=3)


def test_non_finite_and_negative_outputs_are_errors() -> None:
    from simulator.invariants import ResultError, bad_numbers, check_summary, strict_json

    s = {"mfu": 6e26, "ttft_s": {"p50": -0.5, "p99": float("nan")}, "cost": float("inf"), "ok": None, "n": [1, -2]}
    assert bad_numbers(s) == ["ttft_s.p50 = -0.5", "ttft_s.p99 = nan", "cost = inf", "n[1] = -2"]
    with pytest.raises(ResultError, match=r"impossible result \(ttft_s.p50 = -0.5; ttft_s.p99 = nan; cost = inf; "
                                          r"n\[1\] = -2\)"):
        check_summary(s, "serving")
    with pytest.raises(ResultError, match="cost = inf"):
        strict_json({"cost": float("inf")})


def _strict(text: str) -> object:
    def no_constant(name: str) -> object:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=no_constant)


def test_training_json_is_strict_with_null_and_a_reason() -> None:
    code, stdout, _ = cli("train", TRAIN, "--json", "--set", "reliability.node_mtbf_hours=null")
    r = _strict(stdout)
    assert code == 0 and isinstance(r, dict)
    assert r["checkpoint_interval_s"] is None and "Young/Daly interval is infinite" in r["checkpoint_interval_note"]
    code, stdout, _ = cli("train", TRAIN, "--json")      # with an MTBF: a number and no note
    r = _strict(stdout)
    assert isinstance(r, dict) and r["checkpoint_interval_s"] > 0 and r["checkpoint_interval_note"] is None


def test_horizon_cut_counts_in_flight_from_states() -> None:
    code, stdout, _ = cli("serve", SERVE, "--json", "--set", "workload.duration_s=20", "--set", "workload.horizon_s=10",
                          "--set", "workload.arrival.rate_rps=200")
    r = _strict(stdout)
    assert code == 0 and isinstance(r, dict) and r["in_flight"] > 0
    assert r["arrived"] == r["completed"] + r["rejected"] + r["failed"] + r["in_flight"]


# ---- item 5: names made from the user's strings; calibrate's arguments --------------------------------
def test_calibrated_profile_name_stays_in_its_folder() -> None:
    pytest.importorskip("torch")
    from calibrate.cli import profile_name

    assert profile_name("cpu-cal", "gpt-tiny") == "cpu-gpt-tiny-cal"          # catalog names unchanged
    assert profile_name("cpu-cal", "../../x") == "cpu-x-cal"
    assert profile_name("cpu-cal", None) == "cpu-cal"


@pytest.mark.parametrize(("args", "says"), [
    (["--module", "no_such_pkg.mod:build", "--input-shape", "2,8"], "cannot import 'no_such_pkg.mod'"),
    (["--module", "json:nothing_here", "--input-shape", "2,8"], "'json' has no 'nothing_here'"),
    (["--module", "json:dumps", "--input-shape", "2,x"], "--input-shape '2,x': expected positive integers"),
    (["--module", "not a module", "--input-shape", "2,8"], "expected pkg.module:factory"),
    (["--model", "gpt-tiny", "--out", "/no/such/folder/x.txt"], "expected a file ending in .yaml or .yml"),
    (["--dtype", "int3"], "--dtype 'int3': use bf16, fp16, fp8 or fp32"),
])
def test_calibrate_arguments_fail_before_any_benchmark(args: list[str], says: str) -> None:
    pytest.importorskip("torch")
    t = time.perf_counter()
    fails("calibrate", "--device", "cpu", *args, says=says)
    assert time.perf_counter() - t < 10


def test_python_m_calibrate_arguments(tmp_path: Path) -> None:
    import subprocess
    import sys

    pytest.importorskip("torch")
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    for args, says in ((["--shapes", str(tmp_path)], "cannot be read as YAML (IsADirectoryError"),
                       (["--shapes", str(tmp_path / "list.yaml")], "expected a YAML mapping of keys, got list"),
                       (["--device", "tpu"], "--device 'tpu': use cuda or cpu"),
                       (["--out", str(tmp_path / "missing" / "x.yaml")], "give a file name in an existing folder")):
        r = subprocess.run([sys.executable, "-m", "calibrate", "--out", str(tmp_path / "p.yaml"), *args],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---- item 3: bounded work --------------------------------------------------------------------------
def test_overloaded_replica_is_reported_unstable_at_once() -> None:
    """1,000 requests/s on one 8B H100 for an hour: 47 simulated hours of draining before; refused now,
    with the arrival rate, the estimated capacity and the knobs, in well under 5 s of CPU."""
    t = time.process_time()
    text = fails("serve", SERVE, "--set", "workload.arrival.rate_rps=1000", "--set", "cluster.replicas=1",
                 "--set", "workload.duration_s=3600", says="unstable: arrivals of 1,000 requests/s exceed 2x")
    assert time.process_time() - t < 5
    assert "capacity of 1 replica(s)" in text and "pass --force" in text and "workload.horizon_s" in text


def test_force_runs_an_unstable_system_and_says_so() -> None:
    args = ["serve", SERVE, "--json", "--set", "workload.arrival.rate_rps=100", "--set", "cluster.replicas=1",
            "--set", "workload.duration_s=20"]
    fails(*args, says="unstable")
    code, stdout, _ = cli(*args, "--force")
    r = json.loads(stdout)
    assert code == 0 and any(w.startswith("unstable:") for w in r["warnings"])
    assert r["completed"] == r["arrived"] and r["simulated_s"] > 2 * 20     # it drained long after arrivals stopped


def test_a_horizon_or_a_bounded_queue_is_not_unstable() -> None:
    for extra in ("workload.horizon_s=30", "replica.max_queue=50"):
        code, stdout, _ = cli("serve", SERVE, "--json", "--set", "workload.arrival.rate_rps=100", "--set",
                              "cluster.replicas=1", "--set", "workload.duration_s=20", "--set", extra)
        assert code == 0 and not any(w.startswith("unstable") for w in json.loads(stdout)["warnings"])


@pytest.mark.parametrize(("args", "says"), [
    (["serve", SERVE, "--set", "workload.duration_s=36000", "--set", "workload.arrival.rate_rps=1000"],
     "this run would simulate about 36,000,000 requests (~3.7 GiB at 110 B each); the bound is 10,000,000"),
    (["serve", SERVE, "--set", "autoscaling={policy: hpa, sync_period_s: 0.1, max_replicas: 4}", "--set",
      "workload.horizon_s=31000000", "--set", "workload.duration_s=10"], "autoscaler ticks (bound 20,000,000)"),
    (["train", TRAIN, "--set", "training.global_batch=10000000"],
     "one step's pipeline has 30,000,000 forward/backward ops (625,000 micro-batches x 8 stages x 3 virtual"),
    (["train", TRAIN, "--set", "reliability.runs=10000", "--set", "reliability.node_mtbf_hours=0.5"],
     "10,000 Monte Carlo runs x 141,406 expected failures each"),
    (["sweep", SERVE, "--grid", "seed=" + ",".join(map(str, range(1000))), "--grid",
      "cluster.replicas=" + ",".join(map(str, range(1, 1001)))], "the sweep has 1,000,000 configurations (bound 100,000)"),
])
def test_work_beyond_the_bounds_is_refused_before_it_starts(args: list[str], says: str) -> None:
    t = time.process_time()
    text = fails(*args, says=says)
    assert "pass --force" in text and time.process_time() - t < 5


def test_max_rate_search_says_when_it_stopped_at_its_limit() -> None:
    from simulator.sweep import sweep

    sc = parse_scenario({**yaml.safe_load(Path(SERVE).read_text()),
                         "workload": {"duration_s": 60, "arrival": {"process": "poisson", "rate_rps": 0.2}}})
    row = sweep(sc, grid={"cluster.replicas": [4]}, max_rate=True, workers=1).frame.iloc[0]
    # 64 x 0.2 = 12.8 requests/s on 4 replicas good for ~20 each: the search stops at its cap, and says so
    assert bool(row["max_rate_at_limit"]) and row["max_rate_rps"] >= 6.4


def test_force_reaches_the_sweeps_worker_processes() -> None:
    """--force sets a context variable, which does not cross into a process pool: it travels with each
    chunk of configurations, so a forced sweep runs the unstable configuration in its workers too."""
    from simulator.scenario import load_scenario
    from simulator.sweep.executors import _chunk, run_local
    from simulator.workbound import allow_large

    sc = load_scenario(Path(SERVE), ["workload.arrival.rate_rps=100", "cluster.replicas=1", "workload.duration_s=20"])
    doc = sc.model_dump(mode="json", exclude_unset=True)
    refused, forced = _chunk([doc], False), _chunk([doc], False, True)
    assert "unstable" in str(refused[0].get("error")) and not forced[0].get("error")
    pooled = run_local([doc, doc], workers=2, max_rate=False, progress=None)
    assert all("unstable" in str(r.get("error")) for r in pooled)        # without --force, workers refuse
    with allow_large():
        pooled = run_local([doc, doc], workers=2, max_rate=False, progress=None)
    assert not any(r.get("error") for r in pooled)                       # with it, they run
