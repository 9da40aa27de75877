"""Extension helpers (pymedplum.extensions) on dicts and our models."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

import pymedplum
from pymedplum import extensions
from pymedplum._fhirmodel import FHIRValidationError
from pymedplum.extensions import (
    SERVICE_TYPE_REFERENCE_URL,
    get_extension,
    get_extension_value,
    get_extensions,
    get_nested_value,
    read_service_type_references,
    remove_extension,
    service_type_reference_extension,
    set_extension,
    upsert_extension,
)
from pymedplum.fhir import Extension, HumanName, Patient, Schedule

FLAG = "https://example.org/flag"
OTHER = "https://example.org/other"
WINDOW: dict[str, Any] = {
    "url": "https://example.org/window",
    "extension": [
        {"url": "start", "valueDateTime": "2026-01-01T09:00:00Z"},
        {"url": "end", "valueDateTime": "2026-01-01T10:00:00Z"},
    ],
}
DATA: dict[str, Any] = {
    "resourceType": "Patient",
    "extension": [
        {"url": FLAG, "valueBoolean": True},
        {"url": OTHER, "valueString": "keep"},
        {"url": FLAG, "valueBoolean": False},
        WINDOW,
    ],
}


@pytest.fixture(params=["dict", "model"])
def element(request: pytest.FixtureRequest) -> Any:
    data = copy.deepcopy(DATA)
    return data if request.param == "dict" else Patient.model_validate(data)


def as_json(element: Any) -> dict[str, Any]:
    return element if isinstance(element, dict) else element.to_fhir_dict()


def test_documented_names_are_importable_from_the_package() -> None:
    for name in extensions.__all__:
        assert getattr(pymedplum, name) is getattr(extensions, name)


# ---- reading ------------------------------------------------------------------------------------


def test_get_extension_returns_the_first_entry_as_stored(element: Any) -> None:
    entry = get_extension(element, FLAG)
    if isinstance(element, dict):
        assert entry == {"url": FLAG, "valueBoolean": True}
    else:
        assert isinstance(entry, Extension) and entry.value_boolean is True
    assert get_extension(element, "https://example.org/none") is None


def test_get_extensions_returns_every_entry_in_order(element: Any) -> None:
    found = get_extensions(element, FLAG)
    assert [get_extension_value({"extension": [e]}, FLAG) for e in found] == [True, False]
    assert get_extensions(element, "https://example.org/none") == []


def test_get_extension_value(element: Any) -> None:
    assert get_extension_value(element, FLAG) is True
    assert get_extension_value(element, OTHER) == "keep"
    assert get_extension_value(element, WINDOW["url"]) is None  # complex: no value[x]
    assert get_extension_value(element, "https://example.org/none") is None
    assert get_extension_value({"resourceType": "Patient"}, FLAG) is None
    assert get_extension_value(None, FLAG) is None


def test_a_complex_value_comes_back_as_json_from_a_model_too() -> None:
    reference = {"url": FLAG, "valueReference": {"reference": "Practitioner/1"}}
    model = Patient.model_validate({"resourceType": "Patient", "extension": [reference]})
    assert get_extension_value(model, FLAG) == {"reference": "Practitioner/1"}
    assert get_extension_value({"extension": [reference]}, FLAG) == {"reference": "Practitioner/1"}


def test_get_nested_value_reads_a_complex_extension(element: Any) -> None:
    window = get_extension(element, WINDOW["url"])
    assert get_nested_value(window, "start") == "2026-01-01T09:00:00Z"
    assert get_nested_value(window, "end") == "2026-01-01T10:00:00Z"
    assert get_nested_value(window, "missing") is None


def test_reading_changes_nothing(element: Any) -> None:
    before = copy.deepcopy(as_json(element))
    get_extension(element, FLAG)
    get_extensions(element, FLAG)
    get_extension_value(element, FLAG)
    assert as_json(element) == before


def test_extensions_of_a_nested_element() -> None:
    name = HumanName.model_validate(
        {"family": "Lee", "extension": [{"url": FLAG, "valueString": "x"}]}
    )
    assert get_extension_value(name, FLAG) == "x"


# ---- writing in place ---------------------------------------------------------------------------


def test_set_extension_replaces_the_first_and_drops_duplicates(element: Any) -> None:
    set_extension(element, FLAG, valueBoolean=False)
    assert as_json(element)["extension"] == [
        {"url": FLAG, "valueBoolean": False},
        {"url": OTHER, "valueString": "keep"},
        WINDOW,
    ]


def test_set_extension_appends_a_new_url_in_snake_case(element: Any) -> None:
    set_extension(element, "https://example.org/seen", value_date_time="2026-02-03")
    assert as_json(element)["extension"][-1] == {
        "url": "https://example.org/seen",
        "valueDateTime": "2026-02-03",
    }


def test_set_extension_on_an_element_without_extensions() -> None:
    data: dict[str, Any] = {"resourceType": "Patient"}
    set_extension(data, FLAG, valueDecimal=Decimal("1.50"))
    assert data == {
        "resourceType": "Patient",
        "extension": [{"url": FLAG, "valueDecimal": Decimal("1.50")}],
    }
    model = Patient()
    set_extension(model, FLAG, valueBoolean=True)
    assert model.to_fhir_dict() == {
        "resourceType": "Patient",
        "extension": [{"url": FLAG, "valueBoolean": True}],
    }


def test_set_extension_stores_a_model_value_as_json_in_a_dict() -> None:
    from pymedplum.fhir import Reference

    data: dict[str, Any] = {}
    set_extension(data, FLAG, valueReference=Reference(reference="Patient/1"))
    assert data["extension"] == [{"url": FLAG, "valueReference": {"reference": "Patient/1"}}]


def test_set_extension_assigns_a_new_list_leaving_a_shallow_copy_alone() -> None:
    data = copy.deepcopy(DATA)
    shallow = dict(data)
    set_extension(data, FLAG, valueBoolean=False)
    assert shallow["extension"] == DATA["extension"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"valueString": "a", "valueBoolean": True}, "exactly one"),
        ({"valueFoo": 1}, "not a value"),
        ({"value_string_ext": {}}, "not a value"),
        ({"valueString": None}, "remove_extension"),
    ],
)
def test_set_extension_refuses_a_wrong_value_x(kwargs: dict[str, Any], message: str) -> None:
    data = copy.deepcopy(DATA)
    with pytest.raises(ValueError, match=message):
        set_extension(data, FLAG, **kwargs)
    assert data == DATA


def test_set_extension_refuses_an_empty_url() -> None:
    with pytest.raises(ValueError, match="url"):
        set_extension({}, "", valueString="x")


def test_set_extension_on_a_model_validates_the_value() -> None:
    model = Patient()
    with pytest.raises(FHIRValidationError, match="valueBoolean"):
        set_extension(model, FLAG, valueBoolean="yes")
    assert model.extension is None


def test_upsert_extension_merges_a_complete_entry(element: Any) -> None:
    new_window = {"url": WINDOW["url"], "extension": [{"url": "start", "valueString": "later"}]}
    upsert_extension(element, new_window, key_url=WINDOW["url"])
    assert as_json(element)["extension"][-1] == new_window
    upsert_extension(element, Extension(url="https://example.org/n", value_integer=3), key_url="x")
    assert as_json(element)["extension"][-1] == {"url": "https://example.org/n", "valueInteger": 3}


def test_upsert_extension_refuses_what_is_not_an_extension() -> None:
    with pytest.raises(TypeError):
        upsert_extension({}, "valueString", key_url=FLAG)
    with pytest.raises(TypeError, match="dict or a model"):
        upsert_extension(("a", "tuple"), {"url": FLAG}, key_url=FLAG)


def test_remove_extension_removes_every_entry_with_the_url(element: Any) -> None:
    assert remove_extension(element, FLAG) is True
    assert [e["url"] for e in as_json(element)["extension"]] == [OTHER, WINDOW["url"]]
    assert remove_extension(element, FLAG) is False


def test_removing_the_last_extension_removes_the_element(element: Any) -> None:
    for url in (FLAG, OTHER, WINDOW["url"]):
        remove_extension(element, url)
    assert "extension" not in as_json(element)


# ---- Medplum service-type references -----------------------------------------------------------


def test_service_type_reference_round_trip_on_a_dict_and_a_model() -> None:
    codings = [{"system": "http://snomed.info/sct", "code": "394814009"}]
    concept = service_type_reference_extension("HealthcareService/hs-1", codings)
    assert concept == {
        "coding": codings,
        "extension": [
            {
                "url": SERVICE_TYPE_REFERENCE_URL,
                "valueReference": {"reference": "HealthcareService/hs-1"},
            }
        ],
    }
    assert concept["coding"][0] is not codings[0]
    slot = {"resourceType": "Slot", "serviceType": [concept, {"text": "untagged"}]}
    assert read_service_type_references(slot) == ["HealthcareService/hs-1"]
    schedule = Schedule.model_validate(
        {
            "resourceType": "Schedule",
            "actor": [{"reference": "Practitioner/1"}],
            "serviceType": [concept],
        }
    )
    assert read_service_type_references(schedule) == ["HealthcareService/hs-1"]
    assert read_service_type_references({"resourceType": "Slot"}) == []


@pytest.mark.parametrize("reference", ["", "hs-1", "/"])
def test_service_type_reference_needs_a_reference(reference: str) -> None:
    with pytest.raises(ValueError, match="HealthcareService/123"):
        service_type_reference_extension(reference)
