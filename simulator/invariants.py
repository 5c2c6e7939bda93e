"""Results that cannot lie: checks every result passes before anyone reads it.

A serving result's request counts are each counted from the requests' own states (never one as
the remainder of the others), so the conservation identity

    arrived = completed + rejected + failed + in_flight

is a real check: a request counted twice, or finished without having arrived, breaks it. Every
count is >= 0, and every number of a summary (serving or training) is finite and >= 0 (JSON has no
infinity: a quantity that is infinite by definition is ``null`` with a note saying why, e.g.
``checkpoint_interval_s``). A result that fails is an error, never a number: :class:`ResultError`,
which the CLI reports (exit 2) like any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from .errors import CapsimError

# summary keys whose numbers may be negative (none today; a signed quantity would be listed here)
SIGNED: frozenset[str] = frozenset()


class ResultError(CapsimError):
    """The simulation produced an impossible number: an input beyond what capsim models (or a bug)."""


def _numbers(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, int | float):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")


def bad_numbers(summary: dict[str, Any]) -> list[str]:
    """The keys of ``summary`` holding a non-finite or (outside :data:`SIGNED`) negative number."""
    out = []
    for path, v in _numbers(summary):
        if not math.isfinite(v):
            out.append(f"{path} = {v}")
        elif v < 0 and path.split(".")[-1].split("[")[0] not in SIGNED:
            out.append(f"{path} = {v:g}")
    return out


def _fail(what: str, problems: list[str]) -> ResultError:
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    return ResultError(f"the {what} simulation gave an impossible result ({shown}). The scenario is outside what "
                       "capsim models (e.g. token counts or durations too large for 64-bit counters); if it is a "
                       "real deployment, please report it with the scenario")


def check_summary(summary: dict[str, Any], what: str) -> None:
    """Every number of ``summary`` finite and >= 0 (raises :class:`ResultError`)."""
    bad = bad_numbers(summary)
    if bad:
        raise _fail(what, bad)


def check_serving_counts(*, arrived: int, completed: int, rejected: int, failed: int, in_flight: int,
                         finished_unarrived: int) -> None:
    """Request counts of a serving run: each >= 0, conserved, and no request finished that did not arrive."""
    counts = {"arrived": arrived, "completed": completed, "rejected": rejected, "failed": failed,
              "in_flight": in_flight}
    bad = [f"{k} = {v}" for k, v in counts.items() if v < 0]
    if arrived != completed + rejected + failed + in_flight:
        bad.append(f"arrived {arrived} != completed {completed} + rejected {rejected} + failed {failed} + "
                   f"in flight {in_flight}")
    if finished_unarrived:
        bad.append(f"{finished_unarrived} requests finished without arriving")
    if bad:
        raise _fail("serving", bad)


def strict_json(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON (RFC 8259: no ``Infinity`` or ``NaN``, which strict parsers reject); a
    non-finite number is a :class:`ResultError` naming its key, never written."""
    import json

    try:
        return json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        bad = [p for p in bad_numbers(obj) if "nan" in p or "inf" in p]
        raise _fail("JSON of the", bad or ["a non-finite number"]) from None
