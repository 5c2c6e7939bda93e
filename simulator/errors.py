"""User-facing errors.

Every problem a user can cause (a bad key, an unknown model, a layout that does not divide) is a
:class:`CapsimError`. The CLI prints its message and exits with status 2, without a traceback;
library callers catch it like any ``ValueError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CapsimError(ValueError):
    """An error in what the user asked for, with a message that says how to fix it."""


class InfeasibleError(CapsimError):
    """A configuration that is well-formed but cannot run (e.g. weights do not fit in memory)."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The catalog names closest to ``name`` (for 'did you mean' messages)."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.4)
    if not hits:
        hits = [c for c in lowered if name.lower() in c or c in name.lower()][:n]
    return [lowered[h] for h in hits]


def unknown(kind: str, name: str, choices: Iterable[str]) -> CapsimError:
    choices = sorted(choices)
    near = closest(name, choices)
    hint = f" Closest: {', '.join(near)}." if near else ""
    return CapsimError(f"unknown {kind} {name!r}.{hint} Available: {', '.join(choices)}.")
