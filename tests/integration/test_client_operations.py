"""Operations against the local Medplum server, with both clients: execute_operation,
Parameters helpers, terminology, clone, expunge, $validate and $everything (all pages)."""

from __future__ import annotations

from typing import Any

import pytest

from pymedplum import (
    AuthorizationError,
    GoneError,
    MedplumError,
    NotFoundError,
    get_parameter,
    get_parameter_resource,
    parameters_to_dict,
)
from pymedplum.fhir import Bundle
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

CS_URL = "http://example.org/CodeSystem/vitals"
VS_URL = "http://example.org/ValueSet/vitals"
CM_URL = "http://example.org/ConceptMap/vitals-to-local"


def observation(patient_id: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


@pytest.fixture
def terminology(client: Driver) -> dict[str, str]:
    """A CodeSystem, a ValueSet over it and a ConceptMap from it; their ids."""
    cs = client.create_resource(
        {
            "resourceType": "CodeSystem",
            "url": CS_URL,
            "name": "Vitals",
            "status": "active",
            "content": "complete",
            "concept": [
                {"code": "hr", "display": "Heart rate"},
                {"code": "bp", "display": "Blood pressure"},
                {"code": "rr", "display": "Respiratory rate"},
            ],
        }
    )
    vs = client.create_resource(
        {
            "resourceType": "ValueSet",
            "url": VS_URL,
            "status": "active",
            "compose": {"include": [{"system": CS_URL}]},
        }
    )
    cm = client.create_resource(
        {
            "resourceType": "ConceptMap",
            "url": CM_URL,
            "status": "active",
            "group": [
                {
                    "source": CS_URL,
                    "target": "http://example.org/local",
                    "element": [{"code": "hr", "target": [{"code": "HR", "equivalence": "equal"}]}],
                }
            ],
        }
    )
    return {"cs": cs["id"], "vs": vs["id"], "cm": cm["id"]}


# ---- execute_operation ----------------------------------------------------------------------


def test_instance_operation_by_get_and_post(client: Driver) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    by_get = client.execute_operation("Patient", "everything", patient["id"], method="GET")
    by_post = client.execute_operation("Patient", "$everything", resource_id=patient["id"])
    assert by_get["resourceType"] == by_post["resourceType"] == "Bundle"
    assert by_get["entry"][0]["resource"]["id"] == patient["id"]


def test_type_operation_with_wrapped_params(client: Driver, terminology: dict[str, str]) -> None:
    answer = client.execute_operation(
        "CodeSystem", "lookup", params={"system": CS_URL, "code": "hr"}, wrap_params=True
    )
    assert get_parameter(answer, "display") == "Heart rate"


def test_type_operation_by_get_query(client: Driver, terminology: dict[str, str]) -> None:
    answer = client.execute_operation(
        "CodeSystem", "lookup", params={"system": CS_URL, "code": "bp"}, method="GET"
    )
    assert parameters_to_dict(answer)["display"] == "Blood pressure"


def test_system_level_operation_url(client: Driver, medplum: LocalMedplumServer) -> None:
    with pytest.raises(NotFoundError):
        client.execute_operation(None, "no-such-operation")
    assert medplum.fhir_requests()[-1]["path"] == "/fhir/R4/$no-such-operation"


def test_as_fhir_reads_a_direct_answer_and_refuses_a_wrapped_one(
    client: Driver, terminology: dict[str, str]
) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    bundle = client.execute_operation("Patient", "everything", patient["id"], as_fhir=Bundle)
    assert isinstance(bundle, Bundle) and bundle.type == "searchset"
    with pytest.raises(MedplumError, match="Parameters, not a Bundle"):
        client.execute_operation(
            "CodeSystem",
            "lookup",
            params={"system": CS_URL, "code": "hr"},
            wrap_params=True,
            as_fhir=Bundle,
        )


# ---- terminology ----------------------------------------------------------------------------


def test_expand_valueset_by_url_and_id(client: Driver, terminology: dict[str, str]) -> None:
    by_url = client.expand_valueset(valueset_url=VS_URL, filter="rate")
    codes = sorted(c["code"] for c in by_url["expansion"]["contains"])
    assert codes == ["hr", "rr"]
    by_id = client.expand_valueset(valueset_id=terminology["vs"], count=1, offset=1)
    assert [c["code"] for c in by_id["expansion"]["contains"]] == ["bp"]


def test_lookup_concept(client: Driver, terminology: dict[str, str]) -> None:
    by_code = client.lookup_concept(code="hr", system=CS_URL)
    by_coding = client.lookup_concept(coding={"system": CS_URL, "code": "bp"})
    by_id = client.lookup_concept(code="rr", codesystem_id=terminology["cs"])
    assert get_parameter(by_code, "display") == "Heart rate"
    assert get_parameter(by_coding, "display") == "Blood pressure"
    assert get_parameter(by_id, "display") == "Respiratory rate"
    with pytest.raises(NotFoundError):
        client.lookup_concept(code="nope", system=CS_URL)


def test_translate_concept(client: Driver, terminology: dict[str, str]) -> None:
    answer = client.translate_concept(code="hr", system=CS_URL, conceptmap_url=CM_URL)
    found = parameters_to_dict(answer)
    assert found["result"] is True
    assert found["match"]["concept"]["code"] == "HR"
    missing = client.translate_concept(code="bp", system=CS_URL, conceptmap_id=terminology["cm"])
    assert get_parameter(missing, "result") is False


def test_validate_valueset_code(client: Driver, terminology: dict[str, str]) -> None:
    good = client.validate_valueset_code(valueset_url=VS_URL, code="hr", system=CS_URL)
    bad = client.validate_valueset_code(
        valueset_id=terminology["vs"], coding={"system": CS_URL, "code": "xx"}
    )
    concept = client.validate_valueset_code(
        valueset_url=VS_URL, codeable_concept={"coding": [{"system": CS_URL, "code": "bp"}]}
    )
    assert get_parameter(good, "result") is True
    assert get_parameter(bad, "result") is False
    assert get_parameter(concept, "result") is True


def test_validate_codesystem_code(client: Driver, terminology: dict[str, str]) -> None:
    good = client.validate_codesystem_code(codesystem_url=CS_URL, code="rr")
    bad = client.validate_codesystem_code(codesystem_id=terminology["cs"], code="zz")
    assert get_parameter(good, "result") is True and get_parameter(good, "display")
    assert get_parameter(bad, "result") is False


# ---- clone, expunge, $validate --------------------------------------------------------------


def test_clone_resource_of_a_type_without_clone_is_not_found(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    # Medplum defines $clone for Projects only (server fhir/routes.ts).
    patient = client.create_resource({"resourceType": "Patient"})
    with pytest.raises(NotFoundError):
        client.clone_resource("Patient", patient["id"])
    assert medplum.fhir_requests()[-1]["path"] == f"/fhir/R4/Patient/{patient['id']}/$clone"


def test_expunge_needs_a_super_admin_project(client: Driver) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    with pytest.raises(AuthorizationError):
        client.expunge_resource("Patient", patient["id"])
    assert client.read_resource("Patient", patient["id"])["id"] == patient["id"]


def test_expunge_resource_removes_it_and_its_history(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    medplum.set_project(super_admin=True)
    patient = client.create_resource({"resourceType": "Patient"})
    client.update_resource({**patient, "active": True})
    assert client.expunge_resource("Patient", patient["id"]) is None
    with pytest.raises(NotFoundError) as caught:
        client.read_resource("Patient", patient["id"])
    assert not isinstance(caught.value, GoneError)  # no tombstone: the history is gone too
    with pytest.raises(NotFoundError):
        client.vread_resource("Patient", patient["id"], patient["meta"]["versionId"])


def test_expunge_everything_starts_an_async_job(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    medplum.set_project(super_admin=True)
    patient = client.create_resource({"resourceType": "Patient"})
    client.create_resource(observation(patient["id"], "x"))
    assert client.expunge_resource("Patient", patient["id"], everything=True) is None
    assert medplum.fhir_requests()[-1]["query"] == {"everything": ["true"]}
    assert len(medplum.async_jobs()) == 1


def test_validate_resource_returns_the_outcome(client: Driver) -> None:
    valid = client.validate_resource({"resourceType": "Patient", "gender": "female"})
    invalid = client.validate_resource({"resourceType": "Patient", "colour": "purple"})
    assert valid["resourceType"] == invalid["resourceType"] == "OperationOutcome"
    assert all(i["severity"] not in ("error", "fatal") for i in valid["issue"])
    errors = [i for i in invalid["issue"] if i["severity"] == "error"]
    assert errors and errors[0].get("expression") == ["Patient.colour"]
    assert client.search_resources("Patient").get("entry") is None  # nothing was stored


# ---- $everything ----------------------------------------------------------------------------


def test_read_patient_everything_reads_every_page(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    made = [client.create_resource(observation(patient["id"], f"obs {i}")) for i in range(4)]
    medplum.clear_requests()
    bundle = client.read_patient_everything(patient["id"], count=2)
    ids = {e["resource"]["id"] for e in bundle["entry"]}
    assert ids == {patient["id"], *(o["id"] for o in made)}
    assert "link" not in bundle
    assert len(medplum.fhir_requests()) == 3  # 5 resources, 2 a page


def test_read_patient_everything_as_model(client: Driver) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    client.create_resource(observation(patient["id"], "x"))
    bundle = client.read_patient_everything(patient["id"], as_fhir=Bundle)
    assert isinstance(bundle, Bundle) and len(bundle.entry or []) == 2
    resource = get_parameter_resource(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "b", "resource": bundle.to_fhir_dict()}],
        },
        "b",
    )
    assert resource is not None and resource["resourceType"] == "Bundle"
