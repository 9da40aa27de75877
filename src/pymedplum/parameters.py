"""FHIR `Parameters` from Python values, and values back out of a `Parameters` resource.

Operations take and return `Parameters` resources: a list of named entries, each carrying
one `value[x]`, a `resource`, or nested `part`s. These helpers map them to and from plain
Python, without losing a value or changing its text:

    >>> dict_to_parameters({"code": "8867-4", "count": 10, "active": True})
    {'resourceType': 'Parameters', 'parameter': [{'name': 'code', 'valueString': '8867-4'},
     {'name': 'count', 'valueInteger': 10}, {'name': 'active', 'valueBoolean': True}]}
    >>> parameters_to_dict(result)
    {'name': 'LOINC', 'display': 'Heart rate', ...}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from pymedplum._convert import resource_to_dict
from pymedplum._json import DecimalFloat

__all__ = [
    "dict_to_parameters",
    "parameters_to_dict",
    "get_parameter",
    "get_parameters",
    "get_parameter_resource",
    "parameter_entry",
]

# FHIR `integer` is a signed 32-bit value; a larger int is sent as an exact `decimal`.
_INT32 = range(-(2**31), 2**31)
# Primitive `value[x]` types: the ones a GET query can carry.
PRIMITIVE_VALUE_KEYS = frozenset(
    "value" + t
    for t in (
        "Base64Binary",
        "Boolean",
        "Canonical",
        "Code",
        "Date",
        "DateTime",
        "Decimal",
        "Id",
        "Instant",
        "Integer",
        "Markdown",
        "Oid",
        "PositiveInt",
        "String",
        "Time",
        "UnsignedInt",
        "Uri",
        "Url",
        "Uuid",
    )
)


def _as_mapping(value: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    return resource_to_dict(value)


def _complex_key(data: Mapping[str, Any]) -> str | None:
    """The `value[x]` key a complex datatype dict is sent as, from its elements."""
    keys = set(data)
    if "resourceType" in keys:
        return None  # a resource: sent as `resource`
    if "reference" in keys or ("identifier" in keys and keys <= {"identifier", "display", "type"}):
        return "valueReference"
    if "code" in keys and keys <= {"system", "version", "code", "display", "userSelected", "id"}:
        return "valueCoding"
    if "coding" in keys and keys <= {"coding", "text", "id"}:
        return "valueCodeableConcept"
    if "value" in keys and keys <= {"value", "unit", "system", "code", "comparator", "id"}:
        return "valueQuantity"
    if keys and keys <= {"start", "end", "id"}:
        return "valuePeriod"
    return ""  # no datatype matched: nested `part`s


# Each level of nested `part`s is two levels of JSON; the JSON writer stops at 254.
_MAX_PART_DEPTH = 100


def parameter_entry(name: str, value: Any) -> dict[str, Any]:
    """One `Parameters.parameter` entry for a Python value.

    str -> valueString, bool -> valueBoolean, int -> valueInteger (a 64-bit value ->
    valueDecimal, exactly), Decimal/float -> valueDecimal (a `DecimalFloat`: a float that
    is written with the decimal's exact digits), datetime (with a timezone, as FHIR
    requires) -> valueDateTime, date -> valueDate, time -> valueTime; a resource (a dict or
    model with `resourceType`) -> resource; a dict shaped as a Coding, Reference,
    CodeableConcept, Quantity or Period -> that `value[x]`; any other dict -> nested
    `part`s (read back by `parameters_to_dict`). NaN and infinities raise ValueError.
    """
    return _entry(name, value, 0)


def _entry(name: str, value: Any, depth: int) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise ValueError("a parameter name must be a non-empty string")
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int):
        key = "valueInteger" if value in _INT32 else "valueDecimal"
        return {"name": name, key: value}
    if isinstance(value, Decimal | float):
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            raise ValueError(f"parameter {name!r}: {value} is not a FHIR decimal")
        # A float's repr() is the shortest text that reads back as the same float.
        return {"name": name, "valueDecimal": DecimalFloat(value)}
    if isinstance(value, str):
        return {"name": name, "valueString": value}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"parameter {name!r}: a FHIR dateTime with a time needs a timezone")
        return {"name": name, "valueDateTime": value.isoformat()}
    if isinstance(value, date):
        return {"name": name, "valueDate": value.isoformat()}
    if isinstance(value, time):
        return {"name": name, "valueTime": value.isoformat()}
    if isinstance(value, Mapping | BaseModel):
        data = _as_mapping(value)
        kind = _complex_key(data)
        if kind is None:
            return {"name": name, "resource": data}
        if kind:
            return {"name": name, kind: data}
        if depth >= _MAX_PART_DEPTH:
            raise ValueError(
                f"parameter {name!r}: nested more than {_MAX_PART_DEPTH} levels of parts deep"
            )
        return {"name": name, "part": _entries(data, depth + 1)}
    raise TypeError(
        f"parameter {name!r}: cannot send a {type(value).__name__} as a FHIR value; "
        "pass a str, number, bool, date, dict or model"
    )


def _entries(params: Mapping[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            entries.extend(_entry(name, item, depth) for item in value if item is not None)
        else:
            entries.append(_entry(name, value, depth))
    return entries


def dict_to_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """A `Parameters` resource from `{name: value}`; a list repeats the name, None is left out.

    Each value is typed by `parameter_entry`. Example:

        >>> dict_to_parameters({"system": "http://loinc.org", "property": ["a", "b"]})
        {'resourceType': 'Parameters', 'parameter': [
            {'name': 'system', 'valueString': 'http://loinc.org'},
            {'name': 'property', 'valueString': 'a'}, {'name': 'property', 'valueString': 'b'}]}
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"dict_to_parameters expects a mapping, got {type(params).__name__}")
    return {"resourceType": "Parameters", "parameter": _entries(params)}


def _parameters_dict(params: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    data = resource_to_dict(params)
    kind = data.get("resourceType")
    if kind is not None and kind != "Parameters":
        raise ValueError(f"expected a Parameters resource, got {kind!r}")
    return data


def _parameter_list(data: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    raw = data.get("parameter")
    if not isinstance(raw, list):
        return ()
    return (p for p in raw if isinstance(p, Mapping) and isinstance(p.get("name"), str))


def _value_of(param: Mapping[str, Any]) -> Any:
    if "resource" in param:
        return param["resource"]
    part = param.get("part")
    if isinstance(part, list):
        return parameters_to_dict({"resourceType": "Parameters", "parameter": part})
    for key, value in param.items():
        if key.startswith("value"):
            return value
    return None


def parameters_to_dict(params: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """`{name: value}` from a `Parameters` resource (a dict or a model).

    Each entry gives its `resource`, its `part`s (as a nested dict) or its `value[x]`;
    a name that appears more than once gives a list of its values, in order.

        >>> parameters_to_dict({"resourceType": "Parameters", "parameter": [
        ...     {"name": "result", "valueBoolean": True}]})
        {'result': True}
    """
    grouped: dict[str, list[Any]] = {}
    for param in _parameter_list(_parameters_dict(params)):
        grouped.setdefault(param["name"], []).append(_value_of(param))
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


def get_parameter(params: Mapping[str, Any] | BaseModel, name: str) -> Any | None:
    """The value of the first entry named `name` (as `parameters_to_dict` reads it), or None."""
    for param in _parameter_list(_parameters_dict(params)):
        if param["name"] == name:
            return _value_of(param)
    return None


def get_parameters(params: Mapping[str, Any] | BaseModel, name: str) -> list[Any]:
    """The values of every entry named `name`, in order (`[]` when there is none)."""
    return [_value_of(p) for p in _parameter_list(_parameters_dict(params)) if p["name"] == name]


def get_parameter_resource(
    params: Mapping[str, Any] | BaseModel, name: str
) -> dict[str, Any] | None:
    """The `resource` of the first entry named `name` that carries one, or None."""
    for param in _parameter_list(_parameters_dict(params)):
        resource = param.get("resource")
        if param["name"] == name and isinstance(resource, Mapping):
            return dict(resource)
    return None
