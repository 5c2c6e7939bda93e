"""The README's "Public API" table lists exactly ``simulator.__all__``."""

import re
from pathlib import Path

import simulator

ROOT = Path(__file__).resolve().parents[1]


def _readme_api_names() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Public API", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            first_cell = row.split("|")[1]
            names |= {re.match(r"[A-Za-z_]+", n).group(0) for n in re.findall(r"`([^`]+)`", first_cell)}
    return names


def test_readme_public_api_mirrors_simulator_all():
    assert _readme_api_names() == set(simulator.__all__)


def test_every_public_name_resolves():
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None, name
