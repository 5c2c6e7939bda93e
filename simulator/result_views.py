"""What every result shares: dict-style access to its summary, JSON with the scenario, the scenario as YAML."""

from __future__ import annotations

import json
from typing import Any

from .scenario import scenario_yaml


class ResultViews:
    """Mixin for a result dataclass with ``scenario`` and ``summary`` fields."""

    scenario: Any
    summary: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary, "scenario": json.loads(json.dumps(self.scenario.model_dump(mode="json")))}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def scenario_yaml(self) -> str:
        return scenario_yaml(self.scenario)
