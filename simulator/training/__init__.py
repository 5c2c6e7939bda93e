"""Training planner: one step as a pipeline simulation, memory, and the whole run's time and cost.

Names load on first use (PEP 562): the scenario package imports ``training.schedules`` while it is
being defined, so importing this package must not import the scenario back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import TrainingResult
    from .simulate import simulate_training


def __getattr__(name: str) -> Any:
    if name == "TrainingResult":
        from .result import TrainingResult

        globals()[name] = TrainingResult
        return TrainingResult
    if name == "simulate_training":
        from .simulate import simulate_training

        globals()[name] = simulate_training
        return simulate_training
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainingResult", "simulate_training"]
