"""The development data lives in the repository: the validation scripts' default data folder is
``bench/data``, every file in it is described (source and licence) in its README, and the files
the training validation reads are there (so it runs from a fresh clone)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"


def test_every_committed_data_file_has_provenance():
    readme = (DATA / "README.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    files = {p.name for p in DATA.iterdir() if p.name != "README.md"}
    assert files == listed


def test_validation_scripts_read_the_committed_copy():
    for script in ("validate_training.py", "validate_serving.py", "fit_stack.py"):
        text = (ROOT / "bench" / script).read_text()
        assert 'default=ROOT / "bench" / "data"' in text, script
        for name in re.findall(r'a\.reference / "([^"]+)"', text):
            assert (DATA / name).is_file(), (script, name)
