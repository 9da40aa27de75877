"""FHIR extensions on dicts and models: read, set and remove `extension` entries by URL.

Every helper takes an element as a FHIR JSON dict or as one of our models
(`pymedplum.fhir`); both hold the same `extension` list.

Reading never changes the element. The three writers (`set_extension`, `upsert_extension`,
`remove_extension`) change the element you pass **in place**, as documented on each:
they assign a new `extension` list (the old list object is left as it was, so a copy
that shares it is not affected), and an emptied list removes the element (FHIR JSON has
no empty arrays). On a model the new entries are validated into `Extension` models, so
a wrong `value[x]` raises at once. To keep the original, copy it first
(`copy.deepcopy(d)`, `model.model_copy(deep=True)`).

Also carries Medplum's convention for tagging a Slot's or Schedule's `serviceType` with
the HealthcareService it stands for (R4's stand-in for R5's `CodeableReference`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from pydantic import BaseModel

from pymedplum._convert import resource_to_dict

__all__ = [
    "SERVICE_TYPE_REFERENCE_URL",
    "get_extension",
    "get_extensions",
    "get_extension_value",
    "set_extension",
    "upsert_extension",
    "remove_extension",
    "get_nested_value",
    "service_type_reference_extension",
    "read_service_type_references",
]

SERVICE_TYPE_REFERENCE_URL = "https://medplum.com/fhir/service-type-reference"
"""The extension URL of the HealthcareService reference Medplum puts in a `serviceType`."""


@functools.cache
def _value_names() -> dict[str, str]:
    """Every `value[x]` of Extension: its FHIR JSON name and attribute name -> JSON name."""
    from pymedplum._fhirmodel import model_fields_of
    from pymedplum.fhir.extension import Extension

    names: dict[str, str] = {}
    for attribute, info in model_fields_of(Extension).items():
        json_name = info.serialization_alias or attribute
        if json_name.startswith("value"):
            names[json_name] = json_name
            names[attribute] = json_name
    return names


def _value_attributes() -> dict[str, str]:
    """FHIR JSON name of each `value[x]` -> Extension attribute name."""
    from pymedplum._fhirmodel import model_fields_of
    from pymedplum.fhir.extension import Extension

    return {
        info.serialization_alias or attribute: attribute
        for attribute, info in model_fields_of(Extension).items()
        if (info.serialization_alias or attribute).startswith("value")
    }


def _entries(element: Any) -> list[Any]:
    """The element's `extension` list (entries as stored: dicts or Extension models)."""
    if isinstance(element, Mapping):
        found = element.get("extension")
    elif isinstance(element, BaseModel):
        found = getattr(element, "extension", None)
    elif element is None:
        return []
    else:
        raise TypeError(
            f"expected a FHIR element as a dict or a model, not {type(element).__name__}"
        )
    return list(found) if isinstance(found, list) else []


def _url(entry: Any) -> str | None:
    url = entry.get("url") if isinstance(entry, Mapping) else getattr(entry, "url", None)
    return url if isinstance(url, str) else None


def _value(entry: Any) -> Any:
    """The `value[x]` of one extension entry as FHIR JSON, or None."""
    if isinstance(entry, Mapping):
        for key, value in entry.items():
            if key.startswith("value"):
                return resource_to_dict(value) if isinstance(value, BaseModel) else value
        return None
    if isinstance(entry, BaseModel):
        for attribute in _value_attributes().values():
            value = getattr(entry, attribute, None)
            if value is not None:
                return resource_to_dict(value) if isinstance(value, BaseModel) else value
    return None


def _writable(element: Any, what: str) -> None:
    if isinstance(element, MutableMapping | BaseModel):
        if isinstance(element, BaseModel) and "extension" not in type(element).model_fields:
            raise TypeError(f"{what}: a {type(element).__name__} has no `extension` element")
        return
    raise TypeError(f"{what}: expected a dict or a model, not {type(element).__name__}")


def _as_entry(element: Any, entry: Any) -> Any:
    """An extension entry in the element's own form: a dict for a dict, a model for a model."""
    if isinstance(element, BaseModel):
        if isinstance(entry, BaseModel) and type(entry).__name__ == "Extension":
            return entry
        from pymedplum.fhir.extension import Extension

        data = resource_to_dict(entry) if isinstance(entry, BaseModel) else dict(entry)
        return Extension.model_validate(data)
    if isinstance(entry, BaseModel):
        return resource_to_dict(entry)
    return {k: resource_to_dict(v) if isinstance(v, BaseModel) else v for k, v in entry.items()}


def _store(element: Any, entries: list[Any]) -> None:
    """Assign a new `extension` list; an empty one removes the element."""
    if isinstance(element, BaseModel):
        element.extension = entries or None  # type: ignore[attr-defined]
    elif entries:
        element["extension"] = entries
    else:
        element.pop("extension", None)


# ---------------------------------------------------------------- reading


def get_extension(element: Any, url: str) -> Any | None:
    """The first extension entry with this URL, as stored (a dict, or an Extension model).

    >>> get_extension({"extension": [{"url": "https://x/flag", "valueBoolean": True}]},
    ...               "https://x/flag")
    {'url': 'https://x/flag', 'valueBoolean': True}
    """
    for entry in _entries(element):
        if _url(entry) == url:
            return entry
    return None


def get_extensions(element: Any, url: str) -> list[Any]:
    """Every extension entry with this URL, in order (possibly none)."""
    return [entry for entry in _entries(element) if _url(entry) == url]


def get_extension_value(element: Any, url: str) -> Any | None:
    """The `value[x]` of the first extension with this URL, as FHIR JSON.

    None when there is no such extension, or when it has no `value[x]` (a complex
    extension: read its parts with `get_nested_value`). A complex-typed value
    (`valueReference`, `valueCoding`, ...) comes back as a dict, from a model too.

        >>> get_extension_value({"extension": [{"url": "https://x/n", "valueInteger": 3}]},
        ...                     "https://x/n")
        3
    """
    entry = get_extension(element, url)
    return None if entry is None else _value(entry)


def get_nested_value(extension: Any, child_url: str) -> Any | None:
    """The `value[x]` of a child of a complex extension (its own `extension` entries).

    >>> window = {"url": "https://x/window",
    ...           "extension": [{"url": "start", "valueDateTime": "2026-01-01T09:00:00Z"}]}
    >>> get_nested_value(window, "start")
    '2026-01-01T09:00:00Z'
    """
    return get_extension_value(extension, child_url)


# ---------------------------------------------------------------- writing (in place)


def set_extension(element: Any, url: str, **value_x: Any) -> None:
    """Set the simple extension `url` on `element`, **in place**: replace or append.

    Takes exactly one `value[x]` keyword, camelCase or snake_case (`valueString="x"`,
    `value_date_time="2026-01-01"`); an unknown `value[x]` raises ValueError. The first
    entry with the URL is replaced where it stands and later duplicates are dropped;
    with none, the new entry is appended. Returns None: the element itself changes.

        >>> patient = {"resourceType": "Patient"}
        >>> set_extension(patient, "https://x/flag", valueBoolean=True)
        >>> patient["extension"]
        [{'url': 'https://x/flag', 'valueBoolean': True}]
    """
    if not isinstance(url, str) or not url:
        raise ValueError("set_extension: url must be a non-empty string")
    if len(value_x) != 1:
        raise ValueError(
            f"set_extension takes exactly one value[x] keyword, got {sorted(value_x) or 'none'}"
        )
    ((key, value),) = value_x.items()
    json_name = _value_names().get(key)
    if json_name is None:
        raise ValueError(f"set_extension: {key!r} is not a value[x] of Extension")
    if value is None:
        raise ValueError(f"set_extension: {key} is None (use remove_extension to remove)")
    upsert_extension(element, {"url": url, json_name: value}, key_url=url)


def upsert_extension(element: Any, extension: Any, *, key_url: str) -> None:
    """Merge a complete extension entry into `element` by URL, **in place**.

    The first entry whose URL is `key_url` is replaced by `extension` where it stands
    (later duplicates dropped); with none, `extension` is appended. `extension` is a dict
    or an Extension model; it is stored in the element's form (dict or model).
    """
    _writable(element, "upsert_extension")
    if not isinstance(extension, Mapping | BaseModel):
        raise TypeError(
            f"upsert_extension: the extension must be a dict or a model, "
            f"not {type(extension).__name__}"
        )
    new = _as_entry(element, extension)
    result: list[Any] = []
    placed = False
    for entry in _entries(element):
        if _url(entry) == key_url:
            if not placed:
                result.append(new)
                placed = True
            continue
        result.append(entry)
    if not placed:
        result.append(new)
    _store(element, result)


def remove_extension(element: Any, url: str) -> bool:
    """Remove every extension with this URL from `element`, **in place**.

    Returns whether any was removed. An emptied list removes the `extension` element.
    """
    _writable(element, "remove_extension")
    entries = _entries(element)
    kept = [entry for entry in entries if _url(entry) != url]
    if len(kept) == len(entries):
        return False
    _store(element, kept)
    return True


# ---------------------------------------------------------------- Medplum service types


def service_type_reference_extension(
    reference: str, codings: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """A `serviceType` CodeableConcept carrying Medplum's HealthcareService reference.

    `reference` is `"HealthcareService/<id>"`; `codings` are optional Coding dicts kept
    alongside it (copied, not shared).

        >>> slot = {"resourceType": "Slot",
        ...         "serviceType": [service_type_reference_extension("HealthcareService/1")]}
        >>> read_service_type_references(slot)
        ['HealthcareService/1']
    """
    if not isinstance(reference, str) or "/" not in reference.strip("/"):
        raise ValueError(
            f"service_type_reference_extension: {reference!r} is not a reference "
            "like 'HealthcareService/123'"
        )
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = [dict(coding) for coding in codings]
    concept["extension"] = [
        {"url": SERVICE_TYPE_REFERENCE_URL, "valueReference": {"reference": reference}}
    ]
    return concept


def read_service_type_references(slot_or_schedule: Any) -> list[str]:
    """The HealthcareService references tagged on a Slot's or Schedule's `serviceType`.

    Concepts without Medplum's extension are skipped. Takes a dict or a model.
    """
    if isinstance(slot_or_schedule, Mapping):
        concepts = slot_or_schedule.get("serviceType")
    else:
        concepts = getattr(slot_or_schedule, "service_type", None)
    found: list[str] = []
    for concept in concepts if isinstance(concepts, list) else []:
        value = get_extension_value(concept, SERVICE_TYPE_REFERENCE_URL)
        ref = value.get("reference") if isinstance(value, Mapping) else None
        if isinstance(ref, str) and ref:
            found.append(ref)
    return found
