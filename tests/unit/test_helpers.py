"""The FHIR helpers of pymedplum.helpers, on dicts and on our models, never changing them."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

import pymedplum
from pymedplum import helpers
from pymedplum.fhir import CodeableConcept, Meta, Patient, Reference
from pymedplum.helpers import (
    build_reference,
    coding_parts,
    decode_jwt_exp,
    extract_account_references,
    extract_identifier,
    get_code_by_system,
    get_code_display,
    get_patient_display_name,
    get_resource_accounts,
    parse_reference,
    resolve_id,
    resource_has_account,
)

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "account": {"reference": "Organization/o1"},
        "accounts": [
            {"reference": "Organization/o1"},
            {"reference": "Organization/o2"},
            {"display": "no reference"},
            "junk",
        ],
    },
    "identifier": [
        {"system": "http://hospital.org/mrn", "value": "MRN12345"},
        {"system": "http://acme.com/patient-id", "value": "PID-987"},
    ],
    "name": [{"given": ["John", "B."], "family": "Doe"}, {"text": "Johnny"}],
}
CONCEPT: dict[str, Any] = {
    "coding": [
        {"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"},
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"},
    ],
}


def patient_model() -> Patient:
    """PATIENT as our model (its meta without the entries a model cannot hold)."""
    data = copy.deepcopy(PATIENT)
    data["meta"]["accounts"] = data["meta"]["accounts"][:2]
    return Patient.model_validate(data)


@pytest.fixture(params=["dict", "model"])
def patient(request: pytest.FixtureRequest) -> Any:
    """The same Patient as a dict and as our model."""
    return copy.deepcopy(PATIENT) if request.param == "dict" else patient_model()


def test_documented_names_are_importable_from_the_package() -> None:
    for name in (
        "parse_reference",
        "build_reference",
        "resolve_id",
        "get_patient_display_name",
        "extract_identifier",
        "get_code_display",
        "get_code_by_system",
        "coding_parts",
        "get_resource_accounts",
        "extract_account_references",
        "resource_has_account",
        "to_fhir_json",
        "decode_jwt_exp",
    ):
        assert getattr(pymedplum, name) is getattr(helpers, name)


# ---- references ---------------------------------------------------------------------------------


def test_parse_reference_splits_type_and_id() -> None:
    assert parse_reference("Practitioner/abc-123") == ("Practitioner", "abc-123")


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("", "empty"),
        ("Patient", "expected 'Type/id'"),
        ("Patient/", "FHIR id"),
        ("Patient/1/_history/2", "FHIR id"),
        ("https://x/fhir/R4/Patient/1", "not a type"),
        ("#contained", "expected 'Type/id'"),
        ("patient/1", "not a type"),
    ],
)
def test_parse_reference_is_strict(reference: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_reference(reference)


def test_parse_reference_refuses_a_dict() -> None:
    with pytest.raises(TypeError):
        parse_reference({"reference": "Patient/1"})  # type: ignore[arg-type]


def test_build_reference_is_the_inverse() -> None:
    assert build_reference("Observation", "obs-456") == "Observation/obs-456"
    assert parse_reference(build_reference("Patient", "p.1")) == ("Patient", "p.1")


@pytest.mark.parametrize(("rtype", "rid"), [("Patient", ""), ("", "1"), ("Patient", "a/b")])
def test_build_reference_refuses_what_fhir_would_not_accept(rtype: str, rid: str) -> None:
    with pytest.raises(ValueError):
        build_reference(rtype, rid)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Patient/123", "123"),
        ("123", "123"),
        ("Patient/123/_history/4", "123"),
        ({"reference": "Patient/abc"}, "abc"),
        (Reference(reference="Patient/abc"), "abc"),
        ({"resourceType": "Patient", "id": "p9"}, "p9"),
        (Patient(id="p9"), "p9"),
        (None, None),
        ("", None),
        ({}, None),
        ("Patient/", None),
        ({"reference": ""}, None),
    ],
)
def test_resolve_id_is_lenient(value: Any, expected: str | None) -> None:
    assert resolve_id(value) == expected


# ---- names and identifiers ----------------------------------------------------------------------


def test_display_name_from_given_and_family(patient: Any) -> None:
    assert get_patient_display_name(patient) == "John B. Doe"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([{"text": "Dr. Ann Lee", "family": "Lee"}], "Dr. Ann Lee"),
        ([{"family": "Lee"}], "Lee"),
        ([{"given": ["Ann"]}], "Ann"),
        ([{"use": "official"}], "Unknown"),
        ([], "Unknown"),
        (None, "Unknown"),
    ],
)
def test_display_name_cases(names: Any, expected: str) -> None:
    patient = {"resourceType": "Patient"} if names is None else {"name": names}
    assert get_patient_display_name(patient) == expected


def test_extract_identifier_by_system(patient: Any) -> None:
    assert extract_identifier(patient, "http://hospital.org/mrn") == "MRN12345"
    assert extract_identifier(patient, "http://acme.com/patient-id") == "PID-987"
    assert extract_identifier(patient, "http://other") is None
    assert extract_identifier({"resourceType": "Patient"}, "http://other") is None


# ---- codes --------------------------------------------------------------------------------------


@pytest.fixture(params=["dict", "model"])
def concept(request: pytest.FixtureRequest) -> Any:
    data = copy.deepcopy(CONCEPT)
    return data if request.param == "dict" else CodeableConcept.model_validate(data)


def test_code_display_prefers_text_then_first_display(concept: Any) -> None:
    assert get_code_display(concept) == "Diabetes"
    assert get_code_display({**CONCEPT, "text": "Type 2 Diabetes"}) == "Type 2 Diabetes"
    assert get_code_display({"coding": [{"code": "x"}]}) is None
    assert get_code_display(None) is None


def test_code_by_system(concept: Any) -> None:
    assert get_code_by_system(concept, "http://hl7.org/fhir/sid/icd-10-cm") == "E11.9"
    assert get_code_by_system(concept, "http://loinc.org") is None
    assert get_code_by_system(None, "http://loinc.org") is None


def test_coding_parts(concept: Any) -> None:
    assert coding_parts(concept) == ("44054006", "http://snomed.info/sct", "Diabetes", None)
    assert coding_parts({"text": "free text only"}) == (None, None, None, "free text only")
    assert coding_parts({"coding": [{"code": "", "system": "s"}], "text": ""}) == (
        None,
        "s",
        None,
        None,
    )
    assert coding_parts(None) == (None, None, None, None)


# ---- accounts -----------------------------------------------------------------------------------


def test_accounts_read_singular_first_and_drop_duplicates(patient: Any) -> None:
    assert get_resource_accounts(patient) == ["Organization/o1", "Organization/o2"]
    assert resource_has_account(patient, "Organization/o2")
    assert not resource_has_account(patient, "Organization/o3")


def test_account_entries_without_a_reference_are_skipped() -> None:
    assert get_resource_accounts(PATIENT) == ["Organization/o1", "Organization/o2"]
    assert get_resource_accounts({"resourceType": "Patient"}) == []


def test_extract_account_references_from_meta_dict_model_or_none() -> None:
    meta = {"accounts": [{"reference": "Organization/o2"}]}
    assert extract_account_references(meta) == ["Organization/o2"]
    assert extract_account_references(Meta.model_validate(meta)) == ["Organization/o2"]
    assert extract_account_references(None) == []


# ---- inputs are never changed -------------------------------------------------------------------


def test_readers_change_neither_dicts_nor_models() -> None:
    data = copy.deepcopy(PATIENT)
    model = patient_model()
    before_model = model.model_dump()
    for resource in (data, model):
        get_patient_display_name(resource)
        extract_identifier(resource, "http://hospital.org/mrn")
        get_resource_accounts(resource)
        resolve_id(resource)
    assert data == PATIENT
    assert model.model_dump() == before_model


# ---- tokens -------------------------------------------------------------------------------------


def jwt(claims: Any) -> str:
    def part(value: Any) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def test_decode_jwt_exp_reads_exp_as_utc() -> None:
    assert decode_jwt_exp(jwt({"exp": 1767225600})) == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "token",
    [
        jwt({"sub": "x"}),
        jwt({"exp": "soon"}),
        jwt({"exp": True}),
        jwt([1, 2]),
        jwt({"exp": 10**30}),
        "not-a-jwt",
        "a.b.c",
        "",
    ],
)
def test_decode_jwt_exp_returns_none_for_what_it_cannot_read(token: str) -> None:
    assert decode_jwt_exp(token) is None


# ---- the docstring examples ---------------------------------------------------------------------


@pytest.mark.parametrize("module", ["pymedplum.helpers", "pymedplum.extensions"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    # to_fhir_json and parse_resource show abbreviated model reprs, not runnable output.
    skipped = ("to_fhir_json", "parse_resource")
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = doctest.DocTestFinder().find(importlib.import_module(module))
    for test in tests:
        if not test.name.endswith(skipped):
            runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted >= 9 and results.failed == 0
