"""Training planner: one step as a pipeline simulation, memory, and the whole run's time and cost."""

from .result import TrainingResult
from .simulate import simulate_training

__all__ = ["TrainingResult", "simulate_training"]
