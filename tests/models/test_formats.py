"""FHIR formats: the one relaxation and its strict switch, XML Schema spaces, resourceType in
documents, and Python date/time values."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest

from pymedplum import _json, fhir
from pymedplum._fhirmodel import FHIRValidationError
from pymedplum.fhir import (
    CodeSystem,
    Coding,
    HumanName,
    Meta,
    Observation,
    Patient,
    Timing,
)
from pymedplum.helpers import to_fhir_json

ZONELESS = "2026-12-01T04:23:00.612778"  # what datetime.now().isoformat() writes


def _patient_data(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


# Every way a document is validated; each returns the Patient.
ENTRY_POINTS: dict[str, Callable[[dict[str, Any]], Patient]] = {
    "constructor": lambda data: Patient(**{k: v for k, v in data.items() if k != "resourceType"}),
    "model_validate": Patient.model_validate,
    "model_validate_json": lambda data: Patient.model_validate_json(_json.dumps(data)),
    "from_server": Patient.from_server,
    "from_server_bytes": lambda data: Patient.from_server(_json.dumps(data)),
}


# 1. A dateTime with a time and no zone ------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_date_time_without_a_zone_is_accepted_by_default(entry: str) -> None:
    patient = ENTRY_POINTS[entry](_patient_data(deceasedDateTime=ZONELESS))
    assert patient.deceased_date_time == ZONELESS
    assert to_fhir_json(patient) == _patient_data(deceasedDateTime=ZONELESS)


def test_what_datetime_now_isoformat_writes_is_accepted() -> None:
    observation = Observation(
        status="final",
        code={"text": "t"},
        effective_date_time=datetime.now().isoformat(),  # type: ignore[arg-type]
    )
    assert observation.effective_date_time is not None


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_strict_restores_the_spec_rule_in_every_validation(entry: str) -> None:
    with fhir.strict(), pytest.raises(FHIRValidationError) as raised:
        ENTRY_POINTS[entry](_patient_data(deceasedDateTime=ZONELESS))
    (error,) = raised.value.errors()
    assert "strict" in error["msg"] and "datetime.now(timezone.utc)" in error["msg"]
    assert error["loc"][0] in ("Patient.deceasedDateTime", "Patient.deceased_date_time")


@pytest.mark.parametrize(
    "value", ["2026", "2026-12", "2026-12-01", "2026-12-01T04:23:00Z", "2026-12-01T04:23:00+01:00"]
)
def test_strict_accepts_what_the_spec_accepts(value: str) -> None:
    with fhir.strict():
        assert Patient(deceased_date_time=value).deceased_date_time == value


def test_strict_applies_to_nested_resources() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": _patient_data(deceasedDateTime=ZONELESS)}],
    }
    fhir.Bundle.model_validate(bundle)
    with fhir.strict(), pytest.raises(FHIRValidationError, match="no time zone"):
        fhir.Bundle.model_validate(bundle)


def test_strict_ends_with_its_block_and_can_be_turned_off_inside() -> None:
    assert not fhir.is_strict()
    with fhir.strict():
        assert fhir.is_strict()
        with fhir.strict(False):
            Patient(deceased_date_time=ZONELESS)
        with pytest.raises(FHIRValidationError):
            Patient(deceased_date_time=ZONELESS)
    assert not fhir.is_strict()
    Patient(deceased_date_time=ZONELESS)


def test_strict_belongs_to_its_thread() -> None:
    results: list[bool] = []

    def other_thread() -> None:
        results.append(Patient(deceased_date_time=ZONELESS).deceased_date_time == ZONELESS)

    with fhir.strict():
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        with pytest.raises(FHIRValidationError):
            Patient(deceased_date_time=ZONELESS)
    assert results == [True]


def test_strict_belongs_to_its_task() -> None:
    async def validate(strictly: bool, ready: asyncio.Event, go: asyncio.Event) -> bool:
        try:
            with fhir.strict(strictly):
                ready.set()
                await go.wait()  # both tasks are inside their blocks now
                try:
                    Patient(deceased_date_time=ZONELESS)
                except FHIRValidationError:
                    return False
                return True
        finally:
            ready.set()  # never leave main() waiting

    async def main() -> list[bool]:
        go = asyncio.Event()
        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [
            asyncio.create_task(validate(True, ready[0], go)),
            asyncio.create_task(validate(False, ready[1], go)),
        ]
        for event in ready:
            await event.wait()
        go.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [False, True]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_instant_still_needs_its_zone(entry: str) -> None:
    data = _patient_data(meta={"lastUpdated": "2026-12-01T04:23:00"})
    with pytest.raises(FHIRValidationError, match="no time zone"):
        ENTRY_POINTS[entry](data)


@pytest.mark.parametrize(
    "value",
    [
        "2020-01-02T10",  # Medplum's own expression takes an hour alone; FHIR does not
        "2020-01-02T10:00",
        "2020-01-02Z",
        "02/01/2020",
        "2020-13-01T10:00:00",
    ],
)
def test_other_malformed_date_times_are_still_errors(value: str) -> None:
    for validate in (Patient.model_validate, Patient.from_server):
        with pytest.raises(FHIRValidationError, match="not a valid FHIR dateTime") as raised:
            validate(_patient_data(deceasedDateTime=value))
        assert "zone" not in str(raised.value)


# 2. XML Schema spaces -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (HumanName, {"family": "van\u00a0Dijk"}),  # string
        (Coding, {"code": "a\u00a0b", "display": "Program\u00a0"}),  # code, string
        (Coding, {"code": "\u00a0"}),  # a code of one no-break space: not a space in FHIR
        (Coding, {"system": "urn:x\u00a0y"}),  # uri
        (HumanName, {"family": "thin\u2009space and ideographic\u3000space"}),
        (
            Observation,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "t"},
                "note": [{"text": "a\u00a0**b**"}],
            },
        ),  # markdown
    ],
)
def test_a_no_break_space_is_valid_fhir(model: type[Any], data: dict[str, Any]) -> None:
    assert to_fhir_json(model.model_validate(data)) == data


def test_an_official_example_with_a_no_break_space_parses() -> None:
    # From the R4 examples (CodeSystem contract-status): a definition with a no-break space.
    definition = "Contract reaches its expiry date.\u00a0It might or might not be renewed."
    data = {
        "resourceType": "CodeSystem",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "expired", "definition": definition}],
    }
    code_system = CodeSystem.model_validate_json(_json.dumps(data))
    assert code_system.concept is not None and code_system.concept[0].definition == definition


@pytest.mark.parametrize(
    ("model", "data", "fhir_type"),
    [
        (Coding, {"code": "a  b"}, "code"),  # only single spaces inside a code
        (Coding, {"code": " a"}, "code"),
        (Coding, {"code": "a\u000bb"}, "code"),  # a vertical tab is no XML character
        (Coding, {"system": "urn:a b"}, "uri"),
        (Coding, {"system": "urn:a\tb"}, "uri"),
        (Coding, {"system": "urn:\u0001"}, "uri"),
        (HumanName, {"family": "a\u000bb"}, "string"),
        (HumanName, {"family": "a\u0000b"}, "string"),
        (HumanName, {"family": "a\ufffeb"}, "string"),
    ],
)
def test_only_xml_characters_and_xml_spaces_count(
    model: type[Any], data: dict[str, Any], fhir_type: str
) -> None:
    with pytest.raises(FHIRValidationError) as raised:
        model.model_validate(data)
    assert [e["msg"] for e in raised.value.errors()] == [f"Input is not a valid FHIR {fhir_type}"]


# 3. resourceType in documents ---------------------------------------------------------


@pytest.mark.parametrize(
    "validate",
    [
        Patient.model_validate,
        lambda data: Patient.model_validate_json(_json.dumps(data)),
        Patient.from_server,
        lambda data: Patient.from_server(_json.dumps(data)),
    ],
)
def test_a_resource_document_must_carry_its_resource_type(
    validate: Callable[[dict[str, Any]], Any],
) -> None:
    with pytest.raises(FHIRValidationError) as raised:
        validate({"name": [{"family": "Doe"}]})
    (error,) = raised.value.errors()
    assert error["loc"] == ("Patient.resourceType",)
    assert '"resourceType": "Patient"' in error["msg"]


def test_a_model_built_in_python_keeps_its_resource_type_default() -> None:
    assert Patient(name=[HumanName(family="Doe")]).resource_type == "Patient"
    assert Patient.model_validate({"resource_type": "Patient"}).resource_type == "Patient"


def test_datatypes_have_no_resource_type() -> None:
    assert HumanName.model_validate({"family": "Doe"}).family == "Doe"


# 4. Python date, datetime and time values ---------------------------------------------

UTC = UTC


@pytest.mark.parametrize(
    ("model", "element", "value", "text"),
    [
        (Patient, "birthDate", date(2024, 1, 2), "2024-01-02"),
        (
            Patient,
            "deceasedDateTime",
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            "2024-01-02T03:04:05+00:00",
        ),
        (
            Patient,
            "deceasedDateTime",
            datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=timezone(timedelta(hours=-5))),
            "2024-01-02T03:04:05.120000-05:00",
        ),
        (Patient, "deceasedDateTime", date(2024, 1, 2), "2024-01-02"),
        (Patient, "deceasedDateTime", datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (
            Meta,
            "lastUpdated",
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            "2024-01-02T03:04:05+00:00",
        ),
    ],
)
def test_python_dates_and_times_are_written_in_fhir_format(
    model: type[Any], element: str, value: object, text: str
) -> None:
    data = {"resourceType": "Patient"} if model is Patient else {}
    built = model.model_validate({**data, element: value})
    assert to_fhir_json(built) == {**data, element: text}
    assert model.model_validate(to_fhir_json(built)) == built


def test_a_python_time_is_written_in_fhir_format() -> None:
    timing = Timing.model_validate({"repeat": {"timeOfDay": [time(9, 30), time(21, 0, 0, 5)]}})
    assert to_fhir_json(timing) == {"repeat": {"timeOfDay": ["09:30:00", "21:00:00.000005"]}}


@pytest.mark.parametrize(
    ("model", "element", "value", "hint"),
    [
        (Patient, "birthDate", datetime(2024, 1, 2, 3, 4), "value.date()"),
        (Meta, "lastUpdated", datetime(2024, 1, 2, 3, 4), "datetime.now(timezone.utc)"),
        (Meta, "lastUpdated", date(2024, 1, 2), "a time and a time zone"),
        (Timing, "repeat", {"timeOfDay": [time(9, 30, tzinfo=UTC)]}, "no time zone"),
        (Patient, "birthDate", 20240102, ""),
    ],
)
def test_python_values_that_do_not_fit_the_type_are_errors(
    model: type[Any], element: str, value: object, hint: str
) -> None:
    data = {"resourceType": "Patient"} if model is Patient else {}
    with pytest.raises(FHIRValidationError, match="not a valid FHIR") as raised:
        model.model_validate({**data, element: value})
    assert hint in str(raised.value)


def test_a_naive_datetime_follows_the_date_time_rule() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5)
    assert Patient(deceased_date_time=naive).deceased_date_time == "2024-01-02T03:04:05"  # type: ignore[arg-type]
    with fhir.strict(), pytest.raises(FHIRValidationError, match="datetime.now"):
        Patient(deceased_date_time=naive)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "2015-02-07T13:28:17.239+02:00",
        "2015-02-07T13:28:17.2390000000+02:00",  # more digits than Python keeps
        "2015-02-07T13:28:60Z",  # a leap second, which Python cannot hold
        "2015-02-07T13:28:17-00:00",
    ],
)
def test_strings_read_from_json_are_never_rewritten(text: str) -> None:
    raw = b'{"resourceType":"Patient","meta":{"lastUpdated":"%s"},"deceasedDateTime":"%s"}' % (
        text.encode(),
        text.encode(),
    )
    patient = Patient.model_validate_json(raw)
    assert patient.deceased_date_time == text and patient.to_fhir_json() == raw
