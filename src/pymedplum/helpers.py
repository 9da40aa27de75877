"""Helpers for FHIR data as dicts or models: serialization, parsing by resourceType,
references, names, codes, accounts and tokens.

Every helper that reads a resource or an element takes a dict or a model (ours, or any
Pydantic model with FHIR aliases) and changes neither.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pymedplum import _json

if TYPE_CHECKING:
    from pymedplum._fhirmodel import FHIRModel

__all__ = [
    "to_fhir_json",
    "fhir_json_bytes",
    "parse_resource",
    "parse_reference",
    "build_reference",
    "resolve_id",
    "get_patient_display_name",
    "extract_identifier",
    "get_code_display",
    "get_code_by_system",
    "coding_parts",
    "extract_account_references",
    "get_resource_accounts",
    "resource_has_account",
    "decode_jwt_exp",
]


def to_fhir_json(model: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """A model as a FHIR JSON object: camelCase keys, no `None`s; a dict as it is.

    Decimals stay `decimal.Decimal` so that `1.50` is not turned into `1.5`; write the dict
    with `fhir_json_bytes` (or hand it to the client) to keep them exact on the wire. A
    `dict` is returned itself, not a copy (another mapping is copied into a dict).

        >>> to_fhir_json(Patient(birth_date="1990-01-01", active=True))
        {'resourceType': 'Patient', 'active': True, 'birthDate': '1990-01-01'}
    """
    from pymedplum._convert import resource_to_dict

    if type(model) is dict:
        return model
    return resource_to_dict(model)


def fhir_json_bytes(resource: BaseModel | Mapping[str, Any], *, indent: bool = False) -> bytes:
    """FHIR JSON bytes for a model or a dict, with decimals written exactly."""
    data = to_fhir_json(resource) if isinstance(resource, BaseModel) else resource
    return _json.dumps(data, indent=indent)


def parse_resource(
    data: Mapping[str, Any] | str | bytes | bytearray, *, lenient: bool = False
) -> FHIRModel:
    """Parse any resource into the model its `resourceType` names.

    `data` is a dict or JSON text/bytes (decimals keep their digits). Validation is strict:
    an unknown element is an error. With `lenient=True`, as for data read from a server,
    elements newer than our definitions are kept instead.

        >>> parse_resource(b'{"resourceType": "Patient", "gender": "female"}')
        Patient(resource_type='Patient', ..., gender='female', ...)
    """
    from pymedplum import fhir

    if isinstance(data, (str, bytes, bytearray)):
        data = _json.loads(data)
    if not isinstance(data, Mapping):
        raise TypeError(f"a FHIR resource must be a JSON object, not {type(data).__name__}")
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str):
        raise ValueError("the data has no resourceType: it is not a FHIR resource")
    model: type[FHIRModel] | None = fhir.resource_class(resource_type)
    if model is None:
        raise ValueError(f"unknown resourceType {resource_type!r} (not in {fhir.DEFINITIONS})")
    return model.from_server(dict(data)) if lenient else model.model_validate(dict(data))


# ---------------------------------------------------------------- reading dicts and models

# `\Z`, not `$`: `$` also matches before a final line break ("abc\n").
_FHIR_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}\Z")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}\Z")


@functools.cache
def _json_names(cls: type[BaseModel]) -> dict[str, str]:
    """FHIR JSON name -> attribute name, for a model class."""
    names: dict[str, str] = {}
    from pymedplum._fhirmodel import model_fields_of

    for attribute, info in model_fields_of(cls).items():
        names[info.serialization_alias or info.alias or attribute] = attribute
    return names


def _as_json(value: Any) -> Any:
    """A model (or a list of them) as FHIR JSON; anything else as it is."""
    if isinstance(value, BaseModel):
        return to_fhir_json(value)
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    return value


def _get(element: Any, name: str) -> Any:
    """Element `name` (its FHIR JSON name) of a dict or a model, as FHIR JSON; None if absent.

    A model is not dumped whole: only the element asked for is converted.
    """
    if element is None:
        return None
    if isinstance(element, Mapping):
        return element.get(name)
    if isinstance(element, BaseModel):
        attribute = _json_names(type(element)).get(name)
        if attribute is not None:
            return _as_json(getattr(element, attribute, None))
        extra = element.model_extra or {}
        return _as_json(extra.get(name))
    raise TypeError(f"expected a FHIR element as a dict or a model, not {type(element).__name__}")


def _text(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- references


def parse_reference(reference: str) -> tuple[str, str]:
    """Split a `"Type/id"` reference string into `(resource_type, id)`.

    Strict: anything else raises ValueError, naming what is wrong (an empty string, no
    `/`, a versioned, contained, absolute or otherwise malformed reference). For input
    that may be partial, use `resolve_id`, which returns None instead.

        >>> parse_reference("Practitioner/abc-123")
        ('Practitioner', 'abc-123')
    """
    if not isinstance(reference, str):
        raise TypeError(f"parse_reference expects a string, not {type(reference).__name__}")
    shown = repr(reference) if len(reference) <= 70 else repr(reference[:67] + "...")
    if not reference:
        raise ValueError("invalid FHIR reference: it is empty")
    if "/" not in reference:
        raise ValueError(f"invalid FHIR reference {shown}: expected 'Type/id'")
    resource_type, _, resource_id = reference.partition("/")
    if not _FHIR_TYPE.match(resource_type):
        raise ValueError(f"invalid FHIR reference {shown}: {resource_type!r} is not a type")
    if not _FHIR_ID.match(resource_id):
        raise ValueError(f"invalid FHIR reference {shown}: expected 'Type/id' with a FHIR id")
    return resource_type, resource_id


def build_reference(resource_type: str, resource_id: str) -> str:
    """A `"Type/id"` reference string; the inverse of `parse_reference`.

    Raises ValueError for a type or id that FHIR would not accept.

        >>> build_reference("Observation", "obs-456")
        'Observation/obs-456'
    """
    if not isinstance(resource_type, str) or not _FHIR_TYPE.match(resource_type):
        raise ValueError(f"build_reference: {resource_type!r} is not a FHIR resource type")
    if not isinstance(resource_id, str) or not _FHIR_ID.match(resource_id):
        raise ValueError(f"build_reference: {resource_id!r} is not a FHIR id")
    return f"{resource_type}/{resource_id}"


def resolve_id(reference: str | Mapping[str, Any] | BaseModel | None) -> str | None:
    """The bare id in whatever shape a reference comes; None when there is none.

    Takes `"Patient/123"` or `"123"`, a Reference (dict or model, its `reference`), or a
    resource (dict or model, its `id`). A versioned reference gives its resource's id;
    `"Patient/"`, `""`, `{}` and None give None. Lenient by design, unlike
    `parse_reference`.

        >>> resolve_id({"reference": "Patient/abc"})
        'abc'
    """
    if reference is None:
        return None
    if isinstance(reference, str):
        text = reference.split("/_history/", 1)[0].rstrip("/") if reference else ""
        if not text or reference.endswith("/"):
            return None
        return text.rsplit("/", 1)[-1] or None
    ref = _get(reference, "reference")
    if isinstance(ref, str):
        return resolve_id(ref)
    return _text(_get(reference, "id"))


# ---------------------------------------------------------------- names, identifiers, codes


def get_patient_display_name(patient: Mapping[str, Any] | BaseModel) -> str:
    """A display name from a Patient's first `name`: its `text`, else given names and family.

        >>> get_patient_display_name({"name": [{"given": ["John", "B."], "family": "Doe"}]})
        'John B. Doe'

    Returns "Unknown" when there is no usable name.
    """
    names = _items(_get(patient, "name"))
    first = names[0] if names and isinstance(names[0], Mapping) else None
    if first is None:
        return "Unknown"
    text = _text(first.get("text"))
    if text is not None:
        return text
    parts = [g for g in _items(first.get("given")) if isinstance(g, str) and g]
    family = _text(first.get("family"))
    if family is not None:
        parts.append(family)
    return " ".join(parts) if parts else "Unknown"


def extract_identifier(resource: Mapping[str, Any] | BaseModel, system: str) -> str | None:
    """The value of the resource's first `identifier` with this `system`, or None.

    >>> extract_identifier({"identifier": [{"system": "http://mrn", "value": "123"}]},
    ...                    "http://mrn")
    '123'
    """
    for identifier in _items(_get(resource, "identifier")):
        if isinstance(identifier, Mapping) and identifier.get("system") == system:
            return _text(identifier.get("value"))
    return None


def get_code_display(codeable_concept: Mapping[str, Any] | BaseModel | None) -> str | None:
    """A label for a CodeableConcept: its `text`, else the first coding's `display`.

    None when neither is set (the raw code is not used: see `get_code_by_system`).

        >>> get_code_display({"coding": [{"code": "38341003", "display": "Hypertension"}]})
        'Hypertension'
    """
    text = _text(_get(codeable_concept, "text"))
    if text is not None:
        return text
    codings = _items(_get(codeable_concept, "coding"))
    if codings and isinstance(codings[0], Mapping):
        return _text(codings[0].get("display"))
    return None


def get_code_by_system(
    codeable_concept: Mapping[str, Any] | BaseModel | None, system: str
) -> str | None:
    """The code of the concept's first coding with this `system`, or None.

    >>> concept = {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}
    >>> get_code_by_system(concept, "http://snomed.info/sct")
    '44054006'
    """
    for coding in _items(_get(codeable_concept, "coding")):
        if isinstance(coding, Mapping) and coding.get("system") == system:
            return _text(coding.get("code"))
    return None


def coding_parts(
    codeable_concept: Mapping[str, Any] | BaseModel | None,
) -> tuple[str | None, str | None, str | None, str | None]:
    """`(code, system, display, text)` of the first coding and the concept's `text`.

    Empty strings become None. The first coding is arbitrary when a concept has codings
    of several systems: prefer `get_code_by_system` then.

        >>> coding_parts({"coding": [{"code": "E11.9", "system": "http://icd"}], "text": "DM2"})
        ('E11.9', 'http://icd', None, 'DM2')
    """
    codings = _items(_get(codeable_concept, "coding"))
    first = codings[0] if codings and isinstance(codings[0], Mapping) else {}
    return (
        _text(first.get("code")),
        _text(first.get("system")),
        _text(first.get("display")),
        _text(_get(codeable_concept, "text")),
    )


# ---------------------------------------------------------------- accounts


def extract_account_references(meta: Mapping[str, Any] | BaseModel | None) -> list[str]:
    """The account references of a resource's `meta`: `account` first, then `accounts`.

    Medplum's `meta.account` (singular, deprecated) and `meta.accounts` are both read,
    duplicates dropped, entries without a `reference` skipped.

        >>> extract_account_references({"account": {"reference": "Organization/1"},
        ...                             "accounts": [{"reference": "Organization/2"}]})
        ['Organization/1', 'Organization/2']
    """
    found: list[str] = []
    for entry in [_get(meta, "account"), *_items(_get(meta, "accounts"))]:
        ref = _text(entry.get("reference")) if isinstance(entry, Mapping) else None
        if ref is not None and ref not in found:
            found.append(ref)
    return found


def get_resource_accounts(resource: Mapping[str, Any] | BaseModel) -> list[str]:
    """Every account reference assigned to a resource (see `extract_account_references`).

    >>> get_resource_accounts({"meta": {"accounts": [{"reference": "Organization/1"}]}})
    ['Organization/1']
    """
    return extract_account_references(_get(resource, "meta"))


def resource_has_account(resource: Mapping[str, Any] | BaseModel, account_ref: str) -> bool:
    """Whether the resource is assigned to `account_ref` (`meta.account` or `meta.accounts`)."""
    return account_ref in get_resource_accounts(resource)


# ---------------------------------------------------------------- tokens


def decode_jwt_exp(token: str) -> datetime | None:
    """When a JWT expires (`exp`), as an aware UTC datetime; None if unreadable or absent.

    The signature is not checked: use this to schedule a refresh, never to trust a token.
    Nothing about the token is logged or put in an exception.
    """
    if not isinstance(token, str):
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        claims = _json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float | Decimal):
            return None
        return datetime.fromtimestamp(float(exp), UTC)
    except (ValueError, OverflowError, OSError, TypeError):
        return None
