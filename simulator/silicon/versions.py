"""Engine versions: ordering and the choice of a table when the asked-for version was not measured."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PART = re.compile(r"(\d+)|([a-z]+)")
# pre-releases sort before the release they lead to: 1.3.0rc20 < 1.3.0 < 1.3.0.post1
_TAG_RANK = {"dev": -3, "a": -2, "alpha": -2, "b": -1, "beta": -1, "rc": -1, "post": 1}


def version_key(v: str) -> tuple[tuple[int, int], ...]:
    """A sort key for versions such as ``0.24.0``, ``1.3.0rc20``, ``0.5.6.post2`` and ``2.27``."""
    out: list[tuple[int, int]] = []
    for num, tag in _PART.findall(str(v).lower().split("+")[0]):
        out.append((0, int(num)) if num else (_TAG_RANK.get(tag, -4), 0))
    # a release is (0, x) forever after its last number: pad so 2.27 == 2.27.0 and rc tags compare below
    while len(out) < 4:
        out.append((0, 0))
    return tuple(out)


def choose(available: Iterable[str], wanted: str | None) -> tuple[str, str | None]:
    """The version to use and a warning, or None: ``wanted`` itself, else the newest measured one at or
    below it, else the oldest; no ``wanted`` means the newest."""
    versions = sorted(set(available), key=version_key)
    if not versions:
        raise ValueError("no versions to choose from")
    if wanted is None:
        return versions[-1], None
    if wanted in versions:
        return wanted, None
    below = [v for v in versions if version_key(v) <= version_key(wanted)]
    pick = below[-1] if below else versions[0]
    return pick, (f"no tables measured for version {wanted}; using {pick} "
                  f"({'the newest below it' if below else 'the oldest measured'}; measured: {', '.join(versions)})")
