"""The hand-written base of the generated FHIR models (pymedplum.fhir).

Strictness comes from the types (generated in pymedplum.fhir._primitives) and the model
config; what no type can say lives here once:

- `Opt[T]`: an optional element. Absent is fine; an explicit JSON `null` is not.
- `FhirDecimalSchema`: decimals as `Decimal`, so `1.50` keeps its precision.
- `FhirTemporalSchema`: date, dateTime, instant and time; the one relaxation of the spec
  (a dateTime's time without a zone, refused again inside `pymedplum.fhir.strict()`), and
  Python `date`/`datetime`/`time` values written as FHIR text.
- `PolymorphicResource`: an element of type `Resource` (`Bundle.entry.resource`,
  `contained`, ...) is validated into the model its `resourceType` names.
- `ChoiceChecked`: at most one alternative of a choice element `value[x]`.
- Errors carry FHIR paths (`Observation.valueQuantity.comparator`).
- A document validated as a resource carries its `resourceType`.
- Lazy building: a module names the classes of other modules it needs (`_DEPENDENCIES`);
  they are imported on the first validation, not when the model is imported.

Unknown elements: a model a user builds or validates rejects an unknown element (a typo);
`Model.from_server(data)` (what the client uses for responses) keeps elements newer than
our definitions in `model_extra` and writes them back unchanged.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Optional, Self, TypeVar

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    model_validator,
)
from pydantic import Field as PydanticField
from pydantic_core import PydanticCustomError, core_schema

from pymedplum import _json
from pymedplum._medplum_meta import MedplumMeta
from pymedplum._strict import _STRICT

__all__ = [
    "FHIRModel",
    "ChoiceChecked",
    "FHIRValidationError",
    "Opt",
    "FhirDecimalSchema",
    "FhirTemporalSchema",
    "PolymorphicResource",
    "LENIENT",
]

T = TypeVar("T")

# Validation context of server data: unknown elements are kept, not rejected.
LENIENT: Mapping[str, bool] = {"pymedplum.lenient": True}


def _is_lenient(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, Mapping) and bool(context.get("pymedplum.lenient"))


class _NotNull:
    """Drops the `None` that `Optional[...]` adds to the schema: the attribute's default is
    None (the element is absent), but a JSON null is not a FHIR value."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        schema = handler(source)
        return schema["schema"] if schema["type"] == "nullable" else schema


Opt = Annotated[Optional[T], _NotNull()]  # noqa: UP045 (a TypeVar alias needs Optional)


def _int_to_decimal(value: int) -> Decimal:
    return Decimal(value)


def _float_to_decimal(value: float) -> Decimal:
    return Decimal(repr(value))


def _decimal_float_to_decimal(value: _json.DecimalFloat) -> Decimal:
    # A float read from JSON by the client: its text, not its binary value, is the decimal.
    return Decimal(value.text)


# Serialization context of FHIR JSON output. pydantic's JSON writer can only write a Decimal
# as a string, so on the wire each decimal is written as a marked string and the marks are
# then removed from the bytes, leaving the number exactly as it was read.
WIRE: Mapping[str, bool] = {"pymedplum.wire": True}
# The mark holds a random part: no string in the data (an unknown element may hold any text)
# can pass for one.
_DECIMAL_MARK = f"\x00fhir-decimal-{os.urandom(8).hex()}:"
_MARK_ON_THE_WIRE = b'"\\u0000' + _DECIMAL_MARK[1:].encode()


def _on_the_wire(info: core_schema.SerializationInfo) -> bool:
    context = info.context
    return context is WIRE or (isinstance(context, Mapping) and bool(context.get("pymedplum.wire")))


def _decimal_json(value: Decimal | None, info: core_schema.SerializationInfo) -> str | None:
    if value is None:  # an absent element (its schema has no "nullable" to say so)
        return None
    text = _json.decimal_text(value)
    return _DECIMAL_MARK + text if _on_the_wire(info) else text


def _unmark_decimals(data: bytes) -> bytes:
    if _MARK_ON_THE_WIRE not in data:
        return data
    head, *marked = data.split(_MARK_ON_THE_WIRE)
    # Each piece after a mark starts with the decimal's text, then the quote that closed it.
    return head + b"".join([piece.replace(b'"', b"", 1) for piece in marked])


def _extra_json(value: Any, info: core_schema.SerializationInfo) -> Any:
    """Elements unknown to our definitions are plain JSON; their decimals stay exact too."""
    if isinstance(value, Decimal):
        return _decimal_json(value, info)
    if isinstance(value, _json.DecimalFloat):
        return _DECIMAL_MARK + value.text if _on_the_wire(info) else float(value)
    if isinstance(value, dict):
        return {key: _extra_json(item, info) for key, item in value.items()}
    if isinstance(value, list):
        return [_extra_json(item, info) for item in value]
    return value


class _ExtraElement:
    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.any_schema(
            serialization=core_schema.plain_serializer_function_ser_schema(
                _extra_json, info_arg=True, when_used="json"
            )
        )


class FhirDecimalSchema:
    """A FHIR decimal: a `Decimal`, a `DecimalFloat` read from JSON (its text is the value),
    or an int or float given in Python; never a bool or a string. In JSON it is written as
    the number it was read."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.union_schema(
            [
                core_schema.no_info_after_validator_function(
                    _decimal_float_to_decimal, core_schema.is_instance_schema(_json.DecimalFloat)
                ),
                core_schema.decimal_schema(strict=True, allow_inf_nan=False),
                core_schema.no_info_after_validator_function(
                    _int_to_decimal, core_schema.int_schema(strict=True)
                ),
                core_schema.no_info_after_validator_function(
                    _float_to_decimal, core_schema.float_schema(strict=True, allow_inf_nan=False)
                ),
            ],
            mode="left_to_right",
            custom_error_type="fhir_decimal_type",
            custom_error_message="Input should be a decimal (a JSON number)",
            serialization=core_schema.plain_serializer_function_ser_schema(
                _decimal_json, info_arg=True, when_used="json"
            ),
        )


class FhirTemporalSchema:
    """A FHIR date, dateTime, instant or time.

    A string must match the specification's regular expression and is kept exactly as
    written. A Python value is written in FHIR format (`isoformat()`): a `date` for a date
    or a dateTime, a `datetime` for a dateTime or an instant, a `time` (without a zone) for
    a time. A dateTime with a time but no zone is accepted unless `pymedplum.fhir.strict()`
    is on; an instant always needs its zone.

    The common case (a valid string) is checked in Rust without a Python call: the
    strictness check runs only for zone-less dateTimes, the conversion only for Python
    values. Errors are worded by `_format_message` from the failing input.
    """

    def __init__(
        self,
        fhir_type: str,
        *,
        pattern: str,
        zoneless_pattern: str | None = None,
        zoneless_unless_strict: bool = False,
    ) -> None:
        self.fhir_type = fhir_type
        self.pattern = pattern
        self.zoneless_pattern = zoneless_pattern
        self.zoneless_unless_strict = zoneless_unless_strict
        _TEMPORAL[fhir_type] = self

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        text_branches: list[core_schema.CoreSchema] = [
            core_schema.str_schema(pattern=self.pattern, min_length=1, strict=True)
        ]
        if self.zoneless_unless_strict and self.zoneless_pattern:
            text_branches.append(
                core_schema.no_info_after_validator_function(
                    _zoneless_unless_strict,
                    core_schema.str_schema(pattern=self.zoneless_pattern, strict=True),
                )
            )
        text = (
            text_branches[0]
            if len(text_branches) == 1
            else core_schema.union_schema(list(text_branches), mode="left_to_right")
        )
        python_value = core_schema.chain_schema(
            [
                core_schema.is_instance_schema(time if self.fhir_type == "time" else date),
                core_schema.no_info_plain_validator_function(_TO_TEXT[self.fhir_type]),
                text,  # the text it gives is checked like any other
            ]
        )
        return core_schema.union_schema(
            [*text_branches, python_value],
            mode="left_to_right",
            custom_error_type="fhir_format",
            custom_error_message=f"Input is not a valid FHIR {self.fhir_type}",
            custom_error_context={"fhir_type": self.fhir_type},
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {"type": "string", "pattern": self.pattern}

    @functools.cached_property
    def zoneless(self) -> re.Pattern[str] | None:
        """The zone-less form of this type, to explain an error."""
        return re.compile(self.zoneless_pattern) if self.zoneless_pattern else None


_TEMPORAL: dict[str, FhirTemporalSchema] = {}


def _zoneless_unless_strict(value: str) -> str:
    if _STRICT.get():
        raise PydanticCustomError("fhir_format", "strict")  # worded by _format_message
    return value


def _date_text(value: date) -> str:
    if isinstance(value, datetime):  # would lose its time
        raise PydanticCustomError("fhir_format", "a datetime")
    return value.isoformat()


def _date_time_text(value: date) -> str:
    return value.isoformat()


def _instant_text(value: date) -> str:
    if not isinstance(value, datetime):
        raise PydanticCustomError("fhir_format", "a date")
    return value.isoformat()


def _time_text(value: time) -> str:
    if value.utcoffset() is not None:
        raise PydanticCustomError("fhir_format", "a time zone")
    return value.isoformat()


_TO_TEXT: dict[str, Callable[[Any], str]] = {
    "date": _date_text,
    "dateTime": _date_time_text,
    "instant": _instant_text,
    "time": _time_text,
}

_ADD_A_ZONE = (
    "add one ('Z', '+01:00'), or from Python use an aware datetime such as "
    "datetime.now(timezone.utc)"
)


def _format_message(fhir_type: str, value: Any) -> str:
    """The error of a date, dateTime, instant or time, saying how to fix the value."""
    message = f"Input is not a valid FHIR {fhir_type}"
    schema = _TEMPORAL.get(fhir_type)
    if fhir_type == "date" and isinstance(value, datetime):
        return f"{message}: a FHIR date has no time; pass value.date()"
    if fhir_type == "time" and isinstance(value, time) and value.utcoffset() is not None:
        return f"{message}: a FHIR time has no time zone"
    if fhir_type == "instant" and isinstance(value, date) and not isinstance(value, datetime):
        return f"{message}: an instant needs a date, a time and a time zone"
    if isinstance(value, datetime) and value.utcoffset() is None:
        value = value.isoformat()
    if (
        schema is None
        or schema.zoneless is None
        or not isinstance(value, str)
        or schema.zoneless.fullmatch(value) is None
    ):
        return message
    if schema.zoneless_unless_strict:
        return (
            f"{message}: it has a time but no time zone, which strict validation "
            f"(pymedplum.fhir.strict()) refuses; {_ADD_A_ZONE}"
        )
    return f"{message}: it has no time zone; {_ADD_A_ZONE}"


def _resource_class(resource_type: str) -> type[FHIRModel] | None:
    from pymedplum import fhir

    cls: type[FHIRModel] | None = fhir.resource_class(resource_type)
    return cls


def _validate_resource(value: Any, info: ValidationInfo) -> Any:
    lenient = _is_lenient(info)
    if isinstance(value, BaseModel):
        if isinstance(value, FHIRModel) and getattr(value, "resource_type", None):
            return value
        raise PydanticCustomError("resource_type", "Input should be a FHIR resource")
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "resource_type", "Input should be a FHIR resource (a JSON object)"
        )
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str):
        raise PydanticCustomError("resource_type", "A resource needs a resourceType")
    cls = _resource_class(resource_type)
    if cls is None:
        if not lenient:
            raise PydanticCustomError(
                "resource_type",
                "Unknown resourceType '{resource_type}'",
                {"resource_type": resource_type},
            )
        # A resource type newer than our definitions: keep it whole.
        from pymedplum.fhir.resource import Resource

        cls = Resource
    return cls.__pydantic_validator__.validate_python(
        value, context=info.context, extra="allow" if lenient else "forbid"
    )


class PolymorphicResource:
    """Validates an element of FHIR type `Resource` into the model named by its
    resourceType (loaded on first use), and serializes it as that model (in Rust: pydantic
    infers the serializer of the runtime class)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.with_info_plain_validator_function(
            _validate_resource, serialization=core_schema.simple_ser_schema("any")
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        # Any resource: JSON Schema cannot name the model without loading every one.
        return {
            "type": "object",
            "description": "A FHIR resource, validated as the model its resourceType names.",
            "properties": {"resourceType": {"type": "string"}},
            "required": ["resourceType"],
        }


class FHIRValidationError(pydantic_core.ValidationError):
    """A pydantic `ValidationError` whose locations are FHIR paths, such as
    `Observation.valueQuantity.comparator` or `Patient.name[0].given`."""


def _fhir_path(type_name: str, loc: tuple[str | int, ...]) -> str:
    path = type_name
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part[:1].isupper():  # element names; pydantic also puts class names in locs
            path += f".{part}"
    return path


def _short_input(value: Any) -> Any:
    # Never echo a whole resource (PHI) into an error: containers are elided.
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    return value


def _fhir_error(cls: type[BaseModel], error: pydantic_core.ValidationError) -> FHIRValidationError:
    from pymedplum.fhir._primitives import PATTERN_TYPES

    line_errors: list[Any] = []
    for item in error.errors(include_url=False):
        loc = (_fhir_path(cls.__name__, item["loc"]),)
        value = _short_input(item["input"])
        kind: str | PydanticCustomError = item["type"]
        if kind == "extra_forbidden":
            kind = PydanticCustomError("unknown_element", "Unknown FHIR element (is it misspelt?)")
        elif kind == "string_pattern_mismatch":
            fhir_type = PATTERN_TYPES.get(item.get("ctx", {}).get("pattern", ""), "value")
            kind = PydanticCustomError("fhir_format", f"Input is not a valid FHIR {fhir_type}")
        elif kind == "fhir_format" and "fhir_type" in item.get("ctx", {}):
            message = _format_message(item["ctx"]["fhir_type"], item["input"])
            kind = PydanticCustomError("fhir_format", message.replace("{", "{{").replace("}", "}}"))
        elif kind not in _KNOWN_TYPES:
            kind = PydanticCustomError(str(kind), item["msg"].replace("{", "{{").replace("}", "}}"))
        entry: dict[str, Any] = {"type": kind, "loc": loc, "input": value}
        if "ctx" in item and not isinstance(kind, PydanticCustomError):
            entry["ctx"] = item["ctx"]
        line_errors.append(entry)
    return FHIRValidationError.from_exception_data(cls.__name__, line_errors)


def _missing_resource_type(model_name: str, resource_type: str) -> FHIRValidationError:
    message = f'A FHIR resource needs its resourceType: add "resourceType": "{resource_type}"'
    return FHIRValidationError.from_exception_data(
        model_name,
        [
            {
                "type": PydanticCustomError("missing", message.replace("{", "{{")),
                "loc": (f"{model_name}.resourceType",),
                "input": "{...}",
            }
        ],
    )


# Error types pydantic can rebuild from their context.
_KNOWN_TYPES = frozenset(
    {
        "missing",
        "model_type",
        "list_type",
        "string_type",
        "bool_type",
        "int_type",
        "literal_error",
        "too_short",
        "too_long",
        "string_too_short",
        "string_too_long",
        "greater_than_equal",
        "less_than_equal",
        "int_parsing",
        "dict_type",
        "model_attributes_type",
    }
)


# First validations may race in threads: one binds a module's names while the other would
# otherwise see the module marked done and build with names still missing.
_BINDING = threading.RLock()


def _load_dependencies(cls: type[BaseModel]) -> None:
    """Make the annotations of `cls`, and of every class it reaches, resolvable.

    A module names the classes of other modules it needs in `_DEPENDENCIES`; they are
    imported here and bound in the module. pydantic evaluates inherited annotations in the
    subclass's module, so a module also receives what its bases' modules use.
    """
    home = sys.modules[cls.__module__]
    if home.__dict__.get("_DEPENDENCIES_BOUND"):
        return
    with _BINDING:
        package = sys.modules["pymedplum.fhir"]
        pending = [home]
        seen: set[str] = set()
        while pending:
            module = pending.pop()
            namespace = module.__dict__
            if namespace.get("_DEPENDENCIES_BOUND") or module.__name__ in seen:
                continue
            seen.add(module.__name__)
            needed = set(namespace.get("_DEPENDENCIES", ()))
            base_modules = _base_modules(module)
            if module is home:  # a subclass defined in a function is not in its module
                base_modules += [m for m in _class_base_modules(cls) if m not in base_modules]
            pending.extend(base_modules)  # so that typing.get_type_hints works on bases too
            for base_module in base_modules:
                for name, value in list(base_module.__dict__.items()):
                    if not name.startswith("_") and name not in namespace:
                        namespace[name] = value
                needed.update(base_module.__dict__.get("_DEPENDENCIES", ()))
            for name in sorted(needed):
                target = namespace.get(name)
                if target is None:
                    target = getattr(package, name)
                    namespace[name] = target
                pending.append(sys.modules[target.__module__])
        # Marked only once every module reached is bound; not a caller's module, which may
        # define more subclasses later.
        for name in seen:
            if name.startswith("pymedplum.fhir."):
                sys.modules[name].__dict__["_DEPENDENCIES_BOUND"] = True


# Every element may carry extensions and Extension.value[x] reaches nearly every datatype, so
# the datatypes form one cycle through Extension. Completed first, Extension builds that cycle
# once; completed any later, each datatype would build the whole cycle again inside itself.
_HUB = "Extension"


def _complete_in_order(cls: type[FHIRModel]) -> None:
    """Complete the models `cls` reaches before `cls` itself, each once.

    pydantic re-generates the schema of every incomplete model nested in the one it builds,
    and pydantic-core shares the validator of a complete one. Left to pydantic, building 171
    resources generated about 7,000 model schemas and held a copy of every datatype's
    validator in each resource (11 s, 370 MB). Here the first class of each module reached
    (the datatype or resource it is named after) is completed after its dependencies (the
    modules' `_DEPENDENCIES` and bases), so each is generated once and shared; backbone
    elements, used by their own resource only, are built inside it rather than on their own.
    """
    package = sys.modules["pymedplum.fhir"]
    hub: type[FHIRModel] = getattr(package, _HUB)
    order: list[type[FHIRModel]] = [hub]
    done = {hub.__module__}
    # Iterative post-order over modules: (module, its dependencies still to visit).
    start = sys.modules[cls.__module__]
    first = _module_dependencies(start, package) + _class_base_modules(cls)
    stack: list[tuple[Any, list[Any]]] = [(start, first)]
    done.add(start.__name__)
    while stack:
        module, pending = stack[-1]
        if pending:
            dependency = pending.pop()
            if dependency.__name__ not in done:
                done.add(dependency.__name__)
                stack.append((dependency, _module_dependencies(dependency, package)))
            continue
        stack.pop()
        if module is not start:  # cls itself comes last (its module may be the caller's)
            order.append(_named_model(module))
    order.append(cls)
    for model in order:
        if not model.__pydantic_complete__:
            _load_dependencies(model)
            # pydantic's own rebuild, resolving names in the model's module only.
            super(FHIRModel, model).model_rebuild(_parent_namespace_depth=0)


def _module_dependencies(module: Any, package: Any) -> list[Any]:
    namespace = module.__dict__
    names = namespace.get("_DEPENDENCIES", ())
    found = [sys.modules[(namespace.get(n) or getattr(package, n)).__module__] for n in names]
    return found + _base_modules(module)


def _named_model(module: Any) -> type[FHIRModel]:
    """The class a generated module is named after: the first one it defines."""
    return next(
        value
        for value in list(module.__dict__.values())
        if isinstance(value, type)
        and issubclass(value, FHIRModel)
        and value.__module__ == module.__name__
    )


def _base_modules(module: Any) -> list[Any]:
    """The other generated modules that define bases of the classes in `module`."""
    found: dict[str, Any] = {}
    for value in list(module.__dict__.values()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            for base in _class_base_modules(value):
                found[base.__name__] = base
    return list(found.values())


def _class_base_modules(cls: type) -> list[Any]:
    """The generated modules, other than its own, that define bases of `cls`."""
    names = dict.fromkeys(
        base.__module__
        for base in cls.__mro__[1:]
        if base.__module__.startswith("pymedplum.fhir.") and base.__module__ != cls.__module__
    )
    return [sys.modules[name] for name in names]


# Parsing a large document allocates tens of thousands of objects without a single
# reference cycle; letting the cyclic collector scan the whole heap several times meanwhile
# tripled the parse time of a 2.3 MB bundle. It is paused for large inputs only.
_PAUSE_COLLECTOR_FROM_BYTES = 256 * 1024


@contextmanager
def _collection_paused(size: int) -> Iterator[None]:
    if size < _PAUSE_COLLECTOR_FROM_BYTES or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        # Re-enabled as it is, the collector would next scan every object just built, all
        # still in the youngest generation: a quarter of the parse time. Freezing and
        # unfreezing moves them to the oldest one unscanned (two list splices). Skipped
        # when the application has frozen objects of its own (unfreeze would release them).
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


def model_fields_of(cls: type[BaseModel]) -> dict[str, Any]:
    """`cls.model_fields`, complete: a generated field's alias sits in its annotation's
    metadata, which pydantic reads only once the model is built (on first validation)."""
    if not cls.__pydantic_complete__:
        cls.model_rebuild()
    return cls.model_fields


class FHIRModel(MedplumMeta, BaseModel):
    """Base of every generated FHIR model."""

    model_config = ConfigDict(
        strict=True,
        # Unknown elements are rejected per validation (extra="forbid" in __init__ and
        # model_validate) and kept by from_server; "allow" here makes kept ones serialize.
        extra="allow",
        defer_build=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    # Kept unknown elements (from_server): any JSON, written back exactly.
    __pydantic_extra__: dict[str, Annotated[Any, _ExtraElement()]] = PydanticField(init=False)

    # The resourceType of a concrete resource class (its `resource_type` default), else None.
    __fhir_resource_type__: ClassVar[str | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields.get("resource_type")
        default = field.default if field is not None else None
        cls.__fhir_resource_type__ = default if isinstance(default, str) else None

    @classmethod
    def model_rebuild(cls, *args: Any, **kwargs: Any) -> bool | None:
        # Called by pydantic on the first validation of a deferred model.
        if cls.__pydantic_complete__ or kwargs.get("force"):
            return super().model_rebuild(*args, **kwargs)
        with _BINDING:
            _complete_in_order(cls)
        return True if cls.__pydantic_complete__ else super().model_rebuild(*args, **kwargs)

    def __init__(self, /, **data: Any) -> None:
        try:
            self.__pydantic_validator__.validate_python(data, self_instance=self, extra="forbid")
        except pydantic_core.ValidationError as error:
            raise _fhir_error(type(self), error) from None

    # Tell pydantic this __init__ only wraps its own: nested models are then built in Rust
    # without a Python call each.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        kwargs.setdefault("extra", "forbid")
        if (
            cls.__fhir_resource_type__ is not None
            and isinstance(obj, Mapping)
            and "resourceType" not in obj
            and "resource_type" not in obj
        ):
            # FHIR JSON names its resource type; only a model built in Python (`Patient()`)
            # gets the class's as a default.
            raise _missing_resource_type(cls.__name__, cls.__fhir_resource_type__)
        try:
            return super().model_validate(obj, **kwargs)
        except pydantic_core.ValidationError as error:
            raise _fhir_error(cls, error) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Parse FHIR JSON, keeping decimals exactly as written."""
        with _collection_paused(len(json_data)):
            return cls.model_validate(_json.loads(json_data), **kwargs)

    @classmethod
    def from_server(cls, data: Any) -> Self:
        """Validate data read from a server: like `model_validate`, except that elements
        unknown to our definitions are kept (in `model_extra`) and written back."""
        if isinstance(data, (bytes, bytearray, str)):
            with _collection_paused(len(data)):
                return cls.model_validate(_json.loads(data), extra="allow", context=LENIENT)
        return cls.model_validate(data, extra="allow", context=LENIENT)

    def __repr__(self) -> str:
        try:
            return super().__repr__()
        except RecursionError:  # a model nested too deeply to show: shown cut short
            return f"{type(self).__name__}(...)"

    def __str__(self) -> str:
        try:
            return super().__str__()
        except RecursionError:
            return f"{type(self).__name__}(...)"

    def to_fhir_dict(self) -> dict[str, Any]:
        """FHIR JSON as a dict: camelCase keys, no nulls, decimals as exact `Decimal`s."""
        result: dict[str, Any] = self.model_dump(mode="python", by_alias=True, exclude_none=True)
        return result

    def to_fhir_json(self, *, indent: bool = False) -> bytes:
        """FHIR JSON bytes, with every decimal written as it was read."""
        raw = self.__pydantic_serializer__.to_json(
            self, indent=2 if indent else None, by_alias=True, exclude_none=True, context=WIRE
        )
        return _unmark_decimals(raw)

    def model_dump_json(
        self, *, indent: int | None = None, exclude_none: bool = True, **kwargs: Any
    ) -> str:
        """FHIR JSON text. Unlike pydantic's default, decimals are JSON numbers with their
        digits kept, and nulls are left out (FHIR JSON has no nulls)."""
        kwargs.setdefault("by_alias", True)
        raw = self.__pydantic_serializer__.to_json(
            self, indent=indent, exclude_none=exclude_none, context=WIRE, **kwargs
        )
        return _unmark_decimals(raw).decode()


class ChoiceChecked(FHIRModel):
    """A model with choice elements: at most one alternative of each may be set, and one
    must be set when the element is required."""

    # For each choice element: (FHIR path, required, alternatives as attribute-name tuples).
    __fhir_choice_groups__: ClassVar[tuple[tuple[str, bool, tuple[tuple[str, ...], ...]], ...]] = ()
    # Derived once per class: every attribute of an alternative, and whether any is required.
    __fhir_choice_names__: ClassVar[frozenset[str]] = frozenset()
    __fhir_choice_required__: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        groups = cls.__fhir_choice_groups__
        cls.__fhir_choice_names__ = frozenset(
            n for _, _, alts in groups for alt in alts for n in alt
        )
        cls.__fhir_choice_required__ = any(required for _, required, _ in groups)

    @model_validator(mode="after")
    def _check_choices(self) -> Self:
        cls = type(self)
        # Fast path (most objects): at most one choice attribute set, none required.
        if len(cls.__fhir_choice_names__.intersection(self.__pydantic_fields_set__)) <= 1 and (
            not cls.__fhir_choice_required__
        ):
            return self
        fields_set = self.__pydantic_fields_set__
        for path, required, alternatives in cls.__fhir_choice_groups__:
            chosen = [alt[0] for alt in alternatives if not fields_set.isdisjoint(alt)]
            if len(chosen) > 1:
                raise PydanticCustomError(
                    "fhir_choice",
                    "{path} takes one type, but {chosen} are set",
                    {"path": path, "chosen": ", ".join(chosen)},
                )
            if required and not chosen:
                raise PydanticCustomError("fhir_choice", "{path} is required", {"path": path})
        return self
