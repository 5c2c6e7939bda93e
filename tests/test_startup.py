"""Start-up: ``capsim --help`` and ``capsim --version`` import none of pandas, numpy, pydantic or
plotly, and a command's --help none of pandas, numpy or plotly (typer 0.29 itself loads pydantic to
coerce a command's parameters); a plain ``capsim serve`` imports neither plotly (only --html needs
it) nor pandas (only the frames need it, built when first read). Timings are in bench/startup.py,
not here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "numpy", "pydantic", "plotly")

PROBE = """
import json, sys
from capsim.cli import app
try:
    app(sys.argv[1:], prog_name="capsim")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def _loaded(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(r.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("--version",)])
def test_help_imports_no_heavy_module(args):
    assert _loaded(*args) == []


@pytest.mark.parametrize("command", ["serve", "sweep", "keys", "init", "train"])
def test_a_commands_help_imports_no_simulator_dependency(command):
    assert set(_loaded(command, "--help")) <= {"pydantic"}


@pytest.mark.parametrize("json_out", [(), ("--json",)])
def test_a_plain_serve_imports_neither_plotly_nor_pandas(json_out):
    loaded = _loaded("serve", "examples/serve_llama3_8b.yaml", "--set", "workload.duration_s=2", *json_out)
    assert loaded == ["numpy", "pydantic"]      # the probe sees the simulation's modules, and no more


def test_a_serve_writing_its_time_series_imports_pandas(tmp_path):
    out = tmp_path / "ts.csv"
    loaded = _loaded("serve", "examples/serve_llama3_8b.yaml", "--set", "workload.duration_s=2", "--json",
                     "--timeseries-out", str(out))
    assert "pandas" in loaded and out.read_text().startswith("t_s,replica,queue,running")


SERVE_TABLES = """
import json, sys
from simulator.silicon import tables
read = []
build = tables.cached_grid
tables.cached_grid = lambda path, **kw: read.append(path.name) or build(path, **kw)
from simulator import load_scenario, simulate_serving
simulate_serving(load_scenario("examples/serve_llama3_8b.yaml", ["workload.duration_s=2"]))
print(json.dumps(sorted(read)), file=sys.stderr)
"""


def test_a_serve_reads_only_its_engines_tables():
    """Llama-3.1-8B at TP1 on vLLM (the example's engine, newest measured version 0.24.0) times its
    GEMMs and prefill and decode attention from vLLM's tables, and no all-reduce (one GPU); the
    training basis (TensorRT-LLM's FP8 GEMMs, ...) is not bound, so none of its tables is read."""
    r = subprocess.run([sys.executable, "-c", SERVE_TABLES], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CAPSIM_CACHE_DIR": "off"})
    assert json.loads(r.stderr.strip().splitlines()[-1]) == [
        "context_attention.vllm-0.24.0.csv.gz", "gemm.vllm-0.24.0.csv.gz", "generation_attention.vllm-0.24.0.csv.gz"]


COLD_TABLES = """
import json, sys
from simulator import get_profile, load_scenario
load_scenario("examples/serve_llama3_8b.yaml")
kb = get_profile("h100-sxm").with_engine("vllm").kernels
t = kb.gemm("bf16", 4096, 4096, 4096)
print(json.dumps([t is not None, "pandas" in sys.modules]), file=sys.stderr)
"""


def test_reading_kernel_tables_and_a_scenario_needs_no_pandas():
    """The scenario, the profile and a table parsed from its CSV (cache off: the numpy reader) load
    without pandas, which is 40% of a serve's imports."""
    r = subprocess.run([sys.executable, "-c", COLD_TABLES], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CAPSIM_CACHE_DIR": "off"})
    assert json.loads(r.stderr.strip().splitlines()[-1]) == [True, False]


TRAINING_KEYS = """
import json, sys
from capsim.cli import app
try:
    app(["serve", "examples/serve_llama3_8b.yaml", "--set", "workload.duration_s=2", "--json"], prog_name="capsim")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m == "numpy.ma" or m.startswith((
    "simulator.training", "simulator.scenario.training", "simulator.scenario.deployments")))), file=sys.stderr)
"""


def test_a_serve_loads_no_training_or_multi_model_keys_and_no_masked_arrays():
    """The scenario kinds' models load by kind (simulator.scenario.loading._Kinds), and the serving
    percentiles need no numpy.ma (simulator.order_stats)."""
    r = subprocess.run([sys.executable, "-c", TRAINING_KEYS], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert json.loads(r.stderr.strip().splitlines()[-1]) == []


def test_every_kind_still_loads_by_name():
    from simulator.scenario import MultiModelScenario, Scenario, TrainingScenario, load_scenario
    from simulator.scenario.loading import _KINDS

    assert list(_KINDS) == ["training", "serving", "multi_model"] and "serving" in _KINDS and "x" not in _KINDS
    assert _KINDS["training"] is TrainingScenario and _KINDS["multi_model"] is MultiModelScenario
    assert isinstance(load_scenario("examples/train_gpt3_175b.yaml"), TrainingScenario)
    assert isinstance(load_scenario("examples/serve_multi_model.yaml"), MultiModelScenario)
    assert TrainingScenario in Scenario.__args__
