"""Serving simulation: requests, batching engines, KV cache, routing, latency percentiles and cost.

Names load on first use (PEP 562): the scenario package imports :mod:`.engines` (each engine
defines its own scenario keys) without pulling in the simulation and its result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import ServingResult
    from .simulate import simulate_serving

__all__ = ["ServingResult", "simulate_serving"]


def __getattr__(name: str) -> Any:
    if name == "ServingResult":
        from .result import ServingResult
        return ServingResult
    if name == "simulate_serving":
        from .simulate import simulate_serving
        return simulate_serving
    raise AttributeError(f"module 'simulator.serving' has no attribute {name!r}")
