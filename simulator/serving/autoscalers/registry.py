"""The built-in policies, registered in the order users read them (``policy must be one of ...``).

A new built-in policy is its module plus one line here; a plug-in calls
``AUTOSCALERS.register(ItsConfig, ItsController)`` itself, which rebuilds the scenario models so
``autoscaling: {policy: its_name}`` loads like a built-in.
"""

from __future__ import annotations

from .base import AUTOSCALERS
from .hpa import HPA, HPAConfig
from .kpa import KPA, KPAConfig
from .none import NoneConfig
from .predictive import Predictive, PredictiveConfig
from .queue_scaler import QueueConfig, QueueScaler
from .ray_serve import RayServe, RayServeConfig
from .scheduled import Scheduled, ScheduledConfig

AUTOSCALERS.register(NoneConfig, None)          # a fixed fleet: no controller
AUTOSCALERS.register(HPAConfig, HPA)
AUTOSCALERS.register(KPAConfig, KPA)
AUTOSCALERS.register(RayServeConfig, RayServe)
AUTOSCALERS.register(QueueConfig, QueueScaler)
AUTOSCALERS.register(ScheduledConfig, Scheduled)
AUTOSCALERS.register(PredictiveConfig, Predictive)

__all__ = ["AUTOSCALERS"]
