"""Both clients against the local Medplum server: login, CRUD, models, decimals, errors.

Every test runs twice, for `MedplumClient` and `AsyncMedplumClient` (the `client` fixture).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.patient import Patient as FhirResourcesPatient

from pymedplum import (
    AsyncMedplumClient,
    GoneError,
    MedplumClient,
    MissingVersionIdError,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from pymedplum.fhir import Observation, Patient
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

SMITH = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Ann"]}]}


def weight(value: Decimal) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "body weight"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }


# ---- login -------------------------------------------------------------------------------------


def test_login_is_lazy_and_happens_once(client: Driver, medplum: LocalMedplumServer) -> None:
    assert medplum.token_stats()["token_requests"] == 0  # constructing the client sent nothing
    client.create_resource(SMITH)
    client.search_resources("Patient", {"family": "Smith"})
    assert medplum.token_stats()["token_requests"] == 1
    logged = medplum.fhir_requests()
    assert [r["auth_scheme"] for r in logged] == ["Bearer", "Bearer"]
    assert {r["client_id"] for r in logged} == {medplum.admin_client.client_id}


# ---- create: dicts, our models, fhir.resources models ------------------------------------------


def test_create_from_a_dict_returns_the_stored_dict(client: Driver) -> None:
    created = client.create_resource(SMITH)
    assert isinstance(created, dict)
    assert created["id"] and created["meta"]["versionId"]
    assert created["name"] == SMITH["name"]
    assert "id" not in SMITH  # the caller's dict is not modified


def test_create_from_our_model(client: Driver, medplum: LocalMedplumServer) -> None:
    created = client.create_resource(Patient(name=[{"given": ["Jane"], "family": "Model"}]))
    assert created["resourceType"] == "Patient"
    assert created["name"] == [{"given": ["Jane"], "family": "Model"}]
    assert medplum.fhir_requests()[-1]["content_type"].startswith("application/fhir+json")


def test_create_from_a_fhir_resources_model(client: Driver) -> None:
    theirs = FhirResourcesPatient(name=[{"family": "Theirs"}], birthDate="1990-01-02")
    created = client.create_resource(theirs)
    assert created["name"] == [{"family": "Theirs"}]
    assert created["birthDate"] == "1990-01-02"


def test_create_as_fhir_returns_the_model(client: Driver) -> None:
    created = client.create_resource(SMITH, as_fhir=Patient)
    assert isinstance(created, Patient)
    assert created.name[0].family == "Smith"


def test_create_resource_if_none_exist_creates_once(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    mrn = {**SMITH, "identifier": [{"system": "urn:oid:1.2.3", "value": "42"}]}
    first = client.create_resource_if_none_exist(mrn, "identifier=urn:oid:1.2.3|42")
    second = client.create_resource_if_none_exist(mrn, "?identifier=urn:oid:1.2.3|42")
    assert first["id"] == second["id"]
    assert [r["status"] for r in medplum.fhir_requests()] == [201, 200]
    assert medplum.fhir_requests()[-1]["if_none_exist"] == "identifier=urn:oid:1.2.3|42"
    bundle = client.search_resources("Patient", {"identifier": "urn:oid:1.2.3|42"})
    assert len(bundle["entry"]) == 1


def test_create_resource_if_none_exist_with_an_http_identifier_system(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    mrn = {**SMITH, "identifier": [{"system": "http://hospital.example/mrn", "value": "7"}]}
    first = client.create_resource_if_none_exist(mrn, "identifier=http://hospital.example/mrn|7")
    second = client.create_resource_if_none_exist(mrn, "identifier=http://hospital.example/mrn|7")
    assert first["id"] == second["id"]
    assert [r["status"] for r in medplum.fhir_requests()] == [201, 200]


def test_create_resource_if_none_exist_with_several_matches_is_412(client: Driver) -> None:
    client.create_resource(SMITH)
    client.create_resource(SMITH)
    with pytest.raises(PreconditionFailedError):
        client.create_resource_if_none_exist(SMITH, "family=Smith")


# ---- exact decimals ----------------------------------------------------------------------------


def test_decimals_go_on_the_wire_exactly(medplum: LocalMedplumServer, flavour: str) -> None:
    """1.50 and 12500.00 leave the client as written, from a dict and from our model."""
    sent: list[bytes] = []
    creds = medplum.admin_client
    kw: dict[str, Any] = {"client_id": creds.client_id, "client_secret": creds.client_secret}
    base = medplum.base_url + "/"
    if flavour == "sync":

        def record(request: httpx.Request) -> None:
            if request.url.path.endswith("/Observation"):
                sent.append(request.read())

        with MedplumClient(
            base, http_client=httpx.Client(event_hooks={"request": [record]}), **kw
        ) as client:
            client.create_resource(weight(Decimal("1.50")))
            client.create_resource(Observation.from_server(weight(Decimal("12500.00"))))
    else:
        import asyncio

        async def arecord(request: httpx.Request) -> None:
            if request.url.path.endswith("/Observation"):
                sent.append(await request.aread())

        async def main() -> None:
            http = httpx.AsyncClient(event_hooks={"request": [arecord]})
            async with AsyncMedplumClient(base, http_client=http, **kw) as client:
                await client.create_resource(weight(Decimal("1.50")))
                await client.create_resource(Observation.from_server(weight(Decimal("12500.00"))))
            await http.aclose()

        asyncio.run(main())
    assert b'"value":1.50' in sent[0]
    assert b'"value":12500.00' in sent[1]


def test_decimal_read_back_is_exactly_the_servers_text(
    client: Driver, medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    """Medplum runs on Node: JSON.parse stores 1.50 as the double 1.5 (real Medplum too).

    What the client can promise is to keep the text the server sends, never going
    through a float: checked on the stored resource, and on a body the server is made
    to answer verbatim (1.50, 12500.00, 66.899999999999991).
    """
    created = client.create_resource(weight(Decimal("1.50")))
    raw = fhir.get(f"Observation/{created['id']}").text
    assert '"value":1.5,' in raw  # what the server stored (a JavaScript number)
    read = client.read_resource("Observation", created["id"])
    assert str(read["valueQuantity"]["value"]) == "1.5"

    verbatim = (
        '{"resourceType":"Observation","id":"x","status":"final","code":{"text":"w"},'
        '"valueQuantity":{"value":1.50},"component":[{"code":{"text":"a"},'
        '"valueQuantity":{"value":12500.00}},{"code":{"text":"b"},'
        '"valueQuantity":{"value":66.899999999999991}}]}'
    )
    medplum.fail_next(200, body=verbatim, method="GET", path_prefix="/fhir/R4/Observation/x")
    as_dict = client.read_resource("Observation", "x")
    values = [as_dict["valueQuantity"]["value"]] + [
        c["valueQuantity"]["value"] for c in as_dict["component"]
    ]
    assert [str(v) for v in values] == ["1.50", "12500.00", "66.899999999999991"]
    medplum.fail_next(200, body=verbatim, method="GET", path_prefix="/fhir/R4/Observation/x")
    model = client.read_resource("Observation", "x", as_fhir=Observation)
    assert '"value":1.50' in model.to_fhir_json().decode()


# ---- read, vread -------------------------------------------------------------------------------


def test_read_returns_a_dict_or_the_as_fhir_model(client: Driver) -> None:
    created = client.create_resource(SMITH)
    as_dict = client.read_resource("Patient", created["id"])
    assert as_dict["name"][0]["family"] == "Smith"
    ours = client.read_resource("Patient", created["id"], as_fhir=Patient)
    assert isinstance(ours, Patient) and ours.name[0].family == "Smith"
    theirs = client.read_resource("Patient", created["id"], as_fhir=FhirResourcesPatient)
    assert isinstance(theirs, FhirResourcesPatient) and theirs.id == created["id"]


def test_vread_returns_an_old_version(client: Driver) -> None:
    created = client.create_resource(SMITH)
    client.update_resource({**created, "gender": "female"})
    old = client.vread_resource("Patient", created["id"], created["meta"]["versionId"])
    assert "gender" not in old
    typed = client.vread_resource(
        "Patient", created["id"], created["meta"]["versionId"], as_fhir=Patient
    )
    assert typed.meta.version_id == created["meta"]["versionId"]


# ---- update ------------------------------------------------------------------------------------


def test_update_sends_if_match_from_meta_version_by_default(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    created = client.create_resource(SMITH)
    updated = client.update_resource({**created, "active": True})
    assert updated["active"] is True
    assert updated["meta"]["versionId"] != created["meta"]["versionId"]
    assert medplum.fhir_requests()[-1]["if_match"] == f'W/"{created["meta"]["versionId"]}"'


def test_update_with_a_stale_version_raises_precondition_failed(client: Driver) -> None:
    created = client.create_resource(SMITH)
    client.update_resource({**created, "active": True})
    with pytest.raises(PreconditionFailedError) as caught:
        client.update_resource({**created, "active": False})
    assert caught.value.status_code == 412


def test_update_if_match_false_overwrites_without_a_guard(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    created = client.create_resource(SMITH)
    client.update_resource({**created, "active": True})
    stale_but_forced = client.update_resource({**created, "active": False}, if_match=False)
    assert stale_but_forced["active"] is False
    assert medplum.fhir_requests()[-1]["if_match"] is None


def test_update_if_match_custom_value_is_sent_as_is(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    created = client.create_resource(SMITH)
    with pytest.raises(PreconditionFailedError):
        client.update_resource({**created, "active": True}, if_match='W/"not-a-version"')
    assert medplum.fhir_requests()[-1]["if_match"] == 'W/"not-a-version"'
    current = f'W/"{created["meta"]["versionId"]}"'
    assert client.update_resource({**created, "active": True}, if_match=current)["active"]


def test_update_if_match_required_refuses_a_resource_without_a_version(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    created = client.create_resource(SMITH)
    unversioned = {k: v for k, v in created.items() if k != "meta"}
    with pytest.raises(MissingVersionIdError):
        client.update_resource(unversioned, if_match="required")
    assert [r["method"] for r in medplum.fhir_requests()] == ["POST"]  # nothing was sent
    assert client.update_resource({**created, "active": True}, if_match="required")["active"]


def test_update_accepts_our_model_and_fhir_resources_models(client: Driver) -> None:
    model = client.create_resource(SMITH, as_fhir=Patient)
    model.active = False
    updated = client.update_resource(model, as_fhir=Patient)
    assert updated.active is False
    theirs = client.read_resource("Patient", updated.id, as_fhir=FhirResourcesPatient)
    theirs.gender = "female"
    assert client.update_resource(theirs)["gender"] == "female"


def test_update_with_retry_rereads_after_a_concurrent_write(
    client: Driver, fhir: httpx.Client
) -> None:
    created = client.create_resource(SMITH)
    calls = 0

    def add_email(patient: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else writes between our read and our write
            fhir.put(f"Patient/{created['id']}", json={**created, "gender": "male"})
        patient["telecom"] = [{"system": "email", "value": f"ann{calls}@example.org"}]

    result = client.update_with_retry("Patient", created["id"], add_email, max_retries=2)
    assert result.wrote is True and calls == 2
    assert result.resource["gender"] == "male"  # the concurrent write was not lost
    assert result.resource["telecom"][0]["value"] == "ann2@example.org"


def test_update_with_retry_writes_nothing_when_nothing_changed(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    created = client.create_resource(SMITH)
    result = client.update_with_retry("Patient", created["id"], lambda p: None)
    assert result.wrote is False
    assert result.version_id == created["meta"]["versionId"]
    assert [r["method"] for r in medplum.fhir_requests()] == ["POST", "GET"]


def test_patch_applies_json_patch(client: Driver) -> None:
    created = client.create_resource(SMITH)
    patched = client.patch_resource(
        "Patient", created["id"], [{"op": "add", "path": "/active", "value": True}]
    )
    assert patched["active"] is True
    typed = client.patch_resource(
        "Patient",
        created["id"],
        [{"op": "replace", "path": "/active", "value": False}],
        as_fhir=Patient,
    )
    assert typed.active is False


def test_delete_then_read_raises_gone(client: Driver) -> None:
    created = client.create_resource(SMITH)
    assert client.delete_resource("Patient", created["id"]) is None
    with pytest.raises(GoneError) as caught:
        client.read_resource("Patient", created["id"])
    assert caught.value.status_code == 410
    assert isinstance(caught.value, NotFoundError)


# ---- low level ---------------------------------------------------------------------------------


def test_low_level_get_post_put_delete(client: Driver) -> None:
    created = client.post("fhir/R4/Patient", SMITH)
    assert created["resourceType"] == "Patient"
    path = f"fhir/R4/Patient/{created['id']}"
    assert client.get(path)["id"] == created["id"]
    assert client.put(path, {**created, "active": True})["active"] is True
    found = client.get("fhir/R4/Patient", params={"_id": created["id"]})
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
    client.delete(path)
    with pytest.raises(GoneError):
        client.get(path)


def test_low_level_get_with_an_http_system_in_the_query_string(client: Driver) -> None:
    client.create_resource({**SMITH, "identifier": [{"system": "http://x.example", "value": "1"}]})
    found = client.get("fhir/R4/Patient?identifier=http://x.example|1")
    assert len(found["entry"]) == 1


# ---- errors ------------------------------------------------------------------------------------


def test_read_of_an_unknown_id_raises_not_found_with_the_outcome(client: Driver) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.read_resource("Patient", "does-not-exist")
    error = caught.value
    assert type(error) is NotFoundError and error.status_code == 404
    assert error.outcome is not None and error.outcome["resourceType"] == "OperationOutcome"
    assert error.path_template == "/fhir/R4/Patient/{id}"
    assert "does-not-exist" not in str(error)  # ids are PHI-adjacent: not in the message


def test_invalid_resource_raises_validation_error_with_the_outcome(client: Driver) -> None:
    with pytest.raises(ValidationError) as caught:
        client.create_resource({"resourceType": "Patient", "birthDate": "not-a-date"})
    error = caught.value
    assert error.status_code == 400
    assert error.outcome is not None
    assert any("Patient.birthDate" in (i.get("expression") or []) for i in error.issues)
    assert "not-a-date" not in str(error)  # submitted values stay out of the message


def test_unknown_search_parameter_raises_a_400(client: Driver) -> None:
    with pytest.raises(ValidationError) as caught:
        client.search_resources("Patient", {"not-a-param": "x"})
    assert caught.value.status_code == 400
    outcome = caught.value.outcome
    assert outcome is not None
    assert "Unknown search parameter" in outcome["issue"][0]["details"]["text"]
