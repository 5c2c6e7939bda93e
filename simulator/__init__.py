"""capsim's simulator: the public API.

>>> from simulator import load_scenario, simulate_training
>>> result = simulate_training(load_scenario("examples/train_gpt3_175b.yaml"))
>>> result["iteration_time_s"], result["mfu"]
"""

from .catalog import get_model
from .errors import CapsimError, InfeasibleError
from .hardware import get_profile
from .scenario import ServingScenario, TrainingScenario, load_scenario, parse_scenario
from .serving import ServingResult, simulate_serving
from .sweep import SweepResult, sweep
from .training import TrainingResult, simulate_training
from .version import __version__


def calibrate(**kwargs: object) -> dict:
    """Measure this device with torch microbenchmarks and return a calibrated profile document
    (see ``calibrate.run.calibrate``; needs torch, which the simulator itself never imports)."""
    import importlib

    return importlib.import_module("calibrate.run").calibrate(**kwargs)


__all__ = [
    "CapsimError",
    "InfeasibleError",
    "ServingResult",
    "ServingScenario",
    "SweepResult",
    "TrainingResult",
    "TrainingScenario",
    "__version__",
    "calibrate",
    "get_model",
    "get_profile",
    "load_scenario",
    "parse_scenario",
    "simulate_serving",
    "simulate_training",
    "sweep",
]
