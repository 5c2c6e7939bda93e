"""Start-up: ``capsim --help`` and ``capsim --version`` import none of pandas, numpy, pydantic or
plotly, and a command's --help none of pandas, numpy or plotly (typer 0.29 itself loads pydantic to
coerce a command's parameters); a plain ``capsim serve`` does not import plotly (only --html needs
it). Timings are in bench/startup.py, not here."""

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


def test_a_plain_serve_does_not_import_plotly():
    loaded = _loaded("serve", "examples/serve_llama3_8b.yaml", "--set", "workload.duration_s=2", "--json")
    assert "plotly" not in loaded and "pandas" in loaded     # the probe sees the simulation's modules
