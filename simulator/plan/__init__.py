"""Planning: a goal (tokens by a deadline, a traffic peak under an SLO, a year of demand) searched
over GPUs, counts, layouts, engines and replicas, each candidate simulated by the training or
serving simulator and priced from the catalog. One module per question."""

from typing import Any

__all__ = ["max_rate_per_replica", "plan_serving"]


def __getattr__(name: str) -> Any:     # PEP 562: the planners load on first use
    if name == "plan_serving":
        from .serving import plan_serving

        return plan_serving
    if name == "max_rate_per_replica":
        from .capacity import max_rate_per_replica

        return max_rate_per_replica
    raise AttributeError(name)
