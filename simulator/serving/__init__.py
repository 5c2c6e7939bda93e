"""Serving simulation: requests, batching, KV cache, routing, latency percentiles and cost."""

from .outcome import ServingResult
from .simulate import simulate_serving

__all__ = ["ServingResult", "simulate_serving"]
