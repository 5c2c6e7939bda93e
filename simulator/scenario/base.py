"""What every scenario section shares: strict models, the precision vocabulary (defined in
``simulator.precision``), and tagged unions.

A *variant* is one member of a tagged union that users select with a key they already write
(``replica.batching``, ``autoscaling.policy``, ``parallelism.schedule``): each member is its own
config model, so a knob that belongs to another variant is an error that names the key, the
chosen variant and what it allows, instead of being accepted and ignored.

A :class:`Variants` registry holds the members of one union and the implementation each one
selects (an engine, an autoscaler, a pipeline schedule). The mechanism's own module defines its
config and registers it; registering later (a user's plug-in, a test) rebuilds the scenario
models that hold the union, so the new variant loads from YAML like a built-in one.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

from .. import limits
from ..precision import Precision

__all__ = ["HARDWARE_DOC", "MODEL_DOC", "Precision", "Pricing", "Variants"]
MODEL_DOC = ("the model: a catalog name (capsim models), an inline shape mapping, or a path to a Hugging Face "
             "config.json")
HARDWARE_DOC = "the GPU: a profile name (capsim profiles) or the path of a calibrated profile"

_MODELS: list[type[BaseModel]] = []   # every strict scenario model, in definition order (for rebuilds)


class _Strict(BaseModel):
    """Unknown keys are errors; assignments are validated too; every number is finite and within its
    documented range (simulator/limits.py)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, defer_build=True)

    @field_validator("*", mode="after")
    @classmethod
    def _in_range(cls, v: Any, info: ValidationInfo) -> Any:
        return limits.check(cls.__name__, info.field_name or "", v)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _MODELS.append(cls)


class Pricing(_Strict):
    """Where the GPU-hours are bought and at what price (default: the price catalog)."""

    provider: str | None = Field(default=None, description="cloud provider in the price catalog (aws, gcp, azure, ...); "
                                                            "default: the cheapest listed for this GPU "
                                                            "(skipping GPU-part-only and unverified rows)")
    instance: str | None = Field(default=None, description="instance type in the price catalog; default: any with this GPU")
    market: Literal["on_demand", "spot"] = Field(default="on_demand", description="on-demand or spot capacity")
    usd_per_gpu_hour: float | None = Field(default=None, gt=0, description="overrides the catalog price")
    usd_per_gpu_hour_by_gpu: dict[str, float] | None = Field(default=None, description=(
        "$ per GPU-hour by GPU profile name ({l4: 0.70, h100-sxm: 2.5}), over the catalog for those GPUs; "
        "default: none"))
    spot_preemptions_per_hour: float = Field(default=0.0, ge=0, description="per node, when market is spot")


M = TypeVar("M", bound=BaseModel)


class Variants(Generic[M]):
    """The members of one tagged union of config models, keyed by the field ``tag``.

    ``default`` is the member chosen when the tag is not written. Each member maps to an
    implementation (``impl``): what the simulator builds from that config (an engine class, an
    autoscaler, a schedule). Register a member with :meth:`register`; a model field holds the union
    through :meth:`annotation` and is declared with :meth:`hosted_by` so a later registration
    rebuilds it.
    """

    def __init__(self, tag: str, *, default: str, what: str) -> None:
        self.tag, self.default, self.what = tag, default, what
        self.members: dict[str, type[M]] = {}
        self.impls: dict[str, Any] = {}
        self._hosts: list[tuple[type[BaseModel], str, bool]] = []

    # ---- registration ---------------------------------------------------------------------------
    def register(self, config: type[M], impl: Any = None) -> type[M]:
        """Add ``config`` (whose ``tag`` field is a one-value Literal) selecting ``impl``.

        Registering after the scenario models exist rebuilds them, so the new variant loads from
        YAML like the built-in ones (this is the public registration point for plug-ins)."""
        field = config.model_fields.get(self.tag)
        values = get_args(field.annotation) if field is not None else ()
        if len(values) != 1 or not isinstance(values[0], str):
            raise TypeError(f"{config.__name__}.{self.tag} must be a Literal of one string (the {self.what}'s name)")
        self.members[values[0]] = config
        self.impls[values[0]] = impl
        if self._hosts:
            self._rebuild()
        return config

    def unregister(self, name: str) -> None:
        """Remove the member ``name`` (e.g. a test's own variant) and rebuild the models that hold the
        union, so it no longer loads; the default member stays."""
        if name == self.default:
            raise ValueError(f"{name!r} is the default {self.what} and cannot be removed")
        del self.members[name], self.impls[name]
        if self._hosts:
            self._rebuild()

    def impl(self, name: str) -> Any:
        """What the member ``name`` selects."""
        return self.impls[name]

    def names(self) -> list[str]:
        return list(self.members)

    # ---- the union as a pydantic annotation --------------------------------------------------------
    def _pick(self, value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get(self.tag, self.default))
        return getattr(value, self.tag, None)

    def annotation(self) -> Any:
        """``Annotated[A | B | ..., Discriminator]``: the field's type (the tag may be left out)."""
        members = tuple(Annotated[cls, Tag(name)] for name, cls in self.members.items())
        union = Union[members]  # type: ignore[valid-type]  # noqa: UP007 (a union built at run time)
        names = ", ".join(self.members)
        return Annotated[union, Discriminator(self._pick, custom_error_type="variant_tag_invalid",
                                              custom_error_message=f"{self.tag} must be one of {names}")]

    def field(self, *, description: str, optional: bool = False) -> Any:
        """The field's default: the ``default`` member with its own defaults (None when ``optional``)."""
        if optional:
            return Field(default=None, description=description)
        return Field(default_factory=lambda: self.members[self.default](), description=description)

    def hosted_by(self, model: type[BaseModel], field_name: str, *, optional: bool = False) -> None:
        """Record that ``model.field_name`` holds this union, so :meth:`register` can rebuild it."""
        self._hosts.append((model, field_name, optional))

    def _rebuild(self) -> None:
        ann = self.annotation()
        for model, name, optional in self._hosts:
            old = model.model_fields[name]
            default: dict[str, Any] = ({"default_factory": old.default_factory} if old.default_factory is not None
                                       else {"default": old.default})
            model.model_fields[name] = FieldInfo.from_annotated_attribute(
                ann | None if optional else ann, Field(description=old.description, **default))
        for m in _MODELS:   # definition order: every model after the models it contains
            m.model_rebuild(force=True)
