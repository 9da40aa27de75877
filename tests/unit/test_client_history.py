"""History, conditional writes, read_reference and rate_limit_status on both clients.

What goes on the wire, what comes back, and what is refused before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pymedplum import (
    FHIRBundle,
    NotFoundError,
    PreconditionFailedError,
    ServerError,
    UnsafeRedirectError,
)
from pymedplum._core import BaseClient
from pymedplum.fhir import Observation, Patient, Reference

from .conftest import BASE, Driver, FakeMedplum, query

FHIR = BASE + "fhir/R4/"
PATIENT_PATH = "/fhir/R4/Patient"
MRN = "identifier=http://mrn|123"
RATE_LIMIT = '"requests";r=59999;t=60, "fhirInteractions";r=49894;t=60'


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def version(vid: str, active: bool = True) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "active": active, "meta": {"versionId": vid}}


def history_entry(resource: dict[str, Any]) -> dict[str, Any]:
    vid = resource["meta"]["versionId"]
    return {
        "fullUrl": FHIR + "Patient/p1",
        "request": {"method": "GET", "url": f"Patient/p1/_history/{vid}"},
        "response": {"status": "200"},
        "resource": resource,
    }


DELETED = {
    "fullUrl": FHIR + "Patient/p1",
    "request": {"method": "GET", "url": "Patient/p1/_history/v4"},
    "response": {"status": "410", "outcome": {"resourceType": "OperationOutcome", "id": "gone"}},
}


def history(*entries: dict[str, Any], next_url: str | None = None) -> httpx.Response:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "entry": list(entries)}
    if next_url is not None:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return httpx.Response(200, json=bundle)


def outcome(status: int, code: str) -> httpx.Response:
    issue = [{"severity": "error", "code": code}]
    return httpx.Response(status, json={"resourceType": "OperationOutcome", "issue": issue})


# ---- read_history -------------------------------------------------------------------------------


def test_read_history_gets_the_instance_history(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", PATIENT_PATH + "/p1/_history", history(history_entry(version("v2"))))
    result = make().read_history("Patient", "p1")
    sent = fake.api_requests[0]
    assert (sent.method, sent.url.path, sent.url.query) == (
        "GET",
        PATIENT_PATH + "/p1/_history",
        b"",
    )
    assert result["type"] == "history"
    assert result["entry"][0]["resource"]["meta"]["versionId"] == "v2"


def test_read_history_as_a_typed_bundle_keeps_deletes_in_the_entries(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "GET", PATIENT_PATH + "/p1/_history", history(DELETED, history_entry(version("v3")))
    )
    bundle = make().read_history("Patient", "p1", return_bundle=True, as_fhir=Patient)
    assert isinstance(bundle, FHIRBundle)
    assert [p.meta.version_id for p in bundle] == ["v3"]
    assert [r.status_code for r in bundle.entry_results()] == [410, 200]


def test_read_history_refuses_an_invalid_id_before_sending(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(ValueError, match="resource_id"):
        make().read_history("Patient", "../Patient")
    assert fake.api_requests == []


def test_read_history_of_an_unknown_resource_raises_not_found(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", PATIENT_PATH + "/p1/_history", outcome(404, "not-found"))
    with pytest.raises(NotFoundError):
        make().read_history("Patient", "p1")


# ---- read_history_pages -------------------------------------------------------------------------


def test_read_history_pages_follows_next_links_and_skips_deletes(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    page2 = FHIR + "Patient/p1/_history?_count=2&_offset=2"
    fake.script(
        "GET",
        PATIENT_PATH + "/p1/_history",
        history(DELETED, history_entry(version("v3")), next_url=page2),
        history(history_entry(version("v2")), history_entry(version("v1"))),
    )
    versions = make().read_history_pages("Patient", "p1")
    assert [v["meta"]["versionId"] for v in versions] == ["v3", "v2", "v1"]
    assert [r.url.query for r in fake.api_requests] == [b"", b"_count=2&_offset=2"]


def test_read_history_pages_yields_models(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", PATIENT_PATH + "/p1/_history", history(history_entry(version("v1"))))
    versions = make().read_history_pages("Patient", "p1", Patient)
    assert len(versions) == 1 and isinstance(versions[0], Patient)
    assert versions[0].meta is not None and versions[0].meta.version_id == "v1"


def test_read_history_pages_refuses_a_next_link_on_another_origin(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "GET",
        PATIENT_PATH + "/p1/_history",
        history(history_entry(version("v2")), next_url="https://evil.test/fhir/R4/Patient/p1"),
    )
    with pytest.raises(UnsafeRedirectError, match="evil.test"):
        make().read_history_pages("Patient", "p1")
    assert len(fake.api_requests) == 1


# ---- upsert_resource ----------------------------------------------------------------------------

MRN_PATIENT = {"resourceType": "Patient", "identifier": [{"system": "http://mrn", "value": "123"}]}


def test_upsert_sends_a_conditional_put(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    result = make().upsert_resource(MRN_PATIENT, MRN)
    sent = fake.api_requests[0]
    assert (sent.method, sent.url.path) == ("PUT", PATIENT_PATH)
    assert query(sent) == {"identifier": ["http://mrn|123"]}
    assert sent.headers["content-type"] == "application/fhir+json"
    assert sent.headers.get("if-match") is None
    assert body(sent) == MRN_PATIENT
    assert result["id"] == "new-id"
    assert "id" not in MRN_PATIENT  # the caller's dict is untouched


@pytest.mark.parametrize(
    "criteria",
    [
        "identifier=http://mrn|123",
        "?identifier=http://mrn|123",
        "Patient?identifier=http://mrn|123",
        FHIR + "Patient?identifier=http://mrn|123",
        {"identifier": "http://mrn|123"},
        [("identifier", "http://mrn|123")],
    ],
)
def test_upsert_accepts_criteria_in_every_documented_form(
    make: Callable[..., Driver], fake: FakeMedplum, criteria: Any
) -> None:
    make().upsert_resource(MRN_PATIENT, criteria)
    assert query(fake.api_requests[0]) == {"identifier": ["http://mrn|123"]}


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ("", "search criteria"),
        ("?", "search criteria"),
        ({}, "search criteria"),
        ("_count=1&_sort=-_lastUpdated", "search criteria"),
        ({"identifier": None}, "search criteria"),
        ("identifier=", "no value"),
        ("identifier=a#b", "percent-encoded"),
        ("Practitioner?identifier=x", "resource is a Patient"),
    ],
)
def test_upsert_refuses_criteria_that_would_not_select_one_resource(
    make: Callable[..., Driver], fake: FakeMedplum, criteria: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make().upsert_resource(MRN_PATIENT, criteria)
    assert fake.api_requests == []


def test_upsert_refuses_a_criteria_url_on_another_origin(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(UnsafeRedirectError):
        make().upsert_resource(MRN_PATIENT, "https://evil.test/fhir/R4/Patient?" + MRN)
    assert fake.api_requests == []


def test_upsert_refuses_criteria_of_the_wrong_type(make: Callable[..., Driver]) -> None:
    with pytest.raises(TypeError, match="criteria"):
        make().upsert_resource(MRN_PATIENT, 123)


def test_upsert_of_a_model_with_accounts_returns_a_model(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    patient = Patient.model_validate(MRN_PATIENT)
    result = make().upsert_resource(
        patient, MRN, accounts="Organization/o1", as_fhir=Patient, headers={"X-Trace": "t"}
    )
    sent = fake.api_requests[0]
    assert body(sent)["meta"] == {"accounts": [{"reference": "Organization/o1"}]}
    assert sent.headers["x-trace"] == "t"
    assert patient.meta is None  # the caller's model is untouched
    assert isinstance(result, Patient) and result.id == "new-id"


def test_upsert_answered_304_returns_the_resource_as_sent(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("PUT", PATIENT_PATH, httpx.Response(304))
    assert make().upsert_resource(MRN_PATIENT, MRN) == MRN_PATIENT


def test_upsert_with_several_matches_raises_precondition_failed(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("PUT", PATIENT_PATH, outcome(412, "multiple-matches"))
    with pytest.raises(PreconditionFailedError):
        make().upsert_resource(MRN_PATIENT, MRN)


def test_upsert_is_replayed_after_an_ambiguous_failure(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("PUT", PATIENT_PATH, outcome(503, "transient"))
    make().upsert_resource(MRN_PATIENT, MRN)
    assert [r.method for r in fake.api_requests] == ["PUT", "PUT"]
    assert len(sleeps) == 1


# ---- conditional_patch, conditional_delete ----------------------------------------------------

OPS = [{"op": "replace", "path": "/active", "value": False}]


def test_conditional_patch_sends_json_patch_to_the_type_with_criteria(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("PATCH", PATIENT_PATH, httpx.Response(200, json=version("v2", active=False)))
    result = make().conditional_patch("Patient", {"identifier": "http://mrn|123"}, OPS)
    sent = fake.api_requests[0]
    assert (sent.method, sent.url.path) == ("PATCH", PATIENT_PATH)
    assert query(sent) == {"identifier": ["http://mrn|123"]}
    assert sent.headers["content-type"] == "application/json-patch+json"
    assert body(sent) == OPS
    assert result["active"] is False


def test_conditional_patch_as_fhir(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("PATCH", PATIENT_PATH, httpx.Response(200, json=version("v2", active=False)))
    result = make().conditional_patch("Patient", MRN, OPS, as_fhir=Patient)
    assert isinstance(result, Patient) and result.active is False


def test_conditional_patch_without_a_match_raises_not_found(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("PATCH", PATIENT_PATH, outcome(404, "not-found"))
    with pytest.raises(NotFoundError):
        make().conditional_patch("Patient", MRN, OPS)


def test_conditional_patch_is_never_replayed(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("PATCH", PATIENT_PATH, outcome(503, "transient"))
    with pytest.raises(ServerError) as caught:
        make().conditional_patch("Patient", MRN, OPS)
    assert caught.value.possibly_committed is True
    assert len(fake.api_requests) == 1 and sleeps == []


def test_conditional_patch_refuses_a_single_operation_and_empty_criteria(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    client = make()
    with pytest.raises(TypeError, match="list of JSON Patch"):
        client.conditional_patch("Patient", MRN, OPS[0])
    with pytest.raises(ValueError, match="search criteria"):
        client.conditional_patch("Patient", "", OPS)
    assert fake.api_requests == []


def test_conditional_delete_sends_delete_with_criteria(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    assert make().conditional_delete("Patient", MRN) is None
    sent = fake.api_requests[0]
    assert (sent.method, sent.url.path) == ("DELETE", PATIENT_PATH)
    assert query(sent) == {"identifier": ["http://mrn|123"]}


def test_conditional_delete_with_several_matches_raises(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("DELETE", PATIENT_PATH, outcome(412, "multiple-matches"))
    with pytest.raises(PreconditionFailedError):
        make().conditional_delete("Patient", MRN)


def test_conditional_delete_refuses_to_delete_every_resource_of_a_type(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(ValueError, match="every Patient"):
        make().conditional_delete("Patient", {"_count": 1})
    assert fake.api_requests == []


# ---- read_reference -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        {"reference": "Patient/p1", "display": "Ann"},
        {"reference": "Patient/p1", "type": "Patient"},
        Reference(reference="Patient/p1"),
        FHIR + "Patient/p1",
        " Patient/p1 ",
    ],
)
def test_read_reference_reads_the_resource(
    make: Callable[..., Driver], fake: FakeMedplum, reference: Any
) -> None:
    result = make().read_reference(reference)
    assert fake.api_requests[0].url.path == PATIENT_PATH + "/p1"
    assert result["resourceType"] == "Patient" and result["id"] == "p1"


def test_read_reference_of_a_version_reads_that_version(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().read_reference({"reference": "Patient/p1/_history/v2"})
    assert fake.api_requests[0].url.path == PATIENT_PATH + "/p1/_history/v2"


def test_read_reference_as_fhir(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    observation = Observation.model_validate(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"},
        }
    )
    patient = make().read_reference(observation.subject, Patient)
    assert isinstance(patient, Patient) and patient.id == "p1"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("#contained-1", "contained"),
        ({"reference": "#p"}, "contained"),
        ("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "transaction"),
        ({"identifier": {"system": "http://mrn", "value": "123"}}, "identifier"),
        ({"display": "Ann"}, "identifier"),
        ("", "empty"),
        ("Patient", "Type/id"),
        ("Patient/", "not a valid reference"),
        ("Patient/p1/extra", "Type/id"),
        ("patient/p1", "not a valid reference"),
        ("Patient/a b", "not a valid reference"),
        ("Patient/p1/_history/", "not a valid reference"),
        ("system", "system"),
        ({"reference": "Patient/p1", "type": "Group"}, "type is 'Group'"),
        (FHIR + "Patient?identifier=x", "one resource"),
        (BASE + "admin/projects/p1", "outside the client's FHIR base"),
    ],
)
def test_read_reference_refuses_what_is_not_a_server_resource(
    make: Callable[..., Driver], fake: FakeMedplum, reference: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make().read_reference(reference)
    assert fake.api_requests == []


def test_read_reference_refuses_another_origin(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(UnsafeRedirectError, match="evil.test"):
        make().read_reference({"reference": "https://evil.test/fhir/R4/Patient/p1"})
    assert fake.api_requests == []


def test_read_reference_refuses_an_as_fhir_of_another_type(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(ValueError, match="points at a Group, but as_fhir is Patient"):
        make().read_reference("Group/g1", Patient)
    assert fake.api_requests == []


@pytest.mark.parametrize("reference", [42, {"resourceType": "Patient", "id": "p1"}, Patient()])
def test_read_reference_refuses_what_is_not_a_reference(
    make: Callable[..., Driver], fake: FakeMedplum, reference: Any
) -> None:
    with pytest.raises(TypeError):
        make().read_reference(reference)
    assert fake.api_requests == []


def test_a_malformed_reference_error_shows_no_long_value(make: Callable[..., Driver]) -> None:
    long_ref = "Patient/" + "x" * 200
    with pytest.raises(ValueError) as caught:
        make().read_reference(long_ref)
    assert long_ref not in str(caught.value)


# ---- rate_limit_status --------------------------------------------------------------------------


# rate_limit_status() reads what the shared core records on each response. Until the core
# records it (`BaseClient._last_rate_limit`, set in `CallState.after_response`), these fail.
def _require_core_hook() -> None:
    if not hasattr(BaseClient, "_last_rate_limit"):
        pytest.fail(
            "pymedplum._core does not record the RateLimit header yet: apply the "
            "BaseClient._last_rate_limit / CallState.after_response patch from the issue-4 "
            "history report"
        )


def with_rate_limit(value: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=version("v1"), headers={"RateLimit": value})


def test_rate_limit_status_is_none_before_any_response(make: Callable[..., Driver]) -> None:
    _require_core_hook()
    assert make().rate_limit_status() is None


def test_rate_limit_status_parses_the_last_header(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    _require_core_hook()
    fake.script("GET", PATIENT_PATH + "/p1", with_rate_limit(RATE_LIMIT))
    client = make()
    before = datetime.now(UTC)
    client.read_resource("Patient", "p1")
    status = client.rate_limit_status()
    assert status is not None
    assert [(p.name, p.remaining, p.reset_seconds) for p in status.policies] == [
        ("requests", 59999, 60),
        ("fhirInteractions", 49894, 60),
    ]
    assert status.fhir_interactions is not None and status.fhir_interactions.remaining == 49894
    assert before <= status.observed_at <= datetime.now(UTC)
    assert len(fake.api_requests) == 1  # asking sends nothing


def test_rate_limit_status_follows_each_response(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    _require_core_hook()
    fake.script(
        "GET",
        PATIENT_PATH + "/p1",
        with_rate_limit('"fhirInteractions";r=20;t=60'),
        httpx.Response(200, json=version("v1")),  # no header: the last status stays
        with_rate_limit('"fhirInteractions";r=0;t=30', status=429),
        with_rate_limit('"fhirInteractions";r=999;t=60'),
    )
    client = make()
    client.read_resource("Patient", "p1")
    client.read_resource("Patient", "p1")
    first = client.rate_limit_status()
    assert first is not None and first.fhir_interactions is not None
    assert first.fhir_interactions.remaining == 20
    client.read_resource("Patient", "p1")  # a 429 (recorded), then a retry
    status = client.rate_limit_status()
    assert sleeps == [30.0]
    assert status is not None and status.fhir_interactions is not None
    assert status.fhir_interactions.remaining == 999


def test_rate_limit_status_records_the_429_that_ends_a_call(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    _require_core_hook()
    exhausted = '"requests";r=59920;t=60, "fhirInteractions";r=0;t=60'
    fake.script("GET", PATIENT_PATH + "/p1", *[with_rate_limit(exhausted, 429)] * 4)
    client = make()
    with pytest.raises(Exception, match="429"):
        client.read_resource("Patient", "p1")
    status = client.rate_limit_status()
    assert status is not None and status.exhausted
    assert status.most_constrained is not None
    assert status.most_constrained.name == "fhirInteractions"


def test_criteria_values_may_hold_urls_and_question_marks(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().conditional_delete("Questionnaire", "url=http://x.org/q?v=2")
    assert query(fake.api_requests[0]) == {"url": ["http://x.org/q?v=2"]}


def test_a_reference_or_criteria_url_of_another_scheme_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    client = make()
    with pytest.raises(UnsafeRedirectError):
        client.read_reference("ftp://medplum.test/fhir/R4/Patient/p1")
    with pytest.raises(UnsafeRedirectError):
        client.conditional_delete("Patient", "ftp://medplum.test/fhir/R4/Patient?" + MRN)
    assert fake.api_requests == []
