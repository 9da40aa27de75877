"""History, vread, conditional writes, read_reference and rate_limit_status, end to end.

Every test runs for `MedplumClient` and `AsyncMedplumClient` (the `client` fixture) against
the local Medplum server.
"""

from __future__ import annotations

from typing import Any

import pytest

from pymedplum import (
    GoneError,
    NotFoundError,
    PreconditionFailedError,
    RateLimitError,
    UnsafeRedirectError,
)
from pymedplum._core import BaseClient
from pymedplum.fhir import Observation, Patient
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

MRN_SYSTEM = "http://example.org/mrn"


def mrn_patient(value: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": value}],
        **extra,
    }


def criteria(value: str) -> str:
    return f"identifier={MRN_SYSTEM}|{value}"


def three_versions(client: Driver) -> list[dict[str, Any]]:
    """A Patient written three times; its versions, oldest first."""
    v1 = client.create_resource(mrn_patient("h1", active=True))
    v2 = client.update_resource({**v1, "active": False})
    v3 = client.update_resource({**v2, "gender": "female"})
    return [v1, v2, v3]


# ---- history and vread --------------------------------------------------------------------------


def test_history_lists_every_version_newest_first(client: Driver) -> None:
    versions = three_versions(client)
    history = client.read_history("Patient", versions[0]["id"])
    assert history["type"] == "history"
    listed = [e["resource"]["meta"]["versionId"] for e in history["entry"]]
    assert listed == [v["meta"]["versionId"] for v in reversed(versions)]


def test_vread_returns_each_version_listed_in_the_history(client: Driver) -> None:
    versions = three_versions(client)
    pid = versions[0]["id"]
    for entry in client.read_history("Patient", pid)["entry"]:
        listed = entry["resource"]
        assert client.vread_resource("Patient", pid, listed["meta"]["versionId"]) == listed
    first = client.vread_resource("Patient", pid, versions[0]["meta"]["versionId"], Patient)
    assert isinstance(first, Patient) and first.active is True and first.gender is None


def test_history_pages_yield_every_version_as_models(client: Driver) -> None:
    versions = three_versions(client)
    found = client.read_history_pages("Patient", versions[0]["id"], Patient)
    assert all(isinstance(v, Patient) for v in found)
    assert [v.meta.version_id for v in found] == [
        v["meta"]["versionId"] for v in reversed(versions)
    ]


def test_history_after_delete_shows_the_delete_and_old_versions_stay_readable(
    client: Driver,
) -> None:
    versions = three_versions(client)
    pid = versions[0]["id"]
    client.delete_resource("Patient", pid)
    with pytest.raises(GoneError):
        client.read_resource("Patient", pid)
    bundle = client.read_history("Patient", pid, return_bundle=True, as_fhir=Patient)
    assert [r.status_code for r in bundle.entry_results()] == [410, 200, 200, 200]
    assert len(client.read_history_pages("Patient", pid)) == 3  # the delete has no version
    old = client.vread_resource("Patient", pid, versions[1]["meta"]["versionId"])
    assert old["active"] is False


def test_history_of_a_resource_that_never_existed_is_not_found(client: Driver) -> None:
    with pytest.raises(NotFoundError):
        client.read_history("Patient", "00000000-0000-4000-8000-00000000dead")


def test_vread_of_an_unknown_version_is_not_found(client: Driver) -> None:
    created = client.create_resource(mrn_patient("h2"))
    with pytest.raises(NotFoundError):
        client.vread_resource("Patient", created["id"], "00000000-0000-4000-8000-00000000beef")


# ---- upsert_resource ----------------------------------------------------------------------------


def test_upsert_creates_then_updates_the_same_resource(client: Driver) -> None:
    created = client.upsert_resource(mrn_patient("u1", active=True), criteria("u1"))
    updated = client.upsert_resource(
        mrn_patient("u1", active=False), {"identifier": f"{MRN_SYSTEM}|u1"}
    )
    assert updated["id"] == created["id"]
    assert updated["active"] is False
    assert updated["meta"]["versionId"] != created["meta"]["versionId"]
    found = client.search_resources("Patient", {"identifier": f"{MRN_SYSTEM}|u1"})
    assert len(found["entry"]) == 1


def test_upsert_sends_one_conditional_put(client: Driver, medplum: LocalMedplumServer) -> None:
    client.upsert_resource(Patient.model_validate(mrn_patient("u2")), criteria("u2"))
    logged = medplum.fhir_requests()
    assert [(r["method"], r["path"]) for r in logged] == [("PUT", "/fhir/R4/Patient")]
    assert logged[0]["query"] == {"identifier": [f"{MRN_SYSTEM}|u2"]}


def test_upsert_returns_a_model(client: Driver) -> None:
    result = client.upsert_resource(mrn_patient("u3"), criteria("u3"), as_fhir=Patient)
    assert isinstance(result, Patient) and result.id


def test_upsert_of_an_unchanged_resource_keeps_its_version(client: Driver) -> None:
    first = client.upsert_resource(mrn_patient("u4", active=True), criteria("u4"))
    again = client.upsert_resource(mrn_patient("u4", active=True), criteria("u4"))
    assert again["meta"]["versionId"] == first["meta"]["versionId"]


def test_upsert_with_several_matches_is_refused(client: Driver) -> None:
    client.create_resource(mrn_patient("dup"))
    client.create_resource(mrn_patient("dup"))
    with pytest.raises(PreconditionFailedError):
        client.upsert_resource(mrn_patient("dup", active=True), criteria("dup"))


def test_upsert_without_criteria_sends_nothing(client: Driver, medplum: LocalMedplumServer) -> None:
    client.create_resource(mrn_patient("only"))  # one Patient: PUT Patient would overwrite it
    medplum.clear_requests()
    with pytest.raises(ValueError, match="every Patient"):
        client.upsert_resource(mrn_patient("other"), "")
    assert medplum.fhir_requests() == []


# ---- conditional patch and delete ---------------------------------------------------------------


def test_conditional_patch_patches_the_match(client: Driver) -> None:
    created = client.create_resource(mrn_patient("p1", active=True))
    patched = client.conditional_patch(
        "Patient", criteria("p1"), [{"op": "replace", "path": "/active", "value": False}]
    )
    assert patched["id"] == created["id"] and patched["active"] is False


def test_conditional_patch_without_a_match_is_not_found(client: Driver) -> None:
    with pytest.raises(NotFoundError):
        client.conditional_patch(
            "Patient", criteria("none"), [{"op": "add", "path": "/active", "value": True}]
        )


def test_conditional_patch_with_several_matches_is_refused(client: Driver) -> None:
    client.create_resource(mrn_patient("p2"))
    client.create_resource(mrn_patient("p2"))
    with pytest.raises(PreconditionFailedError):
        client.conditional_patch(
            "Patient", criteria("p2"), [{"op": "add", "path": "/active", "value": True}]
        )


def test_conditional_delete_deletes_the_match_and_tolerates_none(client: Driver) -> None:
    created = client.create_resource(mrn_patient("d1"))
    assert client.conditional_delete("Patient", criteria("d1")) is None
    with pytest.raises(GoneError):
        client.read_resource("Patient", created["id"])
    client.conditional_delete("Patient", criteria("d1"))  # no match: nothing to do


def test_conditional_delete_with_several_matches_deletes_nothing(client: Driver) -> None:
    a = client.create_resource(mrn_patient("d2"))
    client.create_resource(mrn_patient("d2"))
    with pytest.raises(PreconditionFailedError):
        client.conditional_delete("Patient", criteria("d2"))
    assert client.read_resource("Patient", a["id"])["id"] == a["id"]


# ---- read_reference -----------------------------------------------------------------------------


def test_read_reference_follows_an_observation_subject(client: Driver) -> None:
    patient = client.create_resource(mrn_patient("r1"))
    observation = client.create_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{patient['id']}", "type": "Patient"},
        },
        as_fhir=Observation,
    )
    assert client.read_reference(observation.subject) == patient
    typed = client.read_reference(f"Patient/{patient['id']}", Patient)
    assert isinstance(typed, Patient) and typed.id == patient["id"]


def test_read_reference_of_an_absolute_url_on_the_server(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    patient = client.create_resource(mrn_patient("r2"))
    url = f"{medplum.fhir_base_url.rstrip('/')}/Patient/{patient['id']}"
    assert client.read_reference({"reference": url})["id"] == patient["id"]


def test_read_reference_of_a_version(client: Driver) -> None:
    versions = three_versions(client)
    first = versions[0]
    ref = f"Patient/{first['id']}/_history/{first['meta']['versionId']}"
    assert client.read_reference(ref) == first


def test_read_reference_refuses_before_sending(client: Driver, medplum: LocalMedplumServer) -> None:
    for bad in ("#contained", {"identifier": {"value": "1"}}, "Patient/a/b"):
        with pytest.raises(ValueError):
            client.read_reference(bad)
    with pytest.raises(UnsafeRedirectError):
        client.read_reference("https://elsewhere.example/fhir/R4/Patient/1")
    assert medplum.fhir_requests() == []


def test_read_reference_of_a_deleted_resource_is_gone(client: Driver) -> None:
    patient = client.create_resource(mrn_patient("r3"))
    client.delete_resource("Patient", patient["id"])
    with pytest.raises(GoneError):
        client.read_reference(f"Patient/{patient['id']}")


# ---- rate_limit_status --------------------------------------------------------------------------


def _require_core_hook() -> None:
    if not hasattr(BaseClient, "_last_rate_limit"):
        pytest.fail(
            "pymedplum._core does not record the RateLimit header yet: apply the "
            "BaseClient._last_rate_limit / CallState.after_response patch from the issue-4 "
            "history report"
        )


def test_rate_limit_status_reports_the_servers_budgets(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    _require_core_hook()
    if not hasattr(medplum, "set_rate_limit"):
        pytest.skip("the local server cannot set its RateLimit budgets")
    assert client.rate_limit_status() is None
    medplum.set_rate_limit(requests=500, fhir_interactions=120, reset_seconds=42)
    client.create_resource(mrn_patient("rl"))
    status = client.rate_limit_status()
    assert status is not None
    assert status.requests is not None and status.requests.remaining == 500
    quota = status.fhir_interactions
    assert quota is not None and (quota.remaining, quota.reset_seconds) == (120, 42)


def test_rate_limit_status_after_a_429(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    _require_core_hook()
    medplum.rate_limit_next(count=None, path_prefix="/fhir/R4/Patient")
    with pytest.raises(RateLimitError):
        client.search_resources("Patient", {"identifier": "x"})
    status = client.rate_limit_status()
    assert status is not None and status.exhausted
    assert status.fhir_interactions is not None and status.fhir_interactions.reset_seconds == 60
    assert no_sleep == [60.0, 60.0, 60.0]
