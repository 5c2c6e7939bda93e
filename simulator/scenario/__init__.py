"""Scenario files: one YAML document describing a training job or a serving deployment.

Key names follow DESIGN.md and are the public contract. Every key is validated on load; an error
names the key, the bad value and what is allowed. ``--set key.path=value`` overrides any key.

One module per section: ``training`` (cluster, layout, recipe, reliability), ``workload``
(arrivals and lengths), ``serving`` (replica, cluster, autoscaling, faults, SLO, services),
``deployments`` (several models sharing one GPU pool, ``kind: multi_model``),
``base`` (strict models, the precision vocabulary, tagged unions), ``loading`` (YAML, overrides,
error messages). The training and multi-model keys load on first use (PEP 562): a serving run never
builds their models.
"""

from typing import TYPE_CHECKING, Any

from .base import Precision, Pricing, Variants
from .loading import apply_overrides, format_validation_error, load_scenario, parse_scenario, scenario_yaml
from .serving import SLO, Autoscaling, Faults, Replica, Service, ServingCluster, ServingScenario
from .workload import (
    Arrival,
    ClosedLoop,
    Diurnal,
    Empirical,
    Exponential,
    Fixed,
    Gamma,
    LengthDist,
    LogNormal,
    Normal,
    Offline,
    Poisson,
    RequestClass,
    Trace,
    Uniform,
    Workload,
)

if TYPE_CHECKING:
    from .deployments import Deployment, GpuPool, MultiModelScenario
    from .loading import Scenario
    from .training import Cluster, DataLoader, Parallelism, Reliability, Training, TrainingScenario

_LAZY = {"Deployment": ".deployments", "GpuPool": ".deployments", "MultiModelScenario": ".deployments",
         "Scenario": ".loading", "Cluster": ".training", "DataLoader": ".training", "Parallelism": ".training",
         "Reliability": ".training", "Training": ".training", "TrainingScenario": ".training"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module == ".training":
        from . import training as mod
    elif module == ".deployments":
        from . import deployments as mod  # type: ignore[no-redef]
    else:
        from . import loading as mod  # type: ignore[no-redef]
    value = getattr(mod, name)
    globals()[name] = value
    return value


__all__ = [
    "SLO", "Arrival", "Autoscaling", "ClosedLoop", "Cluster", "DataLoader", "Deployment", "Diurnal", "Empirical",
    "Exponential", "Faults", "Fixed", "Gamma", "GpuPool", "LengthDist", "LogNormal", "MultiModelScenario", "Normal",
    "Offline", "Parallelism", "Poisson", "Precision", "Pricing", "Reliability", "Replica", "RequestClass", "Scenario",
    "Service", "ServingCluster", "ServingScenario", "Trace", "Training", "TrainingScenario", "Uniform", "Variants",
    "Workload", "apply_overrides", "format_validation_error", "load_scenario", "parse_scenario", "scenario_yaml",
]
