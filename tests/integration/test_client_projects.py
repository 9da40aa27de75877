"""Both clients against the local Medplum server: accounts, `$set-accounts`, async jobs,
ProjectMembership access and invitations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pymedplum import (
    AuthorizationError,
    MergeResult,
    UnsafeRedirectError,
    get_resource_accounts,
    make_project_membership_access,
    resource_has_account,
)
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

POLICY = "practice-policy"


def organization(client: Driver, name: str) -> str:
    created = client.create_resource({"resourceType": "Organization", "name": name})
    return f"Organization/{created['id']}"


def patient_with_observation(client: Driver) -> tuple[dict[str, Any], dict[str, Any]]:
    patient = client.create_resource({"resourceType": "Patient", "name": [{"family": "Acct"}]})
    observation = client.create_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "note"},
            "subject": {"reference": f"Patient/{patient['id']}"},
        }
    )
    return patient, observation


# ---- accounts= on writes ------------------------------------------------------------------------


def test_accounts_on_create_and_update_are_stored(client: Driver) -> None:
    org_a, org_b = organization(client, "A"), organization(client, "B")
    created = client.create_resource({"resourceType": "Patient"}, accounts=[org_a, org_b])
    stored = client.read_resource("Patient", created["id"])
    assert get_resource_accounts(stored) == [org_a, org_b]
    client.update_resource(stored, accounts=org_b)
    assert get_resource_accounts(client.read_resource("Patient", created["id"])) == [org_b]


# ---- $set-accounts ------------------------------------------------------------------------------


def test_set_accounts_propagates_to_the_compartment(client: Driver) -> None:
    org = organization(client, "Tenant")
    patient, observation = patient_with_observation(client)
    result = client.set_accounts(f"Patient/{patient['id']}", org, propagate=True)
    assert result["parameter"] == [{"name": "resourcesUpdated", "valueInteger": 2}]
    assert resource_has_account(client.read_resource("Patient", patient["id"]), org)
    assert resource_has_account(client.read_resource("Observation", observation["id"]), org)


def test_set_accounts_as_a_job_then_wait_for_it(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    medplum.set_async_jobs(polls=2)
    org = organization(client, "Tenant")
    patient, observation = patient_with_observation(client)
    started = client.set_accounts(
        f"Patient/{patient['id']}", org, propagate=True, prefer_async=True
    )
    assert started["resourceType"] == "OperationOutcome"
    assert client.get_async_job_status(started)["status"] in ("accepted", "active")
    job = client.wait_for_async_job(started, poll_interval=0.5, timeout=60)
    assert job["status"] == "completed"
    assert job["output"]["parameter"] == [{"name": "resourcesUpdated", "valueInteger": 2}]
    assert no_sleep and set(no_sleep) == {0.5}
    assert get_resource_accounts(client.read_resource("Observation", observation["id"])) == [org]


def test_waiting_for_a_job_times_out(client: Driver, medplum: LocalMedplumServer) -> None:
    medplum.set_async_jobs(polls=100)
    patient, _ = patient_with_observation(client)
    started = client.set_accounts(
        f"Patient/{patient['id']}", "Organization/x", propagate=True, prefer_async=True
    )
    with pytest.raises(TimeoutError):
        client.wait_for_async_job(started, timeout=0)


def test_a_job_url_on_another_origin_is_never_polled(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    with pytest.raises(UnsafeRedirectError):
        client.get_async_job_status("http://127.0.0.2:1/fhir/R4/job/abc/status")
    assert medplum.fhir_requests() == []


def test_set_accounts_needs_a_project_admin(make_client: Callable[..., Driver]) -> None:
    admin, user = make_client(), make_client(user=True)
    patient = admin.create_resource({"resourceType": "Patient"})
    with pytest.raises(AuthorizationError):
        user.set_accounts(f"Patient/{patient['id']}", "Organization/x")


# ---- ProjectMembership.access -------------------------------------------------------------------


def access(org: str) -> dict[str, Any]:
    return make_project_membership_access(f"AccessPolicy/{POLICY}", {"organization": org})


@pytest.fixture
def alice(client: Driver, medplum: LocalMedplumServer) -> str:
    """Alice's membership id, with an AccessPolicy `practice-policy` to bind."""
    client.update_resource(
        {
            "resourceType": "AccessPolicy",
            "id": POLICY,
            "name": "practice",
            "resource": [{"resourceType": "Patient"}],
        }
    )
    return medplum.practitioners["alice"].membership.split("/")[1]


def membership_writes(medplum: LocalMedplumServer, member: str) -> int:
    return sum(
        1
        for r in medplum.fhir_requests()
        if r["method"] == "PUT" and r["path"].endswith(f"/ProjectMembership/{member}")
    )


def test_merge_add_remove_round_trip(
    client: Driver, medplum: LocalMedplumServer, alice: str
) -> None:
    foreign = make_project_membership_access("AccessPolicy/other", {"x": "y"})
    current = client.read_resource("ProjectMembership", alice)
    client.update_resource({**current, "access": [foreign]})

    merged = client.merge_project_membership_access(
        f"ProjectMembership/{alice}",
        managed_access=[access("Organization/a"), access("Organization/b")],
        managed_policy_ids={POLICY},
    )
    assert (merged.updated, merged.managed_count, merged.untouched_count) == (True, 2, 1)
    stored = client.read_resource("ProjectMembership", alice)
    assert stored["access"] == [foreign, access("Organization/a"), access("Organization/b")]
    assert merged.version_id == stored["meta"]["versionId"]

    added = client.add_project_membership_access_entry(
        alice, access("Organization/c"), managed_policy_ids={POLICY}
    )
    removed = client.remove_project_membership_access_entry(
        alice, access("Organization/a"), managed_policy_ids={POLICY}
    )
    assert added.managed_count == 3 and removed.managed_count == 2
    assert client.read_resource("ProjectMembership", alice)["access"] == [
        foreign,
        access("Organization/b"),
        access("Organization/c"),
    ]


def test_an_unchanged_merge_sends_no_write(
    client: Driver, medplum: LocalMedplumServer, alice: str
) -> None:
    desired = [access("Organization/a")]
    client.merge_project_membership_access(
        alice, managed_access=desired, managed_policy_ids={POLICY}
    )
    medplum.clear_requests()
    again = client.merge_project_membership_access(
        alice, managed_access=desired, managed_policy_ids={POLICY}
    )
    assert again == MergeResult(False, again.version_id, 1, 0)
    assert membership_writes(medplum, alice) == 0


def test_a_412_is_retried_against_a_fresh_read(
    client: Driver, medplum: LocalMedplumServer, alice: str
) -> None:
    medplum.fail_next(412, method="PUT", path_prefix="/fhir/R4/ProjectMembership")
    result = client.add_project_membership_access_entry(
        alice, access("Organization/a"), managed_policy_ids={POLICY}
    )
    assert result.updated
    assert membership_writes(medplum, alice) == 2
    assert client.read_resource("ProjectMembership", alice)["access"] == [access("Organization/a")]


# ---- invite -------------------------------------------------------------------------------------


def test_invite_user_creates_a_membership(client: Driver, medplum: LocalMedplumServer) -> None:
    membership = client.invite_user(
        medplum.project_id,
        "Practitioner",
        "Dana",
        "Scully",
        email="dana@example.com",
        send_email=False,
    )
    assert membership["resourceType"] == "ProjectMembership"
    stored = client.read_resource("ProjectMembership", membership["id"])
    assert stored["profile"]["reference"].startswith("Practitioner/")
    invite = [r for r in medplum.requests() if r["path"].endswith("/invite")]
    assert [r["status"] for r in invite] == [200]


# ---- admin calls act as the client (membership-admin-under-obo) ------------------------------


def test_membership_access_helpers_act_as_the_client_under_a_default_obo(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    restricted = medplum.practitioners["restricted"].membership
    client = make_client(default_on_behalf_of=restricted)
    entry = make_project_membership_access(
        f"AccessPolicy/{POLICY}", {"organization": "Organization/x"}
    )

    def merge() -> Any:
        return client.client.merge_project_membership_access(
            restricted, managed_access=[entry], managed_policy_ids={POLICY}
        )

    result = client.in_obo(restricted, merge)  # ambient and default: both ignored
    assert result.updated
    calls = medplum.fhir_requests()
    assert [(r["method"], r["status"]) for r in calls] == [("GET", 200), ("PUT", 200)]
    assert {r["on_behalf_of"] for r in calls} == {None}
    assert {r["acting_membership"] for r in calls} == {medplum.admin_client.membership}


def test_membership_access_helper_with_an_explicit_obo_is_refused_by_the_server(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    restricted = medplum.practitioners["restricted"].membership
    with pytest.raises(AuthorizationError):
        client.add_project_membership_access_entry(
            restricted,
            make_project_membership_access(f"AccessPolicy/{POLICY}", {"organization": "O/x"}),
            managed_policy_ids={POLICY},
            on_behalf_of=restricted,
        )
    assert medplum.fhir_requests()[-1]["on_behalf_of"] == restricted


def test_invitations_act_as_the_client_under_a_default_obo(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    restricted = medplum.practitioners["restricted"].membership
    client = make_client(default_on_behalf_of=restricted)
    invited = client.invite_user(
        medplum.project_id,
        "Practitioner",
        "Fox",
        "Mulder",
        email="fox@example.com",
        send_email=False,
    )
    assert invited["resourceType"] == "ProjectMembership"
    raw = client.post(
        f"admin/projects/{medplum.project_id}/invite",
        {
            "resourceType": "Practitioner",
            "firstName": "W",
            "lastName": "Skinner",
            "email": "walter@example.com",
            "sendEmail": False,
        },
    )
    assert raw["resourceType"] == "ProjectMembership"
    invites = [r for r in medplum.requests() if r["path"].endswith("/invite")]
    assert [(r["status"], r["on_behalf_of"]) for r in invites] == [(200, None), (200, None)]
    with pytest.raises(AuthorizationError):  # an explicit value is still sent
        client.invite_user(
            medplum.project_id,
            "Practitioner",
            "J",
            "Doggett",
            email="john@example.com",
            send_email=False,
            on_behalf_of=restricted,
        )


def test_set_accounts_acts_as_the_client_under_a_default_obo(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    admin = make_client()
    patient, _ = patient_with_observation(admin)
    org = organization(admin, "Tenant")
    client = make_client(default_on_behalf_of=medplum.practitioners["restricted"].membership)
    client.set_accounts(f"Patient/{patient['id']}", org)
    assert get_resource_accounts(admin.read_resource("Patient", patient["id"])) == [org]
