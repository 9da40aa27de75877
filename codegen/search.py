"""SearchParameters -> one TypedDict of search parameters per resource type.

Each parameter appears under its code and with the modifiers FHIR R4 defines for its
type (`name:exact`, `code:not`, `subject:missing`, ...). Chains (`subject:Patient.name`)
cannot be listed; they, and anything else, go through a list of (name, value) pairs.
"""

from __future__ import annotations

from typing import Any

from codegen import ir

JSON = dict[str, Any]

# Modifiers by search parameter type (FHIR R4 search, "Modifiers").
MODIFIERS: dict[str, tuple[str, ...]] = {
    "string": ("exact", "contains", "missing"),
    "token": ("text", "not", "above", "below", "in", "not-in", "of-type", "missing"),
    "reference": ("missing", "identifier"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "uri": ("above", "below", "missing"),
    "composite": ("missing",),
    "special": (),
}

# Search result parameters: not SearchParameter resources, but valid on every search.
RESULT_PARAMETERS: tuple[ir.SearchParam, ...] = tuple(
    ir.SearchParam(name, kind, doc)
    for name, kind, doc in (
        ("_count", "number", "Page size."),
        ("_offset", "number", "Index of the first result (Medplum paging)."),
        ("_sort", "string", "Sort order: comma-separated parameters, `-` for descending."),
        ("_include", "special", "Include resources this one refers to (`Type:param`)."),
        ("_revinclude", "special", "Include resources that refer to this one (`Type:param`)."),
        ("_include:iterate", "special", "_include, applied to included resources too."),
        ("_revinclude:iterate", "special", "_revinclude, applied to included resources too."),
        ("_summary", "token", "true, text, data, count or false."),
        ("_elements", "string", "Comma-separated elements to return."),
        ("_total", "token", "none, estimate or accurate."),
        ("_at", "date", "Version as at this time (history)."),
        ("_filter", "special", "A _filter expression."),
        ("_fields", "string", "Medplum's alias of _elements."),
    )
)


def build_searches(
    search_parameters: list[JSON], resource_types: tuple[str, ...]
) -> tuple[ir.ResourceSearch, ...]:
    common: dict[str, ir.SearchParam] = {}
    by_type: dict[str, dict[str, ir.SearchParam]] = {rt: {} for rt in resource_types}
    for param in search_parameters:
        code = param.get("code")
        if not code:
            continue
        search_param = ir.SearchParam(code, param.get("type", "special"), _doc(param))
        for base in param.get("base", []):
            if base in ("Resource", "DomainResource"):
                common.setdefault(code, search_param)
            elif base in by_type:
                by_type[base].setdefault(code, search_param)
    for result in RESULT_PARAMETERS:
        common.setdefault(result.name, result)
    return tuple(
        ir.ResourceSearch(
            resource_type=resource_type,
            typed_dict=search_params_name(resource_type),
            params=tuple(
                sorted({**common, **by_type[resource_type]}.values(), key=lambda p: p.name)
            ),
        )
        for resource_type in resource_types
    )


def search_params_name(resource_type: str) -> str:
    """The name of a resource type's search-parameter TypedDict: `PatientSearchParams`."""
    return f"{resource_type}SearchParams"


def parameter_keys(param: ir.SearchParam) -> tuple[str, ...]:
    """The query keys a parameter may appear under: its code, then code:modifier."""
    if ":" in param.name:
        return (param.name,)
    return (param.name, *(f"{param.name}:{m}" for m in MODIFIERS.get(param.type, ())))


def _doc(param: JSON) -> str:
    text = " ".join(str(param.get("description", "")).split())
    return text[:120]
