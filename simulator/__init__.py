"""capsim's simulator: the public API.

>>> from simulator import load_scenario, simulate_training
>>> result = simulate_training(load_scenario("examples/train_gpt3_175b.yaml"))
>>> result.iteration_time_s, result.mfu

Names are imported on first use (PEP 562), so ``import simulator`` alone, or importing a
dependency-free module such as ``simulator.layers``, loads neither pydantic nor pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name -> module that defines it
_EXPORTS = {
    "CapsimError": ".errors",
    "InfeasibleError": ".errors",
    "MultiModelResult": ".serving.multi_result",
    "MultiModelScenario": ".scenario",
    "ServingResult": ".serving.outcome",
    "ServingScenario": ".scenario",
    "SweepResult": ".sweep",
    "TrainingResult": ".training.result",
    "TrainingScenario": ".scenario",
    "get_model": ".catalog",
    "get_profile": ".hardware",
    "load_scenario": ".scenario",
    "parse_scenario": ".scenario",
    "simulate_multi_model": ".serving.deployments",
    "simulate_serving": ".serving.simulate",
    "simulate_training": ".training.simulate",
    "sweep": ".sweep",
}

if TYPE_CHECKING:
    from .catalog import get_model
    from .errors import CapsimError, InfeasibleError
    from .hardware import get_profile
    from .scenario import MultiModelScenario, ServingScenario, TrainingScenario, load_scenario, parse_scenario
    from .serving.deployments import simulate_multi_model
    from .serving.multi_result import MultiModelResult
    from .serving.outcome import ServingResult
    from .serving.simulate import simulate_serving
    from .sweep import SweepResult, sweep
    from .training.result import TrainingResult
    from .training.simulate import simulate_training


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "CapsimError",
    "InfeasibleError",
    "MultiModelResult",
    "MultiModelScenario",
    "ServingResult",
    "ServingScenario",
    "SweepResult",
    "TrainingResult",
    "TrainingScenario",
    "__version__",
    "get_model",
    "get_profile",
    "load_scenario",
    "parse_scenario",
    "simulate_multi_model",
    "simulate_serving",
    "simulate_training",
    "sweep",
]
