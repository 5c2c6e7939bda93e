"""Batching engines, keyed by ``replica.batching``: each module defines its scenario keys (a
config model) and the engine they select, and registers both in :data:`ENGINES`.

Built in: ``none``, ``static`` and ``dynamic`` (:mod:`.batch`, request-level batching) and
``continuous`` (:mod:`.continuous`, iteration-level batching on a paged KV cache, built from
:mod:`.kv`, :mod:`.scheduler` and :mod:`.fastforward`) and ``prefill_first`` (:mod:`.prefill_first`,
SGLang's order on the same engine). :mod:`.presets` holds each serving framework's defaults. A plug-in adds an engine with
``ENGINES.register(MyConfig, MyEngine)``; see :mod:`.base` for the contract.
"""

# The scenario package loads first: its serving keys import the engine modules below (each defines
# its keys), which need only the scenario's base. Entering through an engine module thus lets the
# scenario finish loading them before this package binds their names.
from ... import scenario as _scenario  # noqa: F401
from .base import ENGINES, KVPrecision, ReplicaConfig, ReplicaPlan, build_engine
from .batch import BatchEngine, DynamicBatching, NoBatching, StaticBatching
from .continuous import ContinuousBatching, ContinuousEngine
from .prefill_first import PrefillFirstBatching, PrefillFirstEngine
from .presets import EngineSettings, LengthStats

__all__ = ["ENGINES", "BatchEngine", "ContinuousBatching", "ContinuousEngine", "DynamicBatching", "EngineSettings",
           "KVPrecision", "LengthStats", "NoBatching", "PrefillFirstBatching", "PrefillFirstEngine", "ReplicaConfig",
           "ReplicaPlan", "StaticBatching", "build_engine"]
