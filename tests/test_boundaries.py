"""simulator/ must import neither torch nor textual."""

import subprocess
import sys


def test_simulator_imports_no_torch_or_textual():
    code = ("import sys, simulator, simulator.cli, simulator.training, simulator.api; "
            "bad = [m for m in ('torch', 'textual') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
