"""Bounded memos keyed on object identities, for results a plan search asks for thousands of times.

A key may hold ``id()``s of the objects a result was computed from; the memo keeps those objects
with the entry and answers only when the caller's are the very same ones, so a recycled id can
never return another object's result. A memo that reaches its size forgets everything and starts
again (the searches that fill them ask for a few hundred distinct keys). :func:`clear_all` forgets
every memo, for a benchmark's cold run.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_ALL: list[IdentityMemo[object]] = []


class IdentityMemo(Generic[V]):
    """``key -> value``, valid while the objects ``refs`` it was stored with are the caller's."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[tuple[object, ...], V]] = {}
        _ALL.append(self)     # type: ignore[arg-type]

    def get(self, key: Hashable, refs: tuple[object, ...]) -> V | None:
        hit = self._entries.get(key)
        if hit is None or len(hit[0]) != len(refs) or any(a is not b for a, b in zip(hit[0], refs, strict=True)):
            return None
        return hit[1]

    def put(self, key: Hashable, refs: tuple[object, ...], value: V) -> V:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (refs, value)
        return value

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def clear_all() -> None:
    """Forget every memo's entries."""
    for memo in _ALL:
        memo.clear()
