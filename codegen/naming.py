"""Python names for FHIR names."""

from __future__ import annotations

import keyword
import re

# Attributes of pydantic's BaseModel and of our FHIRModel that a field must not shadow.
RESERVED_ATTRIBUTES = frozenset(
    {
        "construct",
        "copy",
        "dict",
        "fields",
        "from_orm",
        "json",
        "parse_file",
        "parse_obj",
        "parse_raw",
        "schema",
        "schema_json",
        "update_forward_refs",
        "validate",
        "from_server",
        "to_fhir_dict",
        "to_fhir_json",
    }
)

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(json_name: str) -> str:
    """`birthDate` -> `birth_date`, `valueBase64Binary` -> `value_base64_binary`."""
    return _CAMEL_BOUNDARY.sub("_", json_name).lower()


def attribute_name(json_name: str) -> str:
    """A snake_case attribute that is neither a keyword nor a model method (`class_`)."""
    name = snake_case(json_name)
    if keyword.iskeyword(name) or name in RESERVED_ATTRIBUTES:
        return f"{name}_"
    return name


def upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


def class_name(fhir_path: str) -> str:
    """`Claim.item.detail` -> `ClaimItemDetail` (the TypeScript fhirtypes convention)."""
    return "".join(upper_first(part) for part in fhir_path.split("."))


def module_name(type_name: str) -> str:
    return type_name.lower()
