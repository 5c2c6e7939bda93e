"""What every result shares: its summary as a dict (the JSON without the scenario), ``result["key"]``
reads of it, JSON with the scenario, and the scenario as YAML.

The results keep their numbers in typed fields; the dict is derived from them on request, so it
can never disagree with the attributes.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from .invariants import strict_json
from .scenario import scenario_yaml

NOT_SUMMARY = {"summary": False}   # dataclass field metadata: the scenario and the frames, not summary fields


class ResultViews(ABC):
    """Mixin for a result dataclass with a ``scenario`` field and a ``summary`` property."""

    scenario: Any

    @property
    @abstractmethod
    def summary(self) -> dict[str, Any]:
        """The result as JSON-ready data, keys in their documented order (no scenario)."""

    def __getitem__(self, key: str) -> Any:
        """``result["key"]`` is ``result.to_dict()["key"]`` (the dict-style access of earlier versions)."""
        if key == "scenario":
            return self.to_dict()["scenario"]
        return self.summary[key]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "scenario": json.loads(json.dumps(self.scenario.model_dump(mode="json")))}

    def to_json(self, indent: int | None = 2) -> str:
        return strict_json(self.to_dict(), indent)

    def scenario_yaml(self) -> str:
        return scenario_yaml(self.scenario)
