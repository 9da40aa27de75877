"""The hand-written base of the generated FHIR models (pymedplum.fhir).

Strictness comes from the types (generated in pymedplum.fhir._primitives) and the model
config; what no type can say lives here once:

- `Opt[T]`: an optional element. Absent is fine; an explicit JSON `null` is not.
- `FhirDecimalSchema`: decimals as `Decimal`, so `1.50` keeps its precision.
- `PolymorphicResource`: an element of type `Resource` (`Bundle.entry.resource`,
  `contained`, ...) is validated into the model its `resourceType` names.
- `ChoiceChecked`: at most one alternative of a choice element `value[x]`.
- Errors carry FHIR paths (`Observation.valueQuantity.comparator`).
- Lazy building: a module names the classes of other modules it needs (`_DEPENDENCIES`);
  they are imported on the first validation, not when the model is imported.

Unknown elements: a model a user builds or validates rejects an unknown element (a typo);
`Model.from_server(data)` (what the client uses for responses) keeps elements newer than
our definitions in `model_extra` and writes them back unchanged.
"""

from __future__ import annotations

import gc
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

__all__ = [
    "FHIRModel",
    "ChoiceChecked",
    "FHIRValidationError",
    "Opt",
    "FhirDecimalSchema",
    "FhirTextSchema",
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
_DECIMAL_MARK = "\x00fhir-decimal:"
_MARKED_DECIMAL = re.compile(rb'"\\u0000fhir-decimal:([-+.0-9eE]+)"')


def _on_the_wire(info: core_schema.SerializationInfo) -> bool:
    context = info.context
    return isinstance(context, Mapping) and bool(context.get("pymedplum.wire"))


def _decimal_json(value: Decimal | None, info: core_schema.SerializationInfo) -> str | None:
    if value is None:  # an absent element (its schema has no "nullable" to say so)
        return None
    text = _json.decimal_text(value)
    return _DECIMAL_MARK + text if _on_the_wire(info) else text


def _unmark_decimals(data: bytes) -> bytes:
    if b"\\u0000fhir-decimal:" not in data:
        return data
    return _MARKED_DECIMAL.sub(rb"\1", data)


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


def _server_only(value: str, info: ValidationInfo) -> str:
    if not _is_lenient(info):
        raise PydanticCustomError("fhir_format", "not server data")
    return value


class FhirTextSchema:
    """A FHIR string-like primitive checked by the specification's regular expression, or,
    in data read from a server (`from_server`), by what Medplum's validator also accepts
    (a no-break space in a string, a dateTime without a time zone)."""

    def __init__(
        self, fhir_type: str, *, pattern: str, server_pattern: str, max_length: int | None
    ) -> None:
        self.fhir_type = fhir_type
        self.pattern = pattern
        self.server_pattern = server_pattern
        self.max_length = max_length

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        def text(pattern: str) -> Any:
            return core_schema.str_schema(
                pattern=pattern, min_length=1, max_length=self.max_length, strict=True
            )

        # Left to right: the server-only branch (a Python call) runs only when the
        # specification's pattern has already failed.
        return core_schema.union_schema(
            [
                text(self.pattern),
                core_schema.with_info_after_validator_function(
                    _server_only, text(self.server_pattern)
                ),
            ],
            mode="left_to_right",
            custom_error_type="fhir_format",
            custom_error_message=f"Input is not a valid FHIR {self.fhir_type}",
        )


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
        elif kind not in _KNOWN_TYPES:
            kind = PydanticCustomError(str(kind), item["msg"].replace("{", "{{").replace("}", "}}"))
        entry: dict[str, Any] = {"type": kind, "loc": loc, "input": value}
        if "ctx" in item and not isinstance(kind, PydanticCustomError):
            entry["ctx"] = item["ctx"]
        line_errors.append(entry)
    return FHIRValidationError.from_exception_data(cls.__name__, line_errors)


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
    if sys.modules[cls.__module__].__dict__.get("_DEPENDENCIES_BOUND"):
        return
    with _BINDING:
        package = sys.modules["pymedplum.fhir"]
        pending = [sys.modules[cls.__module__]]
        seen: set[str] = set()
        while pending:
            module = pending.pop()
            namespace = module.__dict__
            if namespace.get("_DEPENDENCIES_BOUND") or module.__name__ in seen:
                continue
            seen.add(module.__name__)
            needed = set(namespace.get("_DEPENDENCIES", ()))
            base_modules = _base_modules(module)
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
        # Marked only once every module reached is bound.
        for name in seen:
            sys.modules[name].__dict__["_DEPENDENCIES_BOUND"] = True


def _base_modules(module: Any) -> list[Any]:
    """The other generated modules that define bases of the classes in `module`."""
    found: dict[str, Any] = {}
    for value in list(module.__dict__.values()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            for base in value.__mro__[1:]:
                name = base.__module__
                if name.startswith("pymedplum.fhir.") and name != module.__name__:
                    found[name] = sys.modules[name]
    return list(found.values())


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
        gc.enable()


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

    @classmethod
    def model_rebuild(cls, *args: Any, **kwargs: Any) -> bool | None:
        # Called by pydantic on the first validation of a deferred model.
        _load_dependencies(cls)
        return super().model_rebuild(*args, **kwargs)

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
