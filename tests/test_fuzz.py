"""A seeded fuzz suite (issue 21, item 6): random mutations of every example scenario and of the
command-line arguments, run in-process through the CLI.

Every case must end in one of two ways: exit 0 with results that pass the invariants of
``simulator.invariants`` (counts conserved and >= 0, every number finite and >= 0, strict JSON), or
exit 2 with a short message and no traceback. Any other exit, any exception escaping the CLI, or a
case running past ``CASE_LIMIT_S`` fails the test.

The generator is ``random.Random(seed)``: case ``i`` is the same on every run and machine. The
examples are shrunk first (a few simulated seconds, a horizon, few Monte Carlo runs) so a case takes
well under a second; the mutations then replace values with wrong types, non-finite and extreme
numbers, negative and zero counts, drop required keys, add unknown ones, swap variants, and break
the command line (bad --set, bad files, bad sweep arguments).
"""

from __future__ import annotations

import copy
import json
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from capsim.cli import app
from simulator.invariants import bad_numbers

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CASES = 400
CASE_LIMIT_S = 10

BAD_VALUES: list[Any] = [
    "abc", "", [], {}, None, True, [1, 2], {"x": 1}, ".inf", float("inf"), float("-inf"), float("nan"), 0, -1, -1e9,
    1e30, -1e30, 1e-30, 2**63, -(2**63), 2**64, 10**100, "1e400", "0x10", "<!--<script>", "../../../x", "\u2028",
]


class CaseTimeout(Exception):
    pass


def _shrink(doc: dict[str, Any]) -> dict[str, Any]:
    """The example made tiny: a few simulated seconds of serving, few Monte Carlo runs of training."""
    d = copy.deepcopy(doc)
    if d["kind"] in ("serving", "multi_model"):
        for w in [dep.setdefault("workload", {}) for dep in d["deployments"]] if d["kind"] == "multi_model" \
                else [d.setdefault("workload", {})]:
            w["duration_s"] = 5
            w["horizon_s"] = 60
            arr = w.get("arrival", {})
            if arr.get("process") == "diurnal":
                arr["period_s"] = 10
                arr["peak_at_s"] = 5
    else:
        d.setdefault("reliability", {})["runs"] = 5
    return d


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path in the document (into mappings and lists)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _get_parent(doc: Any, path: tuple) -> Any:
    node = doc
    for p in path[:-1]:
        node = node[p]
    return node


def _mutate_value(rng: random.Random, old: Any, plausible: bool) -> Any:
    if isinstance(old, bool) or not isinstance(old, int | float) or not plausible:
        return rng.choice(BAD_VALUES)
    # a number scaled within a plausible band (valid, or just past a bound: 0, a thousandth)
    factor = rng.choice([0, 0.001, 0.1, 0.5, 0.5, 2, 2, 3])
    return type(old)(old * factor) if isinstance(old, int) else old * factor


VARIANTS: dict[str, list[dict[str, Any]]] = {   # members of each tagged union, by their tag key
    "process": [{"process": "closed_loop", "concurrency": 4, "requests": 20}, {"process": "offline", "requests": 30},
                {"process": "gamma", "rate_rps": 3, "cv": 3}, {"process": "poisson", "rate_rps": 2},
                {"process": "diurnal", "mean_rps": 2, "period_s": 10, "peak_at_s": 3}],
    "dist": [{"dist": "uniform", "low": 1, "high": 64}, {"dist": "normal", "mean": 100, "stddev": 50},
             {"dist": "exponential", "mean": 30}, {"dist": "fixed", "value": 7}, {"dist": "lognormal", "mean": 50}],
    "batching": [{"batching": "static", "max_batch_size": 4}, {"batching": "none"},
                 {"batching": "dynamic", "max_batch_size": 8, "max_queue_delay_ms": 2},
                 {"batching": "continuous", "max_num_seqs": 8, "engine": "sglang"},
                 {"batching": "continuous", "engine": "trtllm", "kv_cache_precision": "fp8"}],
    "policy": [{"policy": "kpa", "target": 2, "max_replicas": 3}, {"policy": "hpa", "target": 4, "max_replicas": 3},
               {"policy": "queue", "target": 2, "max_replicas": 3}, {"policy": "none"}],
    "schedule": [{"schedule": "gpipe", "tp": 8, "pp": 8}, {"schedule": "1f1b", "tp": 8, "pp": 4},
                 {"schedule": "interleaved", "tp": 8, "pp": 8, "virtual_stages": 2}],
}


def mutate_doc(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    """1-3 mutations. In half the cases only plausible ones (a number scaled, a tagged union's member
    swapped for another), so that many cases run to the end and their results meet the invariants; in
    the others wrong types, non-finite and extreme values, missing and unknown keys."""
    d = copy.deepcopy(doc)
    plausible = rng.random() < 0.5
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(d))
        if plausible:
            paths = [p for p in paths if _plausible_target(_get_parent(d, p)[p[-1]])] or paths
        path = rng.choice(paths)
        parent = _get_parent(d, path)
        old = parent[path[-1]]
        op = rng.random()
        if plausible and isinstance(old, dict):
            tag = next(k for k in VARIANTS if k in old)
            parent[path[-1]] = copy.deepcopy(rng.choice(VARIANTS[tag]))
        elif op < 0.7 or not isinstance(parent, dict):
            parent[path[-1]] = _mutate_value(rng, old, plausible)
        elif op < 0.85:
            del parent[path[-1]]                                        # a missing key
        else:
            parent[rng.choice(["bogus", "rate", "tpp", "replicas_"])] = 1  # an unknown key
    return d


def _plausible_target(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, dict) and any(k in value for k in VARIANTS))


def _write(tmp: Path, name: str, doc: Any, rng: random.Random) -> Path:
    f = tmp / name
    r = rng.random()
    if r < 0.03:
        f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")              # a binary file
    elif r < 0.06:
        f.write_bytes(yaml.safe_dump(doc).encode("utf-16"))
    elif r < 0.08:
        f.mkdir()                                                     # a folder
    elif r < 0.10:
        f.write_text(yaml.safe_dump(doc)[: rng.randint(0, 200)] + "\n  : [unclosed")   # bad YAML
    else:
        f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return f


def case(seed: int, tmp: Path) -> list[str]:
    """The command line of fuzz case ``seed`` (files it needs are written under ``tmp``)."""
    rng = random.Random(seed)
    base = _shrink(yaml.safe_load(EXAMPLES[seed % len(EXAMPLES)].read_text()))
    doc = mutate_doc(rng, base) if rng.random() < 0.85 else base
    f = _write(tmp, f"case{seed}.yaml", doc, rng)
    command = "train" if base["kind"] == "training" else "serve"
    args = [command, str(f), "--json"]
    r = rng.random()
    if r < 0.15:
        key = rng.choice([".".join(map(str, p)) for p in _paths(base) if not any(isinstance(x, int) for x in p)])
        args += ["--set", f"{key}={json.dumps(rng.choice(BAD_VALUES))}"]
    elif r < 0.22:
        args += ["--set", rng.choice(["novalue", "=1", "a..b=1", "workload.arrival.process=trace",
                                      "model=/no/such/config.json", "hardware=../../etc/passwd", "seed=1.5",
                                      f"workload.prompt_tokens={{dist: empirical, path: {tmp}}}"])]
    elif r < 0.27:
        args = ["cost", str(f), "--json"]
    elif r < 0.34:
        grid = rng.choice(["seed=1,2", "cluster.replicas=1,[2", "seed=", "name.x=1", "parallelism.tp=1,3",
                           "workload.duration_s=1,.inf", "nothing=1"])
        args = ["sweep", str(f), "--grid", grid, "--workers", "1", "--json"]
        if rng.random() < 0.5:
            args += ["--constraint", rng.choice(["x<=1", "ttft_p99_s<=fast", "bad", "slo_met==true"])]
        if rng.random() < 0.3:
            args += ["--objective", rng.choice(["nope", "max:cost_usd", "usd_per_hour"])]
        if rng.random() < 0.2:
            args += ["--random", str(rng.choice([0, -1, 1]))]
    elif r < 0.38:
        args = [command, str(f), "--html", rng.choice([str(tmp), str(tmp / "no" / "r.html"), str(tmp / "r.txt")])]
    return args


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout(f"case ran past {CASE_LIMIT_S} s")


def check_outcome(args: list[str], code: int, stdout: str, stderr: str) -> None:
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-2000:]
    assert code in (0, 2), f"exit {code}: {stderr[-1000:]}"
    if code == 2:
        assert stderr.startswith("error:") and len(stderr) < 4000, stderr[:4000]
        return
    if "--json" not in args or not stdout.strip():
        return

    def no_constant(name: str) -> Any:
        raise AssertionError(f"{name} in the JSON output")

    out = json.loads(stdout, parse_constant=no_constant)
    if isinstance(out, dict) and out.get("kind") in ("serving", "training"):
        summary = {k: v for k, v in out.items() if k != "scenario"}
        assert bad_numbers(summary) == []
        if out["kind"] == "serving":
            assert out["arrived"] == out["completed"] + out["rejected"] + out["failed"] + out["in_flight"]
            assert min(out["arrived"], out["completed"], out["rejected"], out["failed"], out["in_flight"]) >= 0
    if isinstance(out, dict) and out.get("kind") == "multi_model":     # each deployment conserves its requests
        assert bad_numbers({k: v for k, v in out.items() if k != "scenario"}) == []
        assert out["pool"]["peak_gpus_held"] <= out["pool"]["gpus"]
        for d in out["deployments"].values():
            assert d["arrived"] == d["completed"] + d["rejected"] + d["failed"] + d["in_flight"]


@pytest.mark.parametrize("seed", range(CASES))
def test_fuzz_case(seed: int, tmp_path: Path) -> None:
    args = case(seed, tmp_path)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_LIMIT_S)
    try:
        r = CliRunner().invoke(app, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"{args}: {type(r.exception).__name__}: {r.exception}") from r.exception
    check_outcome(args, r.exit_code, r.stdout, r.stderr)


def test_cases_cover_every_example_and_entry_point(tmp_path: Path) -> None:
    commands = set()
    for s in range(CASES):
        (tmp_path / str(s)).mkdir()
        commands.add(case(s, tmp_path / str(s))[0])
    assert commands == {"serve", "train", "cost", "sweep"}
    # every example is among the cases (the 7 of issue 19, and each of issue 20's modes, multi_model included)
    assert len({s % len(EXAMPLES) for s in range(CASES)}) == len(EXAMPLES) >= 14
    assert "serve_multi_model.yaml" in {p.name for p in EXAMPLES}
