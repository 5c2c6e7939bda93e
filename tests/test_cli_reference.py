"""Starting a scenario and learning the keys: --version, init (the written file loads and runs),
keys (every key, with defaults and the preset's rules), schema (the examples validate against it),
and --set key=null / a variant switched by --set."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from capsim.cli import app
from simulator import simulate_serving, simulate_training
from simulator.errors import CapsimError
from simulator.scenario import load_scenario, parse_scenario
from simulator.scenario.reference import key_rows
from simulator.version import __version__

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout == f"capsim {__version__}\n"


def test_init_serve_writes_a_commented_scenario_that_runs(tmp_path):
    path = tmp_path / "s.yaml"
    r = runner.invoke(app, ["init", "serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--out", str(path)])
    assert r.exit_code == 0, r.output
    text = path.read_text()
    assert sum(line.lstrip().startswith("#") or " # " in line for line in text.splitlines()) >= 15   # commented
    sc = load_scenario(path)
    assert (sc.kind, sc.model, sc.hardware) == ("serving", "llama-3.1-8b", "h100-sxm")
    res = simulate_serving(sc)
    # 60 s of Poisson arrivals at 4/s: about 240 requests, all served by one H100 within the SLO
    assert 180 < res.completed < 300 and res.completed == res.arrived
    assert res.slo_met
    again = runner.invoke(app, ["init", "serve", "--out", str(path)])
    assert again.exit_code == 2 and "exists" in again.stderr       # never overwrites


def test_init_train_runs_and_fits(tmp_path):
    path = tmp_path / "t.yaml"
    assert runner.invoke(app, ["init", "train", "--out", str(path)]).exit_code == 0
    res = simulate_training(load_scenario(path))
    assert res.fits_in_memory and res.job is not None and res.job.cost_usd > 0
    big = tmp_path / "big.yaml"            # GPT-3's 2048 learned positions and 175B weights: seq 2048, TP 8
    assert runner.invoke(app, ["init", "train", "--model", "gpt3-175b", "--out", str(big)]).exit_code == 0
    doc = yaml.safe_load(big.read_text())
    assert doc["training"]["seq_len"] == 2048 and doc["parallelism"]["tp"] == 8
    simulate_training(load_scenario(big))  # valid (it does not fit 8 GPUs, which the result says)


def test_init_unknown_model_names_the_closest():
    r = runner.invoke(app, ["init", "serve", "--model", "llama-3.1-8", "--out", "-"])
    assert r.exit_code == 2 and "llama-3.1-8b" in r.stderr


def test_keys_lists_every_key_with_defaults_and_preset_rules():
    rows = {(r.kind, r.path): r for r in key_rows()}
    assert all(r.description for r in rows.values())
    rate = rows[("serving", "workload.arrival.rate_rps")]
    assert (rate.type, rate.default, rate.allowed) == ("float", "required", "> 0")
    assert rate.when == ["workload.arrival.process = poisson, gamma"]
    seqs = rows[("serving", "replica.max_num_seqs")]
    assert seqs.default.startswith("preset vllm 0.9: ") and "1024 on GPUs >= 70 GiB" in seqs.default
    assert rows[("serving", "replica.batching")].default == "continuous"
    assert rows[("serving", "services[].replica.batching")].default == "continuous"
    assert rows[("training", "parallelism.schedule")].default == "1f1b"
    assert rows[("serving", "autoscaling.target")].default.startswith("hpa: 8.0; kpa: 100.0; ray: 2.0")
    r = runner.invoke(app, ["keys", "workload.arrival.", "--json"])
    listed = json.loads(r.stdout)
    assert {x["path"] for x in listed} == {p for k, p in rows if p.startswith("workload.arrival.")}
    bad = runner.invoke(app, ["keys", "replicaz."])
    assert bad.exit_code == 2 and "no scenario key starts with 'replicaz.'" in bad.stderr


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2's floats, as an editor's YAML language server reads them (PyYAML's 1.1 reads 300.0e9,
    without a sign in the exponent, as a string, which the simulator's pydantic models coerce)."""


Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))


def test_schema_validates_the_examples_and_rejects_a_bad_key():
    r = runner.invoke(app, ["schema"])
    schema = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=Yaml12Loader)   # a SafeLoader subclass
        assert not list(v.iter_errors(doc)), path
    bad = yaml.safe_load((ROOT / "examples" / "serve_llama3_8b.yaml").read_text())
    bad["cluster"]["replicaz"] = 2
    assert list(v.iter_errors(bad))


def test_set_null_removes_a_key_and_a_variant_switch_drops_the_old_keys():
    base = ROOT / "examples" / "serve_llama3_8b.yaml"
    sc = load_scenario(base, ["slo.ttft_p99_s=null"])
    assert sc.slo.ttft_p99_s is None and sc.slo.tpot_p99_s == 0.05
    sc = load_scenario(base, ["workload.arrival.process=closed_loop", "workload.arrival.concurrency=8",
                              "workload.arrival.requests=100"])
    assert sc.workload.arrival.process == "closed_loop"
    with pytest.raises(CapsimError) as e:      # what is missing is the trace's path, not a stray rate_rps
        load_scenario(base, ["workload.arrival.process=trace"])
    assert "workload.arrival.path: Field required" in str(e.value) and "rate_rps" not in str(e.value)
    # an index into a list; null on a key that is not there is nothing to do
    sc = load_scenario(ROOT / "examples" / "serve_rag_chain.yaml", ["services.2.cluster.replicas=3", "faults=null"])
    assert sc.services[2].cluster is not None and sc.services[2].cluster.replicas == 3
    doc = {"kind": "serving", "model": "gpt2", "hardware": "h100-sxm"}
    assert parse_scenario(doc, ["slo.ttft_p99_s=null"]).slo.ttft_p99_s is None
