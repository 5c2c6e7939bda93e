"""Package boundaries: simulator/ reaches neither torch, textual, calibrate nor tui (not at the top,
not lazily, not through importlib); calibrate/ needs only torch, numpy and PyYAML at import time
(it runs on a bare CUDA image); the application package capsim/ is the only place wiring them."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "textual", "calibrate", "tui", "capsim")


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    """Every module a file names in an import statement, importlib.import_module or __import__ call."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.module or "", node.lineno))
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                target = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "<dynamic>"
                found.append((target, node.lineno))
    return found


def test_no_module_in_simulator_reaches_torch_textual_calibrate_or_tui():
    """Statically: import statements anywhere (top level or inside functions) and importlib calls."""
    bad = []
    for path in sorted((ROOT / "simulator").rglob("*.py")):
        rel = path.relative_to(ROOT)
        for target, line in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target == "<dynamic>" and rel != Path("simulator/__init__.py"):
                bad.append(f"{rel}:{line} imports a module named at run time")
            elif target.split(".")[0] in FORBIDDEN:
                bad.append(f"{rel}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_lazy_public_api_names_only_simulator_modules():
    """simulator/__init__ imports its public names on first use; every target is one of its own modules."""
    import simulator

    assert all(mod.startswith(".") for mod in simulator._EXPORTS.values())
    assert set(simulator._EXPORTS) | {"__version__"} == set(simulator.__all__)


def test_boundary_check_sees_lazy_and_importlib_routes(tmp_path):
    """The static check is not vacuous: it flags each route a module could take to torch."""
    src = ("import importlib\n"
           "def f():\n    import torch\n"
           "def g():\n    return importlib.import_module('calibrate.run')\n"
           "def h():\n    return __import__('textual.app')\n")
    targets = [t for t, _ in _imports(ast.parse(src))]
    assert {"torch", "calibrate.run", "textual.app"} <= set(targets)


def test_importing_every_simulator_module_loads_no_torch_textual_calibrate_or_tui():
    """Dynamically, in a clean interpreter: import every module of the package and look at sys.modules."""
    code = ("import importlib, pkgutil, sys, simulator\n"
            "for m in pkgutil.walk_packages(simulator.__path__, 'simulator.'):\n"
            "    importlib.import_module(m.name)\n"
            "for n in simulator.__all__:\n"
            "    getattr(simulator, n)\n"
            f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_calibrate_needs_only_torch_numpy_yaml_at_import():
    code = ("import sys, calibrate, calibrate.micro, calibrate.model, calibrate.run, calibrate.timing, "
            "calibrate.__main__, calibrate.cli; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pandas', 'typer', "
            "'rich', 'simpy', 'plotly', 'textual', 'scipy'}); "
            "bad += sorted(m for m in sys.modules if m.startswith('simulator.') and m != 'simulator.layers' "
            "and m != 'simulator.version'); print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_tui_domain_module_imports_no_textual():
    """tui.present holds what the TUI shows as plain data; widgets live in tui.app."""
    code = "import sys, tui.present; bad = 'textual' in sys.modules; print(bad); sys.exit(1 if bad else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
