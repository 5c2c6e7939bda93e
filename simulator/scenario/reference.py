"""The scenario's key reference, read from the models themselves: every key with its type, default
(or, for an engine key left to the framework, the preset's rule), allowed values and description
(``capsim keys``); the JSON Schema of a scenario file (``capsim schema``).

Union members are walked too: a key that only one variant has (``workload.arrival.rate_rps``) says
which tag values allow it (``when workload.arrival.process = poisson, gamma``).
"""

from __future__ import annotations

import enum
import json
import types
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .loading import _KINDS

__all__ = ["KeyRow", "key_rows", "scenario_schema"]


@dataclass
class KeyRow:
    """One scenario key as ``capsim keys`` prints it."""

    kind: str                   # training or serving
    path: str                   # services[].cluster.replicas
    type: str                   # int, float, one of ..., section
    default: str                # the default as YAML would write it, "required", or the preset's rule
    allowed: str                # Literal values or bounds ("> 0", ">= 1, <= 1"); "" when any value of the type
    description: str
    when: list[str] = field(default_factory=list)   # "replica.batching = continuous" for a variant's key
    by_variant: list[tuple[str, str]] = field(default_factory=list, repr=False)   # (tag value, default)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["by_variant"]
        return d


def _strip(ann: Any) -> Any:
    """The annotation without Annotated's metadata."""
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    return ann


def _union_args(ann: Any) -> tuple[Any, ...]:
    ann = _strip(ann)
    if get_origin(ann) in (Union, types.UnionType):
        return tuple(x for a in get_args(ann) for x in _union_args(a))
    if get_origin(ann) is Annotated or (get_origin(ann) is None and hasattr(ann, "__metadata__")):
        return _union_args(_strip(ann))
    return (ann,)


def _is_model(a: Any) -> bool:
    return isinstance(a, type) and issubclass(a, BaseModel)


def _type_text(ann: Any) -> str:
    parts = []
    for a in _union_args(ann):
        origin = get_origin(a)
        if a is type(None):
            parts.append("null")
        elif origin is Literal:
            parts.append("one of")
        elif _is_model(a):
            parts.append("section")
        elif origin in (list, tuple):
            inner = get_args(a)
            parts.append(f"list of {_type_text(inner[0])}" if inner else "list")
        elif origin is dict or a is dict:
            parts.append("mapping")
        elif isinstance(a, type) and issubclass(a, enum.Enum):
            parts.append("one of")
        elif isinstance(a, type):
            parts.append({"str": "string", "bool": "true/false"}.get(a.__name__, a.__name__))
        else:
            parts.append(str(a))
    return " | ".join(dict.fromkeys(parts))


def _yaml_value(v: Any) -> str:
    if isinstance(v, BaseModel):
        return "(section)"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | int | float):
        return str(v)
    return json.dumps(v)


def _literals(ann: Any) -> list[str]:
    """The Literal values of ``ann``, also those of a list's items (``list[Literal[...]]``)."""
    out = []
    for a in _union_args(ann):
        if get_origin(a) is Literal:
            out += [str(v) for v in get_args(a)]
        elif get_origin(a) in (list, tuple) and get_args(a):
            out += _literals(get_args(a)[0])
    return out


def _allowed(f: Any) -> str:
    values = _literals(f.annotation)
    if values:
        return ", ".join(values)
    bounds = []
    for m in f.metadata:
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{op} {v}")
    return ", ".join(bounds)


def _tag_of(members: list[type[BaseModel]]) -> str | None:
    """The field every member has as a one-value Literal (``process``, ``dist``, ``batching``)."""
    if len(members) < 2:
        return None
    common = set(members[0].model_fields).intersection(*(m.model_fields for m in members[1:]))
    for name in members[0].model_fields:
        if name in common and all(len(_literal(m, name)) == 1 for m in members):
            return name
    return None


def _literal(model: type[BaseModel], name: str) -> tuple[Any, ...]:
    ann = _strip(model.model_fields[name].annotation)
    return get_args(ann) if get_origin(ann) is Literal else ()


def _preset_rule(model: type[BaseModel], name: str) -> str | None:
    """For an engine key left None: the newest preset of the member's default engine, and its rule."""
    eng = model.model_fields.get("engine")
    if eng is None or not isinstance(eng.default, str):
        return None
    from ..serving.engines.presets import PRESETS, preset_for

    if eng.default not in PRESETS:
        return None
    preset, _ = preset_for(eng.default, None)
    rule = preset.sources.get(name)
    return f"preset {preset.engine} {preset.version}: {rule}" if rule else None


def _framework_rule(path: str) -> str | None:
    """For a training key a framework preset fills: what each preset sets it to."""
    section, _, key = path.partition(".")
    if section not in ("training", "parallelism") or "." in key:
        return None
    from ..training.frameworks import framework_rules

    return framework_rules(section, key, _yaml_value)


def _walk(kind: str, model: type[BaseModel], prefix: str, when: list[str], rows: dict[str, KeyRow]) -> None:
    for name, f in model.model_fields.items():
        path = prefix + name
        args = _union_args(f.annotation)
        listed = [get_args(a)[0] for a in args if get_origin(a) is list and get_args(a) and _is_model(get_args(a)[0])]
        members = [a for a in args if _is_model(a)] or listed
        if f.default is PydanticUndefined and f.default_factory is None:
            default = "required"
        elif f.default_factory is not None:
            value = f.default_factory()     # type: ignore[call-arg]
            default = _yaml_value(value) if not isinstance(value, BaseModel) else (
                f"{tag}: {getattr(value, tag)}" if (tag := _tag_of(members)) else "(section)")
        else:
            default = _yaml_value(f.default)
            if f.default is None and (rule := _preset_rule(model, name)):
                default = rule
        if kind == "training" and (frame := _framework_rule(path)):
            default = f"{default} ({frame})"
        _add(rows, KeyRow(kind, path, _type_text(f.annotation) if not listed else "list of sections", default,
                          _allowed(f), (f.description or "").strip(), list(when)))
        sub = path + ("[]." if listed else ".")
        tag = _tag_of(members)
        if tag is None:
            for m in members:
                _walk(kind, m, sub, when, rows)
            continue
        for m in members:
            _walk(kind, m, sub, [*when, f"{sub}{tag} = {_literal(m, tag)[0]}"], rows)


def _add(rows: dict[str, KeyRow], row: KeyRow) -> None:
    """Merge a key several variants share: one row, the variants' tag values together."""
    old = rows.get(row.path)
    variant = row.when[-1].rpartition(" = ")[2] if row.when else ""
    if old is None:
        row.by_variant = [(variant, row.default)]
        rows[row.path] = row
        return
    old.by_variant.append((variant, row.default))
    if not old.when or not row.when:
        old.when = []
        return
    head, _, value = row.when[-1].rpartition(" = ")
    last = old.when[-1]
    if last.startswith(head + " = "):
        if value not in last.split(" = ", 1)[1].split(", "):
            old.when[-1] = f"{last}, {value}"
    if len({d for _, d in old.by_variant}) > 1:
        old.default = "; ".join(f"{v}: {d}" for v, d in old.by_variant)
    if old.allowed != row.allowed and row.allowed not in old.allowed.split(" | "):
        old.allowed = " | ".join(x for x in (old.allowed, row.allowed) if x)
    if old.description != row.description and row.description and row.description not in old.description:
        old.description = f"{old.description} | {row.description}" if old.description else row.description


def key_rows(kind: str | None = None, prefix: str = "") -> list[KeyRow]:
    """Every key of the training and serving scenarios (or ``kind``'s), those starting with ``prefix``."""
    rows: list[KeyRow] = []
    for k, cls in _KINDS.items():
        if kind is not None and k != kind:
            continue
        walked: dict[str, KeyRow] = {}
        _walk(k, cls, "", [], walked)
        rows += walked.values()
    # the tag key itself (a member's one-value Literal) reads better as the union of its values
    by_path = {(r.kind, r.path): r for r in rows}
    for r in rows:
        if r.type == "one of" and r.when and r.when[-1].startswith(r.path + " = "):
            r.allowed = r.when[-1].split(" = ", 1)[1]
            r.when = r.when[:-1]
            section, _, tag = r.path.rpartition(".")
            parent = by_path.get((r.kind, section.removesuffix("[]")))
            r.default = (parent.default.split(": ", 1)[1] if parent is not None
                         and parent.default.startswith(f"{tag}: ") else "required")
            top = by_path.get((r.kind, r.path.removeprefix("services[].")))   # a service's own replica/autoscaling
            if r.default == "required" and top is not None and top is not r:
                r.default = top.default
    return [r for r in rows if r.path.startswith(prefix)]


def _anyof(node: Any) -> Any:
    """``oneOf`` → ``anyOf``: a variant whose tag may be left out matches its siblings' documents too,
    which ``oneOf`` (exactly one) would reject."""
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _anyof(v) for k, v in node.items() if k != "discriminator"}
    if isinstance(node, list):
        return [_anyof(v) for v in node]
    return node


def scenario_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of a scenario file: a training or a serving scenario by ``kind``."""
    defs: dict[str, Any] = {}
    for cls in _KINDS.values():
        s = cls.model_json_schema(ref_template="#/$defs/{model}")
        for name, d in s.pop("$defs", {}).items():
            if name in defs and defs[name] != d:
                raise RuntimeError(f"two scenario models named {name} with different schemas")
            defs[name] = d
        defs[cls.__name__] = s
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "capsim scenario",
        "description": "A capsim scenario file: kind: training or kind: serving (capsim keys lists every key).",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": list(_KINDS)}},
        "allOf": [{"if": {"properties": {"kind": {"const": k}}, "required": ["kind"]},
                   "then": {"$ref": f"#/$defs/{cls.__name__}"}} for k, cls in _KINDS.items()],
        "$defs": defs,
    }
    return _anyof(doc)
