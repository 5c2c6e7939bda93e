"""Serving simulation: requests, batching, KV cache, routing, autoscaling, latency percentiles and cost.

The public names load on first use (PEP 562): the scenario package imports ``serving.autoscalers``
for the ``autoscaling`` union, so importing this package must not pull in the simulation, which
imports the scenario back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .outcome import ServingResult
    from .simulate import simulate_serving


def __getattr__(name: str) -> Any:
    if name == "ServingResult":
        from .outcome import ServingResult as value
    elif name == "simulate_serving":
        from .simulate import simulate_serving as value  # type: ignore[assignment]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = ["ServingResult", "simulate_serving"]
