"""Accounts, ProjectMembership access and invitations: what goes on the wire, what comes back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pymedplum import (
    MergeResult,
    MissingVersionIdError,
    OperationOutcomeError,
    PreconditionFailedError,
    build_merged_access,
    get_project_membership_access_parameter,
    get_project_membership_access_policy_id,
    make_project_membership_access,
    merged_equals_remote,
    normalize_access_policy_id,
    normalize_access_policy_reference,
    partition_access,
    validate_managed_access,
)

from .conftest import Driver, FakeMedplum, header

MEMBERSHIP = "/fhir/R4/ProjectMembership/m1"
POLICY = "practice-policy"


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def entry(org: str, policy: str = POLICY) -> dict[str, Any]:
    return make_project_membership_access(f"AccessPolicy/{policy}", {"organization": org})


def membership(access: list[dict[str, Any]] | None, version: str | None = "1") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "ProjectMembership", "id": "m1"}
    if version is not None:
        resource["meta"] = {"versionId": version}
    if access is not None:
        resource["access"] = access
    return resource


def serve(fake: FakeMedplum, *states: dict[str, Any]) -> None:
    """Queue GETs of the membership; every PUT echoes its body with the next version."""
    fake.script("GET", MEMBERSHIP, *(httpx.Response(200, json=s) for s in states))

    def echo(request: httpx.Request) -> httpx.Response:
        written = body(request)
        written["meta"] = {"versionId": "new"}
        return httpx.Response(200, json=written)

    fake.script("PUT", MEMBERSHIP, *([echo] * 4))


def puts(fake: FakeMedplum) -> list[httpx.Request]:
    return [r for r in fake.api_requests if r.method == "PUT"]


# ---------------------------------------------------------------- $set-accounts


def test_set_accounts_posts_parameters(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    answer = {"resourceType": "Parameters", "parameter": [{"name": "resourcesUpdated"}]}
    fake.script("POST", "/fhir/R4/Patient/123/$set-accounts", httpx.Response(200, json=answer))
    result = make().set_accounts("Patient/123", ["Organization/a", "Practitioner/b"])
    sent = fake.api_requests[0]
    assert body(sent) == {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "accounts", "valueReference": {"reference": "Organization/a"}},
            {"name": "accounts", "valueReference": {"reference": "Practitioner/b"}},
        ],
    }
    assert header(sent, "prefer") is None
    assert result == answer


def test_set_accounts_propagate_async_asks_for_a_job(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    accepted = {
        "resourceType": "OperationOutcome",
        "id": "accepted",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": "x"}],
    }
    fake.script("POST", "/fhir/R4/Patient/123/$set-accounts", httpx.Response(202, json=accepted))
    result = make().set_accounts("Patient/123", "Organization/a", propagate=True, prefer_async=True)
    sent = fake.api_requests[0]
    assert header(sent, "prefer") == "respond-async"
    assert body(sent)["parameter"][-1] == {"name": "propagate", "valueBoolean": True}
    assert result == accepted


def test_set_accounts_prefer_async_needs_propagate(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().set_accounts("Patient/123", "Organization/a", prefer_async=True)
    sent = fake.api_requests[0]
    assert header(sent, "prefer") is None
    assert [p["name"] for p in body(sent)["parameter"]] == ["accounts"]


@pytest.mark.parametrize("ref", ["Patient", "Patient/1/2", "patient/1", "Patient/bad id"])
def test_set_accounts_refuses_a_bad_resource_ref(
    make: Callable[..., Driver], fake: FakeMedplum, ref: str
) -> None:
    with pytest.raises(ValueError):
        make().set_accounts(ref, "Organization/a")
    assert fake.api_requests == []


def test_set_accounts_refuses_an_account_that_is_not_a_reference(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(ValueError, match="Organization/id"):
        make().set_accounts("Patient/1", ["org-1"])
    assert fake.api_requests == []


def test_accounts_on_create_stamps_meta_accounts(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().create_resource(
        {"resourceType": "Patient", "meta": {"tag": [{"code": "t"}]}},
        accounts=["Organization/a", "Organization/b"],
    )
    assert body(fake.api_requests[0])["meta"] == {
        "tag": [{"code": "t"}],
        "accounts": [{"reference": "Organization/a"}, {"reference": "Organization/b"}],
    }


# ---------------------------------------------------------------- merge / add / remove


def test_merge_replaces_the_managed_slice_and_keeps_the_rest(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    other = entry("Organization/x", policy="someone-else")
    serve(fake, membership([entry("Organization/a"), other], version="7"))
    result = make().merge_project_membership_access(
        "ProjectMembership/m1",
        managed_access=[entry("Organization/b"), entry("Organization/c")],
        managed_policy_ids={POLICY},
    )
    (put,) = puts(fake)
    assert header(put, "if-match") == 'W/"7"'
    assert body(put)["access"] == [other, entry("Organization/b"), entry("Organization/c")]
    assert result == MergeResult(True, "new", 2, 1)


def test_merge_sends_no_put_when_nothing_changes(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    serve(fake, membership([entry("Organization/a")], version="3"))
    result = make().merge_project_membership_access(
        "m1", managed_access=[entry("Organization/a")], managed_policy_ids={POLICY}
    )
    assert puts(fake) == []
    assert result == MergeResult(False, "3", 1, 0)


def test_merge_of_nothing_into_no_access_sends_no_put(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    serve(fake, membership(None))
    result = make().merge_project_membership_access(
        "m1", managed_access=[], managed_policy_ids={POLICY}
    )
    assert puts(fake) == [] and result.updated is False


def test_merge_with_force_writes_anyway(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    serve(fake, membership([entry("Organization/a")]))
    result = make().merge_project_membership_access(
        "m1", managed_access=[entry("Organization/a")], managed_policy_ids={POLICY}, force=True
    )
    assert len(puts(fake)) == 1 and result.updated is True


def test_merge_rereads_and_reapplies_after_a_412(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    concurrent = entry("Organization/x", policy="someone-else")
    fake.script(
        "GET",
        MEMBERSHIP,
        httpx.Response(200, json=membership([], version="1")),
        httpx.Response(200, json=membership([concurrent], version="2")),
    )
    fake.script(
        "PUT",
        MEMBERSHIP,
        httpx.Response(412, json={"resourceType": "OperationOutcome", "issue": []}),
        lambda r: httpx.Response(200, json={**body(r), "meta": {"versionId": "3"}}),
    )
    result = make().merge_project_membership_access(
        "m1", managed_access=[entry("Organization/a")], managed_policy_ids={POLICY}
    )
    first, second = puts(fake)
    assert header(first, "if-match") == 'W/"1"' and header(second, "if-match") == 'W/"2"'
    assert body(second)["access"] == [concurrent, entry("Organization/a")]
    assert result == MergeResult(True, "3", 1, 1)


def test_merge_raises_after_max_retries_412s(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", MEMBERSHIP, *[httpx.Response(200, json=membership([]))] * 3)
    stale = httpx.Response(412, json={"resourceType": "OperationOutcome", "issue": []})
    fake.script("PUT", MEMBERSHIP, stale, stale, stale)
    with pytest.raises(PreconditionFailedError):
        make().merge_project_membership_access(
            "m1",
            managed_access=[entry("Organization/a")],
            managed_policy_ids={POLICY},
            max_retries=2,
        )
    assert len(puts(fake)) == 3


def test_merge_never_writes_without_a_version(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    serve(fake, membership([], version=None))
    with pytest.raises(MissingVersionIdError):
        make().merge_project_membership_access(
            "m1", managed_access=[entry("Organization/a")], managed_policy_ids={POLICY}
        )
    assert puts(fake) == []


@pytest.mark.parametrize(
    ("managed", "ids", "error"),
    [
        ([entry("Organization/a", policy="other")], {POLICY}, "not in managed_policy_ids"),
        ([{"parameter": []}], {POLICY}, "no AccessPolicy"),
        ([entry("Organization/a")], set(), "empty"),
    ],
)
def test_merge_refuses_bad_input_before_any_request(
    make: Callable[..., Driver],
    fake: FakeMedplum,
    managed: list[dict[str, Any]],
    ids: set[str],
    error: str,
) -> None:
    with pytest.raises(ValueError, match=error):
        make().merge_project_membership_access("m1", managed_access=managed, managed_policy_ids=ids)
    assert fake.api_requests == []


def test_merge_refuses_a_membership_id_of_another_type(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(ValueError, match="membership_id"):
        make().merge_project_membership_access(
            "Patient/m1", managed_access=[], managed_policy_ids={POLICY}
        )


def test_add_appends_and_keeps_the_order(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    other = entry("Organization/x", policy="someone-else")
    serve(fake, membership([entry("Organization/a"), other]))
    result = make().add_project_membership_access_entry(
        "m1", entry("Organization/b"), managed_policy_ids={POLICY}
    )
    (put,) = puts(fake)
    assert body(put)["access"] == [entry("Organization/a"), other, entry("Organization/b")]
    assert result == MergeResult(True, "new", 2, 1)


def test_add_of_a_present_entry_sends_no_put(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    # The same entry with its keys in another order is still the same entry.
    present = {"parameter": entry("Organization/a")["parameter"], "policy": entry("x")["policy"]}
    serve(fake, membership([present]))
    result = make().add_project_membership_access_entry(
        "m1", entry("Organization/a"), managed_policy_ids={POLICY}
    )
    assert puts(fake) == [] and result.updated is False


def test_remove_drops_only_managed_matches(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    unmanaged_twin = entry("Organization/a", policy="someone-else")
    serve(fake, membership([unmanaged_twin, entry("Organization/a"), entry("Organization/b")]))
    result = make().remove_project_membership_access_entry(
        "m1", entry("Organization/a"), managed_policy_ids={POLICY}
    )
    (put,) = puts(fake)
    assert body(put)["access"] == [unmanaged_twin, entry("Organization/b")]
    assert result == MergeResult(True, "new", 1, 1)


def test_remove_of_an_absent_entry_sends_no_put(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    serve(fake, membership([entry("Organization/b")]))
    result = make().remove_project_membership_access_entry(
        "m1", entry("Organization/a"), managed_policy_ids={POLICY}
    )
    assert puts(fake) == [] and result == MergeResult(False, "1", 1, 0)


def test_access_entry_models_are_accepted(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    from pymedplum.fhir import ProjectMembershipAccess, ProjectMembershipAccessParameter, Reference

    model = ProjectMembershipAccess(
        policy=Reference(reference=f"AccessPolicy/{POLICY}"),
        parameter=[
            ProjectMembershipAccessParameter(
                name="organization", value_reference=Reference(reference="Organization/a")
            )
        ],
    )
    serve(fake, membership([]))
    make().add_project_membership_access_entry("m1", model, managed_policy_ids={POLICY})
    assert body(puts(fake)[0])["access"] == [entry("Organization/a")]


# ---------------------------------------------------------------- invite


def test_invite_user_posts_the_invite_request(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    created = {"resourceType": "ProjectMembership", "id": "pm-1"}
    fake.script("POST", "/admin/projects/p1/invite", httpx.Response(200, json=created))
    result = make().invite_user(
        "p1",
        "Practitioner",
        "Alice",
        "Smith",
        email="alice@example.com",
        send_email=False,
        access_policy="ap-1",
    )
    sent = fake.api_requests[0]
    assert sent.url.path == "/admin/projects/p1/invite"
    assert header(sent, "content-type") == "application/json"
    assert body(sent) == {
        "resourceType": "Practitioner",
        "firstName": "Alice",
        "lastName": "Smith",
        "email": "alice@example.com",
        "sendEmail": False,
        "accessPolicy": {"reference": "AccessPolicy/ap-1"},
    }
    assert result == created


def test_invite_user_raises_on_a_200_operation_outcome(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    # Medplum answers 200 with an error outcome when the invitation email fails.
    outcome = {
        "resourceType": "OperationOutcome",
        "id": "ok",
        "issue": [{"severity": "error", "code": "exception"}],
    }
    fake.script("POST", "/admin/projects/p1/invite", httpx.Response(200, json=outcome))
    with pytest.raises(OperationOutcomeError) as caught:
        make().invite_user("p1", "Patient", "Bo", "Li", email="bo@example.com")
    assert caught.value.outcome == outcome and "alice" not in str(caught.value)


def test_invite_user_needs_an_email_or_external_id(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(ValueError, match="email or an external_id"):
        make().invite_user("p1", "Practitioner", "Alice", "Smith")
    assert fake.api_requests == []


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    "policy",
    ["abc", "AccessPolicy/abc", {"reference": "AccessPolicy/abc"}],
)
def test_policy_shapes_normalize_alike(policy: Any) -> None:
    assert normalize_access_policy_reference(policy) == {"reference": "AccessPolicy/abc"}
    assert normalize_access_policy_id(policy) == "abc"


def test_policy_reference_model_normalizes() -> None:
    from pymedplum.fhir import Reference

    assert normalize_access_policy_id(Reference(reference="AccessPolicy/abc")) == "abc"


@pytest.mark.parametrize("policy", ["", "Organization/abc", {"display": "x"}, "bad id"])
def test_bad_policies_are_refused(policy: Any) -> None:
    with pytest.raises(ValueError):
        normalize_access_policy_id(policy)


def test_parameter_values_become_references_or_strings() -> None:
    built = make_project_membership_access(
        "p", {"organization": "Organization/a", "status": "active", "team": {"reference": "X/1"}}
    )
    assert built["parameter"] == [
        {"name": "organization", "valueReference": {"reference": "Organization/a"}},
        {"name": "status", "valueString": "active"},
        {"name": "team", "valueReference": {"reference": "X/1"}},
    ]


def test_inspecting_entries_tolerates_malformed_ones() -> None:
    assert get_project_membership_access_policy_id(entry("Organization/a")) == POLICY
    assert get_project_membership_access_policy_id({"policy": {}}) is None
    assert get_project_membership_access_policy_id({"policy": {"reference": "Bot/1"}}) is None
    assert get_project_membership_access_parameter(entry("Organization/a"), "organization") == {
        "name": "organization",
        "valueReference": {"reference": "Organization/a"},
    }
    assert get_project_membership_access_parameter(entry("Organization/a"), "patient") is None


def test_partition_and_build_keep_orders() -> None:
    a, b, x, broken = entry("O/a"), entry("O/b"), entry("O/x", policy="other"), {"policy": {}}
    managed, untouched = partition_access([a, x, b, broken], {POLICY})
    assert managed == [a, b] and untouched == [x, broken]
    assert build_merged_access(untouched, [b]) == [x, broken, b]


def test_merged_equals_remote_ignores_key_order_not_list_order() -> None:
    a, b = entry("O/a"), entry("O/b")
    reordered = {"parameter": a["parameter"], "policy": a["policy"]}
    assert merged_equals_remote([a, b], [reordered, b])
    assert not merged_equals_remote([a, b], [b, a])


def test_validate_managed_access_names_the_offender() -> None:
    with pytest.raises(ValueError, match=r"managed_access\[1\]: AccessPolicy/other"):
        validate_managed_access([entry("O/a"), entry("O/b", policy="other")], {POLICY})
