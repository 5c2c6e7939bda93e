"""Reading the user's files: one place that turns a missing file or bad YAML into a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import CapsimError


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in ``path`` (``what`` names it in errors, e.g. 'scenario file')."""
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise CapsimError(f"{what} {str(p)!r} does not exist") from None
    except yaml.YAMLError as e:
        raise CapsimError(f"{what} {str(p)!r} is not valid YAML: {e}") from None
