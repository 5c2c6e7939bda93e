"""Package boundaries: simulator/ imports neither torch nor textual; calibrate/ needs only torch,
numpy and PyYAML at import time (it runs on a bare CUDA image)."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_simulator_imports_no_torch_or_textual():
    code = ("import sys, simulator, simulator.cli, simulator.training, simulator.serving, simulator.sweep, "
            "simulator.report, simulator.api; "
            "bad = [m for m in ('torch', 'textual') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_module_in_simulator_imports_torch_or_textual_anywhere():
    """Not at the top, and not lazily inside a function either."""
    for path in (ROOT / "simulator").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("torch", "textual") for n in names), path


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_calibrate_needs_only_torch_numpy_yaml_at_import():
    code = ("import sys, calibrate, calibrate.micro, calibrate.model, calibrate.run, calibrate.timing, "
            "calibrate.__main__, calibrate.cli; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'simulator', 'pydantic', 'pandas', 'typer', "
            "'rich', 'simpy', 'plotly', 'textual', 'scipy'}); print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_tui_domain_module_imports_no_textual():
    """tui.present holds what the TUI shows as plain data; widgets live in tui.app."""
    code = "import sys, tui.present; bad = 'textual' in sys.modules; print(bad); sys.exit(1 if bad else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
