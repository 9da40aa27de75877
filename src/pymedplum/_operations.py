"""FHIR operations without I/O: operation URLs, GET queries, bodies, terminology inputs.

The client shells (`pymedplum._async.operations` and its sync twin) build a `Call` here
and send it; every check of the caller's input happens here, before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from pymedplum import _core
from pymedplum._convert import resource_to_dict
from pymedplum._core import FHIR_JSON, BaseClient, Call, Query, _merge_headers
from pymedplum.bundle import FHIRBundle, model_resource_type
from pymedplum.exceptions import MedplumError
from pymedplum.parameters import PRIMITIVE_VALUE_KEYS, dict_to_parameters

__all__ = [
    "operation_name",
    "operation_url",
    "build_operation",
    "check_direct_result",
    "expand_parameters",
    "lookup_parameters",
    "translate_parameters",
    "valueset_validate_parameters",
    "codesystem_validate_parameters",
    "merge_pages",
]

M = TypeVar("M", bound=BaseModel)

# Operation codes are FHIR tokens (`everything`, `validate-code`, `set-accounts`).
_OPERATION = re.compile(r"[A-Za-z][A-Za-z0-9_\-.]{0,63}\Z")


def operation_name(operation: str) -> str:
    """The operation code without its `$`, checked (it becomes a URL path segment)."""
    if not isinstance(operation, str):
        raise TypeError(f"operation must be a str, got {type(operation).__name__}")
    name = operation.removeprefix("$")
    if not _OPERATION.match(name):
        shown = name if len(name) <= 70 else name[:67] + "..."
        raise ValueError(f"operation: {shown!r} is not a FHIR operation name")
    return name


def operation_url(
    fhir_base_url: str, resource_type: str | None, resource_id: str | None, operation: str
) -> str:
    """`[base]/$op`, `[base]/Type/$op` or `[base]/Type/id/$op`."""
    name = operation_name(operation)
    if resource_type is None:
        if resource_id is not None:
            raise ValueError("resource_id needs a resource_type (instance-level operation)")
        return f"{fhir_base_url}${name}"
    url = fhir_base_url + _core._check_type(resource_type)
    if resource_id is not None:
        url += "/" + quote(_core._check_id(resource_id, "resource_id"), safe="")
    return f"{url}/${name}"


def _is_parameters(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("resourceType") == "Parameters"


def _query_of_parameters(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """A GET query from a Parameters resource; only primitive values fit in a URL."""
    pairs: list[tuple[str, Any]] = []
    for entry in params.get("parameter") or ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ValueError("Parameters.parameter: every entry needs a name")
        name = entry["name"]
        keys = [k for k in entry if k.startswith("value")]
        if "resource" in entry or "part" in entry or len(keys) != 1:
            raise ValueError(
                f"Parameters.parameter {name!r} is not a single primitive value: "
                "send it with method='POST'"
            )
        if keys[0] not in PRIMITIVE_VALUE_KEYS:
            raise ValueError(
                f"Parameters.parameter {name!r} ({keys[0]}) cannot be sent in a GET query: "
                "send it with method='POST'"
            )
        pairs.append((name, entry[keys[0]]))
    return pairs


def _get_query(params: Any) -> list[tuple[str, Any]]:
    if params is None:
        return []
    if isinstance(params, BaseModel):
        params = resource_to_dict(params)
    if _is_parameters(params):
        return _query_of_parameters(params)
    if isinstance(params, Mapping):
        return _core.query_pairs(params)
    if isinstance(params, Sequence) and not isinstance(params, str | bytes):
        return _core.query_pairs(params)
    raise TypeError(
        f"params for a GET operation must be a mapping, (name, value) pairs or a "
        f"Parameters resource, got {type(params).__name__}"
    )


def _post_body(params: Any, wrap_params: bool) -> Any:
    if params is None:
        return None
    if isinstance(params, BaseModel):
        return resource_to_dict(params)
    if isinstance(params, Mapping):
        body = dict(params)
        if wrap_params and body.get("resourceType") is None:
            return dict_to_parameters(body)
        return body
    if wrap_params:
        raise TypeError(f"wrap_params needs a mapping, got {type(params).__name__}")
    return params  # any other JSON value (a list, a string) is sent as it is


def build_operation(
    base: BaseClient,
    resource_type: str | None,
    operation: str,
    resource_id: str | None,
    params: Any,
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    wrap_params: bool = False,
    read_only: bool = False,
) -> Call:
    """The call of an operation; `read_only` marks a POST that changes nothing as replayable."""
    url = operation_url(base.fhir_base_url, resource_type, resource_id, operation)
    verb = method.upper() if isinstance(method, str) else method
    if verb == "GET":
        encoded = _core.encode_query(_get_query(params))
        return Call("GET", url + "?" + encoded if encoded else url, _merge_headers(headers))
    if verb != "POST":
        raise ValueError(f"method must be 'GET' or 'POST', got {method!r}")
    body = _post_body(params, wrap_params)
    if body is None:
        merged = _merge_headers(headers)
        return Call("POST", url, merged, None, None, read_only)
    merged = _merge_headers(headers, Content_Type=FHIR_JSON)
    return base._call("POST", url, merged, body, replay_safe=True if read_only else None)


def check_direct_result(data: Any, as_fhir: type[M] | None) -> Any:
    """The response, or `as_fhir` of it when it is that resource itself (not wrapped)."""
    if as_fhir is None:
        return data
    wanted = model_resource_type(as_fhir)
    found = data.get("resourceType") if isinstance(data, Mapping) else None
    if found != wanted:
        shown = found if isinstance(found, str) else type(data).__name__
        raise MedplumError(
            f"the operation answered a {shown}, not a {wanted}: as_fhir reads a directly "
            "returned resource only; read the dict (see parameters_to_dict) instead"
        )
    return _core.as_result(data, as_fhir)


# ---------------------------------------------------------------- terminology inputs


def _entry(name: str, key: str, value: Any) -> dict[str, Any]:
    return {"name": name, key: value}


def _params(*entries: tuple[str, str, Any]) -> dict[str, Any]:
    """A Parameters resource from (name, value[x] key, value), None values left out."""
    out: list[dict[str, Any]] = []
    for name, key, value in entries:
        if value is None:
            continue
        if isinstance(value, BaseModel):
            value = resource_to_dict(value)
        out.append(_entry(name, key, value))
    return {"resourceType": "Parameters", "parameter": out}


def _one_of(what: str, **choices: Any) -> None:
    given = [name for name, value in choices.items() if value is not None]
    if len(given) > 1:
        raise ValueError(f"{what}: give only one of {', '.join(choices)} (got {', '.join(given)})")


def _need_target(kind: str, url: str | None, resource_id: str | None) -> None:
    _one_of(kind, **{f"{kind.lower()}_url": url, f"{kind.lower()}_id": resource_id})


def expand_parameters(
    *,
    valueset_url: str | None,
    valueset_id: str | None,
    filter: str | None,
    offset: int | None,
    count: int | None,
    include_designations: bool | None,
    active_only: bool | None,
    exclude_nested: bool | None,
    exclude_not_for_ui: bool | None,
    exclude_post_coordinated: bool | None,
    display_language: str | None,
    property: Sequence[str] | None,
) -> dict[str, Any]:
    """The `ValueSet/$expand` input."""
    _need_target("ValueSet", valueset_url, valueset_id)
    if valueset_url is None and valueset_id is None:
        raise ValueError("expand_valueset needs valueset_url or valueset_id")
    for name, value in (("offset", offset), ("count", count)):
        if value is not None and (isinstance(value, bool) or value < 0):
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    params = _params(
        ("url", "valueUri", valueset_url),
        ("filter", "valueString", filter),
        ("offset", "valueInteger", offset),
        ("count", "valueInteger", count),
        ("includeDesignations", "valueBoolean", include_designations),
        ("activeOnly", "valueBoolean", active_only),
        ("excludeNested", "valueBoolean", exclude_nested),
        ("excludeNotForUI", "valueBoolean", exclude_not_for_ui),
        ("excludePostCoordinated", "valueBoolean", exclude_post_coordinated),
        ("displayLanguage", "valueCode", display_language),
    )
    params["parameter"].extend(_entry("property", "valueString", p) for p in _many(property))
    return params


def _many(values: str | Sequence[str] | None) -> list[str]:
    if values is None:
        return []
    return [values] if isinstance(values, str) else list(values)


def lookup_parameters(
    *,
    code: str | None,
    system: str | None,
    version: str | None,
    coding: Mapping[str, Any] | BaseModel | None,
    date: str | None,
    display_language: str | None,
    property: Sequence[str] | None,
) -> dict[str, Any]:
    """The `CodeSystem/$lookup` input: a code (+ system) or a Coding."""
    if coding is None and not code:
        raise ValueError("lookup_concept needs a code or a coding")
    if coding is not None and (code or system):
        raise ValueError("lookup_concept: give a coding, or code and system, not both")
    params = _params(
        ("code", "valueCode", code or None),
        ("system", "valueUri", system),
        ("version", "valueString", version),
        ("coding", "valueCoding", coding),
        ("date", "valueDateTime", date),
        ("displayLanguage", "valueCode", display_language),
    )
    params["parameter"].extend(_entry("property", "valueCode", p) for p in _many(property))
    return params


def translate_parameters(
    *,
    code: str | None,
    system: str | None,
    conceptmap_url: str | None,
    conceptmap_id: str | None,
    version: str | None,
    source: str | None,
    target: str | None,
    coding: Mapping[str, Any] | BaseModel | None,
    codeable_concept: Mapping[str, Any] | BaseModel | None,
    target_system: str | None,
    reverse: bool | None,
) -> dict[str, Any]:
    """The `ConceptMap/$translate` input: one source term (code+system, coding or concept)."""
    _need_target("ConceptMap", conceptmap_url, conceptmap_id)
    _one_of("translate_concept", code=code, coding=coding, codeable_concept=codeable_concept)
    if code is None and coding is None and codeable_concept is None:
        raise ValueError("translate_concept needs a code, a coding or a codeable_concept")
    return _params(
        ("url", "valueUri", conceptmap_url),
        ("conceptMapVersion", "valueString", version),
        ("code", "valueCode", code),
        ("system", "valueUri", system),
        ("source", "valueUri", source),
        ("target", "valueUri", target),
        ("coding", "valueCoding", coding),
        ("codeableConcept", "valueCodeableConcept", codeable_concept),
        ("targetsystem", "valueUri", target_system),
        ("reverse", "valueBoolean", reverse),
    )


def valueset_validate_parameters(
    *,
    valueset_url: str | None,
    valueset_id: str | None,
    code: str | None,
    system: str | None,
    coding: Mapping[str, Any] | BaseModel | None,
    codeable_concept: Mapping[str, Any] | BaseModel | None,
    display: str | None,
    abstract: bool | None,
) -> dict[str, Any]:
    """The `ValueSet/$validate-code` input."""
    _need_target("ValueSet", valueset_url, valueset_id)
    if valueset_url is None and valueset_id is None:
        raise ValueError("validate_valueset_code needs valueset_url or valueset_id")
    _one_of("validate_valueset_code", code=code, coding=coding, codeable_concept=codeable_concept)
    if code is None and coding is None and codeable_concept is None:
        raise ValueError("validate_valueset_code needs a code, a coding or a codeable_concept")
    return _params(
        ("url", "valueUri", valueset_url),
        ("code", "valueCode", code),
        ("system", "valueUri", system),
        ("display", "valueString", display),
        ("coding", "valueCoding", coding),
        ("codeableConcept", "valueCodeableConcept", codeable_concept),
        ("abstract", "valueBoolean", abstract),
    )


def codesystem_validate_parameters(
    *,
    codesystem_url: str | None,
    codesystem_id: str | None,
    code: str | None,
    coding: Mapping[str, Any] | BaseModel | None,
    version: str | None,
    display: str | None,
) -> dict[str, Any]:
    """The `CodeSystem/$validate-code` input."""
    _need_target("CodeSystem", codesystem_url, codesystem_id)
    if codesystem_url is None and codesystem_id is None:
        raise ValueError("validate_codesystem_code needs codesystem_url or codesystem_id")
    _one_of("validate_codesystem_code", code=code, coding=coding)
    if code is None and coding is None:
        raise ValueError("validate_codesystem_code needs a code or a coding")
    return _params(
        ("url", "valueUri", codesystem_url),
        ("version", "valueString", version),
        ("code", "valueCode", code),
        ("coding", "valueCoding", coding),
        ("display", "valueString", display),
    )


# ---------------------------------------------------------------- paged operation results


def merge_pages(pages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One Bundle holding every entry of `pages`, in order; paging links removed.

    The first page gives the other elements (`type`, `total`, `meta`, ...).
    """
    if not pages:
        raise ValueError("no pages to merge")
    merged = dict(pages[0])
    merged.pop("link", None)
    entries: list[Any] = []
    for page in pages:
        entries.extend(FHIRBundle(page).entries)
    merged["entry"] = entries
    return merged


def next_page_url(page: Any) -> str | None:
    """A page's `next` link, or None."""
    return FHIRBundle(page).next_url if isinstance(page, Mapping) else None


def everything_query(
    *,
    start: str | None,
    end: str | None,
    since: str | None,
    types: str | Sequence[str] | None,
    count: int | None,
) -> Query:
    """The `Patient/$everything` query (`start`, `end`, `_since`, `_type`, `_count`)."""
    pairs: list[tuple[str, Any]] = [
        ("start", start),
        ("end", end),
        ("_since", since),
        ("_type", ",".join(_many(types)) if types is not None else None),
        ("_count", count),
    ]
    return [(k, v) for k, v in pairs if v is not None]
