"""Scenario validation, overrides and the CLI's user-facing errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.errors import CapsimError
from simulator.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
BASE = {"kind": "training", "model": "gpt3-175b", "hardware": "a100-sxm-80gb"}


def capsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "capsim", *args], capture_output=True, text=True, cwd=ROOT)


def test_overrides_set_nested_keys_with_types():
    sc = parse_scenario(BASE, ["parallelism.tp=4", "training.micro_batch=2", "parallelism.sequence_parallel=true"])
    assert sc.parallelism.tp == 4 and sc.training.micro_batch == 2 and sc.parallelism.sequence_parallel is True


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(CapsimError) as e:
        parse_scenario(BASE, ["parallelism.tpp=2"])
    assert "parallelism.tpp" in str(e.value) and "tp, pp, dp" in str(e.value)


def test_bad_value_names_allowed_values():
    with pytest.raises(CapsimError, match=r"training.recompute: Input should be 'none', 'selective' or 'full' \(got 'some'\)"):
        parse_scenario(BASE, ["training.recompute=some"])


def test_serving_union_errors_name_the_right_keys():
    doc = {"kind": "serving", "model": "llama-3.1-8b", "hardware": "h100-sxm",
           "workload": {"arrival": {"process": "poisson", "rate": 3}}}
    with pytest.raises(CapsimError) as e:
        parse_scenario(doc)
    assert "workload.arrival.rate_rps: Field required" in str(e.value)
    assert "unknown key 'workload.arrival.rate'; allowed keys: process, rate_rps" in str(e.value)


def test_examples_load():
    """Each example loads as the kind and name it writes, and its keys survive a round trip."""
    import yaml

    from simulator.scenario import scenario_yaml

    for p in sorted((ROOT / "examples").glob("*.yaml")):
        doc = yaml.safe_load(p.read_text())
        sc = load_scenario(p)
        assert (sc.kind, sc.name) == (doc["kind"], doc["name"]), p
        assert parse_scenario(yaml.safe_load(scenario_yaml(sc))) == sc, p


def test_cli_error_exit_2_without_traceback():
    r = capsim("train", "examples/train_gpt3_175b.yaml", "--set", "model=gpt-4")
    assert r.returncode == 2
    assert "unknown model 'gpt-4'" in r.stderr and "Traceback" not in r.stderr
    r = capsim("train", "missing.yaml")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_cli_models_and_profiles_json():
    models = json.loads(capsim("models", "--json").stdout)
    assert {m["name"] for m in models} >= {"gpt3-175b", "llama-3.1-405b", "mixtral-8x7b", "bert-large", "vit-b-16"}
    profiles = json.loads(capsim("profiles", "--json").stdout)
    names = {p["name"] for p in profiles}
    assert names >= {"h100-sxm", "h100-pcie", "h200", "a100-sxm-80gb", "a100-sxm-40gb", "l4", "l40s", "a10g", "t4",
                     "mi300x", "b200"}


def test_cli_cost_table():
    rows = json.loads(capsim("cost", "examples/serve_llama3_8b.yaml", "--json").stdout)
    decode = [r for r in rows if r["pass"] == "decode" and r["op"] == "fc1"]
    assert decode and decode[0]["time_us"] > 0
