"""Planning: a goal (tokens by a deadline, a traffic peak under an SLO, a year of demand) searched
over GPUs, counts, layouts, engines and replicas, each candidate simulated by the training or
serving simulator and priced from the catalog. One module per question."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .capacity import max_rate_per_replica
    from .serving import plan_serving
    from .training import TrainingPlan, plan_training

def __getattr__(name: str) -> Any:
    """Planners load on first use (PEP 562): importing the package pulls in no simulator."""
    if name in ("plan_training", "TrainingPlan"):
        from . import training

        return getattr(training, name)
    if name == "plan_serving":
        from .serving import plan_serving

        return plan_serving
    if name == "max_rate_per_replica":
        from .capacity import max_rate_per_replica

        return max_rate_per_replica
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainingPlan", "max_rate_per_replica", "plan_serving", "plan_training"]
