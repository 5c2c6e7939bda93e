"""Every scenario key is documented: each field of every model reachable from a scenario (union
members included) carries a description, which ``capsim keys``-style help and error messages use."""

from typing import get_args

from pydantic import BaseModel

from simulator.scenario import ServingScenario, TrainingScenario


def _models(ann: object) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in get_args(ann) for m in _models(a)]


def _reachable(root: type[BaseModel]) -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    pending = [root]
    while pending:
        m = pending.pop()
        if m in seen:
            continue
        seen.add(m)
        for f in m.model_fields.values():
            pending += _models(f.annotation)
    return seen


def test_every_scenario_key_has_a_description():
    missing = sorted(f"{m.__name__}.{name}" for root in (TrainingScenario, ServingScenario)
                     for m in _reachable(root) if m.__module__.startswith("simulator.")   # not tests' plug-ins
                     for name, f in m.model_fields.items()
                     if not (f.description or "").strip())
    assert not missing, f"{len(missing)} keys without a description: {', '.join(missing)}"


def test_the_walk_reaches_union_members():
    names = {m.__name__ for m in _reachable(ServingScenario)}
    assert {"Poisson", "ClosedLoop", "LogNormal", "Empirical", "Service"} <= names
