"""Autoscaling policies with the semantics of the systems users run (shared/reference/README.md).

One module per policy, each holding its config model (the keys users write under
``autoscaling:`` with their defaults and sources) and its controller:

- ``none`` (:mod:`.none`): a fixed fleet of ``cluster.replicas``.
- ``hpa`` (:mod:`.hpa`): Kubernetes HorizontalPodAutoscaler.
- ``kpa`` (:mod:`.kpa`): Knative, with stable and panic windows; scales to zero.
- ``ray`` (:mod:`.ray_serve`): Ray Serve, ongoing requests with upscale/downscale delays.
- ``queue`` (:mod:`.queue_scaler`): KEDA-style, HPA arithmetic on queued requests.
- ``scheduled`` (:mod:`.scheduled`): replicas by time of day.
- ``predictive`` (:mod:`.predictive`): provisions a cold start ahead of the forecast rate.

:data:`AUTOSCALERS` is the tagged union on ``policy`` (registered in :mod:`.registry`);
:func:`build` turns a validated config into its controller. The service calls the controller's
``step`` every ``period`` seconds (:class:`Controller`).
"""

# The scenario package holds the union and imports .registry for it; loading it first means the
# registry is complete before any scenario model is built, whichever module is imported first.
from ... import scenario as _scenario  # noqa: F401  (import order, see above)
from .base import AUTOSCALERS, AutoscalingConfig, Controller, Observation, ScalingConfig, build
from .hpa import HPA, HPAConfig
from .kpa import KPA, KPAConfig
from .none import NoneConfig
from .predictive import Predictive, PredictiveConfig
from .queue_scaler import QueueConfig, QueueScaler
from .ray_serve import RayServe, RayServeConfig
from .registry import AUTOSCALERS as _REGISTERED  # noqa: F401  (the built-ins, registered)
from .scheduled import Scheduled, ScheduledConfig

__all__ = [
    "AUTOSCALERS", "HPA", "KPA", "AutoscalingConfig", "Controller", "HPAConfig", "KPAConfig", "NoneConfig",
    "Observation", "Predictive", "PredictiveConfig", "QueueConfig", "QueueScaler", "RayServe", "RayServeConfig",
    "ScalingConfig", "Scheduled", "ScheduledConfig", "build",
]
