"""Both clients against the local Medplum server: search, paging, bundles, GraphQL."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.patient import Patient as FhirResourcesPatient

from pymedplum import FHIRBundle, UnsafeRedirectError, ValidationError
from pymedplum.fhir import Observation, Patient
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver


def patients(client: Driver, family: str, n: int) -> list[str]:
    return [
        client.create_resource(
            {"resourceType": "Patient", "name": [{"family": family, "given": [f"P{i}"]}]}
        )["id"]
        for i in range(n)
    ]


def test_search_resources_returns_the_bundle_dict(client: Driver) -> None:
    ids = patients(client, "Smith", 2)
    patients(client, "Jones", 1)
    bundle = client.search_resources("Patient", {"family": "Smith"})
    assert isinstance(bundle, dict)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == sorted(ids)


def test_search_resources_return_bundle_iterates_dicts_and_types_resources(
    client: Driver,
) -> None:
    client.create_resource(
        {"resourceType": "Patient", "name": [{"family": "Smith"}], "birthDate": "1970-05-06"}
    )
    bundle = client.search_resources("Patient", {"family": "Smith"}, return_bundle=True)
    assert isinstance(bundle, FHIRBundle)
    assert [r["name"][0]["family"] for r in bundle] == ["Smith"]
    typed = bundle.get_resources_typed(Patient)
    assert [str(p.birth_date) for p in typed] == ["1970-05-06"]
    theirs = bundle.get_resources_typed(FhirResourcesPatient)
    assert isinstance(theirs[0], FhirResourcesPatient)


def test_search_with_as_fhir_skips_included_resources(client: Driver) -> None:
    patient = client.create_resource({"resourceType": "Patient", "name": [{"family": "Inc"}]})
    client.create_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "hr"},
            "subject": {"reference": f"Patient/{patient['id']}"},
        }
    )
    bundle = client.search_resources(
        "Observation",
        {"subject": f"Patient/{patient['id']}", "_include": "Observation:subject"},
        return_bundle=True,
        as_fhir=Observation,
    )
    assert len(bundle.entries) == 2  # the match and the included Patient
    assert [type(o) for o in bundle] == [Observation]
    assert len(bundle) == 1  # what iteration yields


def test_search_by_model_returns_a_typed_bundle_and_sends_extra_query_after_the_typed_one(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    smith = client.create_resource(
        {"resourceType": "Patient", "name": [{"family": "Typed"}], "birthDate": "1980-02-03"}
    )
    client.create_resource({"resourceType": "Patient", "name": [{"family": "Other"}]})
    observation = client.create_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "hr"},
            "subject": {"reference": f"Patient/{smith['id']}"},
        }
    )
    medplum.clear_requests()
    bundle = client.search(Patient, {"family": "Typed", "birthdate": ["ge1980", "lt1981"]})
    assert isinstance(bundle, FHIRBundle) and bundle.model is Patient
    assert [(p.id, p.birth_date) for p in bundle] == [(smith["id"], "1980-02-03")]
    assert medplum.fhir_requests()[-1]["query"]["birthdate"] == ["ge1980", "lt1981"]
    chained = client.search(
        Observation, {"status": "final"}, extra_query=[("subject:Patient.name", "Typed")]
    )
    assert [o.id for o in chained] == [observation["id"]]
    assert medplum.fhir_requests()[-1]["query"]["subject:Patient.name"] == ["Typed"]
    assert [p.id for p in client.search(Patient, {"family": "Nobody"})] == []


def test_search_one_returns_the_first_match_or_none(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    patients(client, "Smith", 3)
    found = client.search_one("Patient", {"family": "Smith", "_count": 50})
    assert found is not None and found["name"][0]["family"] == "Smith"
    assert medplum.fhir_requests()[-1]["query"]["_count"] == ["1"]
    typed = client.search_one("Patient", {"family": "Smith"}, as_fhir=Patient)
    assert isinstance(typed, Patient)
    assert client.search_one("Patient", {"family": "Nobody"}) is None


def test_search_resource_pages_follows_next_links(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    ids = patients(client, "Paged", 5)
    medplum.clear_requests()
    seen = client.search_resource_pages("Patient", {"family": "Paged", "_count": 2})
    assert sorted(r["id"] for r in seen) == sorted(ids)
    pages = medplum.fhir_requests()
    assert len(pages) == 3
    assert [p["query"].get("_offset") for p in pages] == [None, ["2"], ["4"]]
    typed = client.search_resource_pages(
        "Patient", {"family": "Paged", "_count": 2}, as_fhir=Patient
    )
    assert len(typed) == 5 and all(isinstance(p, Patient) for p in typed)


def test_search_resource_pages_refuses_a_next_link_to_another_origin(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    foreign = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [],
        "link": [{"relation": "next", "url": "https://evil.example/fhir/R4/Patient?_offset=2"}],
    }
    medplum.fail_next(200, body=foreign, method="GET", path_prefix="/fhir/R4/Patient")
    with pytest.raises(UnsafeRedirectError):
        client.search_resource_pages("Patient", {"family": "X"})
    assert len(medplum.fhir_requests()) == 1  # the first page only; nothing was followed


def test_search_with_options_maps_named_controls(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    patients(client, "Opt", 3)
    counted = client.search_with_options("Patient", {"family": "Opt"}, summary="count")
    assert counted["total"] == 3 and "entry" not in counted
    page = client.search_with_options(
        "Patient", {"family": "Opt"}, count=2, offset=1, total="accurate", sort="-_lastUpdated"
    )
    assert page["total"] == 3 and len(page["entry"]) == 2
    query = medplum.fhir_requests()[-1]["query"]
    assert query["_count"] == ["2"] and query["_offset"] == ["1"]
    assert query["_sort"] == ["-_lastUpdated"] and query["_total"] == ["accurate"]
    bundle = client.search_with_options(
        "Patient", {"family": "Opt"}, count=1, return_bundle=True, as_fhir=Patient
    )
    assert isinstance(bundle, FHIRBundle) and isinstance(next(iter(bundle)), Patient)


def test_unknown_search_parameter_raises_validation_error(client: Driver) -> None:
    with pytest.raises(ValidationError) as caught:
        client.search_resources("Patient", {"nonsense": "1"})
    assert caught.value.status_code == 400


# ---- batch, transaction, GraphQL ---------------------------------------------------------------


def test_execute_batch_answers_each_entry(client: Driver) -> None:
    existing = client.create_resource({"resourceType": "Patient", "name": [{"family": "B"}]})
    result = client.execute_batch(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "name": [{"family": "New"}]},
                    "request": {"method": "POST", "url": "Patient"},
                },
                {"request": {"method": "GET", "url": f"Patient/{existing['id']}"}},
                {"request": {"method": "GET", "url": "Patient/missing"}},
            ],
        }
    )
    assert result["type"] == "batch-response"
    ok, failed = FHIRBundle(result).partition()
    assert [r.status_code for r in ok] == [201, 200]
    assert [r.status_code for r in failed] == [404]


def test_execute_transaction_resolves_urn_uuid_references(client: Driver) -> None:
    result = client.execute_transaction(
        {
            "resourceType": "Bundle",
            "entry": [
                {
                    "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                    "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "hr"},
                        "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                },
            ],
        }
    )
    assert result["type"] == "transaction-response"
    patient_id = FHIRBundle(result).entry_results()[0].resource_id
    observation = client.search_one("Observation", {"subject": f"Patient/{patient_id}"})
    assert observation is not None


def test_execute_transaction_is_not_atomic_on_medplum(client: Driver) -> None:
    """As recorded from Medplum: a failing entry gets its own status, earlier ones commit."""
    result = client.execute_transaction(
        {
            "resourceType": "Bundle",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "name": [{"family": "Kept"}]},
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "resource": {"resourceType": "Patient", "birthDate": "not-a-date"},
                    "request": {"method": "POST", "url": "Patient"},
                },
            ],
        }
    )
    bundle = FHIRBundle(result)
    ok, failed = bundle.partition()
    assert [r.status_code for r in ok] == [201] and [r.status_code for r in failed] == [400]
    assert client.search_one("Patient", {"family": "Kept"}) is not None  # committed
    with pytest.raises(Exception) as caught:
        bundle.raise_for_entry_errors()
    assert type(caught.value).__name__ == "BundleEntryError"


def test_execute_graphql(client: Driver) -> None:
    client.create_resource({"resourceType": "Patient", "name": [{"family": "Graph"}]})
    result = client.execute_graphql(
        "query Q($family: String) { PatientList(family: $family) { id name { family } } }",
        {"family": "Graph"},
    )
    assert [p["name"][0]["family"] for p in result["data"]["PatientList"]] == ["Graph"]
