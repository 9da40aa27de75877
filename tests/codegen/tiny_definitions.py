"""Tiny hand-made StructureDefinitions and terminology for codegen tests."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
_SYSTEM_STRING = "http://hl7.org/fhirpath/System.String"
_FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_REGEX = "http://hl7.org/fhir/StructureDefinition/regex"


def _element(
    path: str,
    types: list[str] | None,
    min_: int = 0,
    max_: str = "1",
    base: str | None = None,
    **extra: Any,
) -> JSON:
    element: JSON = {
        "path": path,
        "min": min_,
        "max": max_,
        "base": {"path": base or path},
        **extra,
    }
    if types is not None:
        element["type"] = [{"code": code} for code in types]
    return element


def _system(path: str, fhir_type: str, base: str | None = None) -> JSON:
    element = _element(path, None, base=base)
    element["type"] = [
        {"code": _SYSTEM_STRING, "extension": [{"url": _FHIR_TYPE, "valueUrl": fhir_type}]}
    ]
    return element


def _primitive(name: str, regex: str | None) -> JSON:
    value: JSON = {"path": f"{name}.value", "type": [{"code": _SYSTEM_STRING, "extension": []}]}
    if regex:
        value["type"][0]["extension"].append({"url": _REGEX, "valueString": regex})
    return {
        "resourceType": "StructureDefinition",
        "name": name,
        "kind": "primitive-type",
        "description": f"The {name} type",
        "snapshot": {"element": [{"path": name}, value]},
    }


def _complex(
    name: str, kind: str, base: str | None, elements: list[JSON], abstract: bool = False
) -> JSON:
    sd: JSON = {
        "resourceType": "StructureDefinition",
        "name": name,
        "kind": kind,
        "abstract": abstract,
        "derivation": "specialization",
        "description": f"The {name} type.",
        "snapshot": {"element": [{"path": name, "short": name}, *elements]},
    }
    if base:
        sd["baseDefinition"] = f"http://hl7.org/fhir/StructureDefinition/{base}"
    return sd


def structure_definitions() -> dict[str, tuple[str, JSON]]:
    sds = [
        _primitive("string", "[ \\r\\n\\t\\S]+"),
        _primitive("code", "[^\\s]+(\\s[^\\s]+)*"),
        _primitive("date", "([0-9]{4})(-(0[1-9]|1[0-2]))?"),
        _primitive("decimal", None),
        _primitive("boolean", "true|false"),
        _primitive("uri", "\\S*"),
        _primitive("id", "[A-Za-z0-9\\-\\.]{1,64}"),
        _complex(
            "Element",
            "complex-type",
            "Base",
            [
                _system("Element.id", "string"),
                _element("Element.extension", ["Extension"], max_="*"),
            ],
            abstract=True,
        ),
        _complex(
            "BackboneElement",
            "complex-type",
            "Element",
            [
                _system("BackboneElement.id", "string", base="Element.id"),
                _element(
                    "BackboneElement.extension", ["Extension"], max_="*", base="Element.extension"
                ),
                _element("BackboneElement.modifierExtension", ["Extension"], max_="*"),
            ],
            abstract=True,
        ),
        _complex(
            "Extension",
            "complex-type",
            "Element",
            [
                _system("Extension.id", "string", base="Element.id"),
                _element("Extension.extension", ["Extension"], max_="*", base="Element.extension"),
                _system("Extension.url", "uri"),
                _element("Extension.value[x]", ["string", "boolean"]),
            ],
        ),
        _complex(
            "Quantity",
            "complex-type",
            "Element",
            [
                _system("Quantity.id", "string", base="Element.id"),
                _element("Quantity.value", ["decimal"]),
            ],
        ),
        _complex(
            "Resource",
            "resource",
            "Base",
            [
                _system("Resource.id", "string"),
            ],
            abstract=True,
        ),
        _complex(
            "Widget",
            "resource",
            "Resource",
            [
                _system("Widget.id", "string", base="Resource.id"),
                _element(
                    "Widget.status",
                    ["code"],
                    min_=1,
                    binding={
                        "strength": "required",
                        "valueSet": "http://example.org/ValueSet/widget-status|1.0",
                    },
                ),
                _element("Widget.class", ["string"]),
                _element("Widget.madeOn", ["date"]),
                _element("Widget.size[x]", ["Quantity", "string"], min_=1),
                _element("Widget.part", ["BackboneElement"], max_="*"),
                _system("Widget.part.id", "string", base="Element.id"),
                _element("Widget.part.name", ["string"], min_=1),
                _element("Widget.part.tag", ["string"], max_="*"),
                _element("Widget.part.sub", None, max_="*", contentReference="#Widget.part"),
                _element("Widget.contained", ["Resource"], max_="*"),
            ],
        ),
    ]
    return {sd["name"]: ("tiny.json", sd) for sd in sds}


def terminology() -> dict[str, JSON]:
    return {
        "ValueSet:http://example.org/ValueSet/widget-status": {
            "resourceType": "ValueSet",
            "url": "http://example.org/ValueSet/widget-status",
            "name": "WidgetStatus",
            "compose": {"include": [{"system": "http://example.org/CodeSystem/widget-status"}]},
        },
        "CodeSystem:http://example.org/CodeSystem/widget-status": {
            "resourceType": "CodeSystem",
            "url": "http://example.org/CodeSystem/widget-status",
            "content": "complete",
            "concept": [{"code": "new"}, {"code": "used", "concept": [{"code": "worn"}]}],
        },
    }
