"""Planning: a goal (tokens by a deadline, a traffic peak under an SLO, a year of demand) searched
over GPUs, counts, layouts, engines and replicas, each candidate simulated by the training or
serving simulator and priced from the catalog. One module per question."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .capacity import max_rate_per_replica
    from .serving import plan_serving
    from .training import TrainingPlan, plan_training

_WHERE = {"plan_training": "training", "TrainingPlan": "training", "plan_serving": "serving",
          "max_rate_per_replica": "capacity"}


def __getattr__(name: str) -> Any:
    """Planners load on first use (PEP 562): importing the package pulls in no simulator."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainingPlan", "max_rate_per_replica", "plan_serving", "plan_training"]
