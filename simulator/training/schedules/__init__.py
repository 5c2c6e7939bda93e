"""Pipeline schedules, one module each, selected by ``parallelism.schedule``.

``base`` holds the :class:`Schedule` protocol, the :data:`SCHEDULES` registry and the layout keys
every schedule shares; ``gpipe``, ``one_f_one_b``, ``interleaved``, ``zero_bubble`` and ``dualpipe`` each define a config model
and a schedule and register both. A new schedule is one module that does the same (see
``tests/test_schedules.py`` for one registered from outside the library).

Import order: the scenario's ``parallelism`` field is the union of these configs, so
``scenario.training`` imports the schedule modules. Importing this package first loads the
scenario package first (the line below), which loads ``base`` and each schedule module on its
own; the modules import only ``scenario.base`` and this package's ``base``, so there is no cycle.
"""

from ... import scenario as _scenario  # noqa: F401  (first: it registers the built-in schedules)
from .base import SCHEDULES, ParallelismBase, PipelineSchedule, Schedule, Work, make_schedule, schedule_tag
from .dualpipe import DualPipe, DualPipeConfig, DualPipeV, DualPipeVConfig
from .gpipe import GPipe, GPipeConfig
from .interleaved import Interleaved, InterleavedConfig
from .one_f_one_b import OneFOneB, OneFOneBConfig
from .zero_bubble import ZeroBubbleConfig, ZeroBubbleH1

__all__ = [
    "SCHEDULES", "DualPipe", "DualPipeConfig", "DualPipeV", "DualPipeVConfig", "GPipe", "GPipeConfig", "Interleaved",
    "InterleavedConfig", "OneFOneB", "OneFOneBConfig", "ParallelismBase", "PipelineSchedule", "Schedule", "Work",
    "ZeroBubbleConfig", "ZeroBubbleH1", "make_schedule", "schedule_tag",
]
