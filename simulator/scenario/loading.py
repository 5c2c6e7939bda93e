"""Loading scenarios: YAML in, ``--set`` overrides applied, validated models out, and error messages
that name the key, the bad value and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import CapsimError
from ..files import excerpt, read_yaml

if TYPE_CHECKING:
    from .deployments import MultiModelScenario
    from .serving import ServingScenario
    from .training import TrainingScenario

    Scenario: TypeAlias = TrainingScenario | ServingScenario | MultiModelScenario


class _Kinds(Mapping[str, type[BaseModel]]):
    """``kind`` → its scenario model, in this order, each module imported when its kind is first
    looked up: a serve loads none of the training keys (their pydantic models and the pipeline
    schedules they register) nor the multi-model ones."""

    _where: ClassVar[tuple[str, ...]] = ("training", "serving", "multi_model")

    def __getitem__(self, kind: str) -> type[BaseModel]:
        if kind == "training":
            from .training import TrainingScenario as model
        elif kind == "serving":
            from .serving import ServingScenario as model  # type: ignore[assignment]
        elif kind == "multi_model":
            from .deployments import MultiModelScenario as model  # type: ignore[assignment]
        else:
            raise KeyError(kind)
        return model

    def __contains__(self, kind: object) -> bool:
        return kind in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


_KINDS = _Kinds()


def __getattr__(name: str) -> Any:
    """``Scenario``, the union of the three kinds' models, built (and its modules imported) when asked for."""
    if name == "Scenario":
        return _KINDS["training"] | _KINDS["serving"] | _KINDS["multi_model"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _override_path(item: str) -> tuple[list[str | int], Any]:
    """``"services.0.cluster.replicas=4"`` → ``(["services", 0, "cluster", "replicas"], 4)``."""
    if "=" not in item:
        raise CapsimError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set parallelism.tp=4")
    key, raw = item.split("=", 1)
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".") if p]
    if not parts:
        raise CapsimError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(doc: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a scenario mapping.

    ``key=null`` removes the key (its default applies again); a number indexes a list
    (``services.0.cluster.replicas=2``)."""
    doc = copy.deepcopy(doc)
    for item in overrides or []:
        parts, value = _override_path(item)
        node: Any = doc
        for i, part in enumerate(parts[:-1]):
            where = ".".join(str(p) for p in parts[: i + 1])
            if isinstance(node, list):
                if not isinstance(part, int) or not 0 <= part < len(node):
                    raise CapsimError(f"--set {item!r}: {where} is not an item of the list "
                                      f"(it has {len(node)}: 0 to {len(node) - 1})")
                nxt = node[part]
            else:
                nxt = node.get(part)
                if nxt is None:
                    if value is None:          # removing a key under a section that is not there: nothing to do
                        break
                    nxt = node[part] = {}
            if not isinstance(nxt, dict | list):
                raise CapsimError(f"--set {item!r}: {where} is not a mapping (it is {nxt!r})")
            node = nxt
        else:
            leaf = parts[-1]
            if isinstance(node, list):
                if not isinstance(leaf, int) or not 0 <= leaf < len(node):
                    raise CapsimError(f"--set {item!r}: index {leaf} is outside the list (it has {len(node)} items)")
                if value is None:
                    del node[leaf]
                else:
                    node[leaf] = value
            elif value is None:
                node.pop(leaf, None)
            else:
                node[leaf] = value
    return doc


def drop_switched_variant_keys(doc: dict[str, Any], overrides: list[str] | None, root: type[BaseModel]) -> None:
    """After ``--set`` switched a tagged union's variant (``workload.arrival.process=trace``), drop the
    keys the old variant had that the new one does not allow (``rate_rps``), in place: the user
    asked for another variant, not for its keys to be checked against the old one's. A key that an
    override itself sets is kept (and is an error if the new variant lacks it)."""
    named = {tuple(_override_path(item)[0]) for item in overrides or []}
    for item in overrides or []:
        parts, value = _override_path(item)
        if not isinstance(value, str) or len(parts) < 2:
            continue
        node: Any = doc
        for part in parts[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if not isinstance(node, dict):
            continue
        members = _candidates(root, tuple(parts[:-1]))
        chosen = [m for m in members if _tag_field(m, value) == parts[-1]]
        if len(members) > 1 and len(chosen) == 1:
            allowed = chosen[0].model_fields
            for k in [k for k in node if k not in allowed and (*parts[:-1], k) not in named]:
                del node[k]


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (through Optional, Annotated, unions, lists)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for arg in get_args(ann) for m in _models_in(arg)]


def _candidates(root: type[BaseModel], loc: tuple) -> list[type[BaseModel]]:
    """The models that may sit at ``loc`` (several inside a union until a tag picks one)."""
    cands: list[type[BaseModel]] = [root]
    for part in loc:
        if isinstance(part, int):              # an index into a list of models
            continue
        with_field = [c for c in cands if str(part) in c.model_fields]
        if with_field:
            cands = [m for c in with_field for m in _models_in(c.model_fields[str(part)].annotation)]
        else:  # a discriminator tag such as 'poisson' picks the union member
            cands = [c for c in cands if _tag_field(c, str(part))]
        if not cands:
            return []
    return cands


def _tag_field(model: type[BaseModel], tag: str) -> str | None:
    """The field of ``model`` whose one-value Literal is ``tag`` (e.g. 'policy' for 'hpa')."""
    for name, f in model.model_fields.items():
        if get_args(f.annotation) == (tag,):
            return name
    return None


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed at ``loc`` (for 'allowed keys' hints)."""
    cands = _candidates(root, loc)
    return list(cands[0].model_fields) if len(cands) == 1 else []


def _is_tag(root: type[BaseModel], loc: tuple, i: int) -> bool:
    """Whether ``loc[i]`` is a union discriminator pydantic inserted (e.g. 'poisson'), not a key."""
    if isinstance(loc[i], int):
        return False
    cands = _candidates(root, loc[:i])
    return bool(cands) and all(str(loc[i]) not in c.model_fields for c in cands)


def _is_member(root: type[BaseModel], loc: tuple, i: int) -> bool:
    """Whether ``loc[i]`` names a union member (a check of the whole member failed, e.g.
    'autoscaling.scheduled' for a schedule missing), as opposed to an unknown key."""
    return any(_tag_field(c, str(loc[i])) for c in _candidates(root, loc[:i]))


def _unknown_key(root: type[BaseModel], loc: tuple, key: str) -> str:
    """``unknown key 'a.b'`` with what is allowed; inside a tagged union, the variant chosen and the
    variants the key belongs to."""
    allowed = _allowed_keys(root, loc[:-1])
    tag_at = next((i for i in range(len(loc) - 2, -1, -1) if _is_tag(root, loc, i)), None)
    if tag_at != len(loc) - 2 or tag_at is None:
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {key!r}{hint}"
    tag = str(loc[tag_at])
    member = _candidates(root, loc[:tag_at + 1])
    field = _tag_field(member[0], tag) if member else None
    siblings = _candidates(root, loc[:tag_at])
    owners = [str(get_args(m.model_fields[field].annotation)[0]) for m in siblings
              if field and field in m.model_fields and str(loc[-1]) in m.model_fields]
    msg = f"unknown key {key!r}; allowed keys: {', '.join(allowed)} under {field} {tag!r}"
    if owners:
        msg += f" ({loc[-1]} is a key of {field} {', '.join(owners)})"
    return msg


def _excerpt(value: Any, limit: int = 80) -> str:
    return excerpt(value, limit)   # never renders the whole value (a YAML alias bomb has billions of items)


def format_validation_error(e: ValidationError, root: type[BaseModel], where: str = "scenario") -> str:
    """One line per problem: the key, what is wrong, the value given and what is allowed."""
    lines = []
    for err in e.errors():
        loc = err["loc"]
        key = ".".join(str(x) for i, x in enumerate(loc) if not _is_tag(root, loc, i)
                       or (i == len(loc) - 1 and not _is_member(root, loc, i)))
        if err["type"] == "extra_forbidden":
            lines.append(_unknown_key(root, loc, key))
        elif err["type"] == "variant_tag_invalid":
            tag = err["msg"].split(" ", 1)[0]
            got = err["input"].get(tag) if isinstance(err["input"], dict) else err["input"]
            lines.append(f"{key}.{tag}: {_excerpt(got)} is not allowed; {err['msg']}")
        elif err["type"] == "value_error" and not loc:   # a check of the whole scenario: its message says it all
            lines.append(str(err["ctx"]["error"]))
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found", "missing"):
            lines.append(f"{key}: {err['msg']}")   # a missing key's input is its parent: not worth quoting
        else:
            lines.append(f"{key}: {err['msg']} (got {_excerpt(err.get('input'))})")
    return f"invalid {where}:\n  " + "\n  ".join(lines)


def parse_scenario(doc: dict[str, Any], overrides: list[str] | None = None, where: str = "scenario") -> Scenario:
    """Validate a scenario mapping (after applying overrides)."""
    if not isinstance(doc, dict):
        raise CapsimError(f"{where}: expected a mapping of keys, got {type(doc).__name__}")
    doc = apply_overrides(doc, overrides)
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise CapsimError(f"{where}: kind must be one of {', '.join(_KINDS)} (got {excerpt(kind)})")
    cls = _KINDS[kind]
    drop_switched_variant_keys(doc, overrides, cls)
    try:
        return cls(**doc)  # type: ignore[return-value]
    except ValidationError as e:
        raise CapsimError(format_validation_error(e, cls, where)) from None


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read and validate a scenario YAML file."""
    doc = read_yaml(path, "scenario file")
    return parse_scenario(doc or {}, overrides, where=str(Path(path)))


def scenario_yaml(s: Scenario) -> str:
    return yaml.safe_dump(s.model_dump(mode="json", exclude_none=True), sort_keys=False)
