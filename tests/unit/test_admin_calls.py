"""Admin calls act as the client: no ambient or default on-behalf-of, an explicit one is sent.

Medplum answers 403 to admin work (reading or writing a ProjectMembership, `$set-accounts`,
the `admin/` API) made on behalf of a restricted member (cassette
membership-admin-under-obo), so these calls never pick up `client.on_behalf_of(...)` or
`default_on_behalf_of`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pymedplum import make_project_membership_access
from pymedplum._obo import OBO_HEADER, is_admin_path

from .conftest import Driver, FakeMedplum, header

AMBIENT = "ProjectMembership/ambient"
DEFAULT = "ProjectMembership/default"
EXPLICIT = "ProjectMembership/explicit"
MEMBERSHIP = "/fhir/R4/ProjectMembership/m1"
ENTRY = make_project_membership_access("AccessPolicy/p", {"organization": "Organization/a"})


def serve_membership(fake: FakeMedplum) -> None:
    state = {"resourceType": "ProjectMembership", "id": "m1", "meta": {"versionId": "1"}}
    fake.script("GET", MEMBERSHIP, *(httpx.Response(200, json=state) for _ in range(3)))


def invite_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"resourceType": "ProjectMembership", "id": "new"})


ADMIN_CALLS: dict[str, Callable[[Driver, dict[str, Any]], object]] = {
    "merge_project_membership_access": lambda api, kw: api.merge_project_membership_access(
        "m1", managed_access=[ENTRY], managed_policy_ids={"p"}, **kw
    ),
    "add_project_membership_access_entry": lambda api, kw: api.add_project_membership_access_entry(
        "m1", ENTRY, managed_policy_ids={"p"}, **kw
    ),
    "remove_project_membership_access_entry": lambda api, kw: (
        api.remove_project_membership_access_entry(
            "m1", ENTRY, managed_policy_ids={"p"}, force=True, **kw
        )
    ),
    "invite_user": lambda api, kw: api.invite_user(
        "proj", "Practitioner", "A", "B", email="a@example.com", **kw
    ),
    "set_accounts": lambda api, kw: api.set_accounts("Patient/1", "Organization/a", **kw),
    "expunge_resource": lambda api, kw: api.expunge_resource("Patient", "1", **kw),
    "get admin/": lambda api, kw: api.get("admin/projects/proj", **kw),
    "post admin/": lambda api, kw: api.post("admin/projects/proj/secrets", [], **kw),
    "put /admin/": lambda api, kw: api.put("/admin/projects/proj/sites", [], **kw),
    "delete absolute admin/": lambda api, kw: api.delete(
        "https://medplum.test/admin/projects/proj/members/x", **kw
    ),
}


def prepare(fake: FakeMedplum) -> None:
    serve_membership(fake)
    fake.script("POST", "/admin/projects/proj/invite", invite_answer)


def obo_sent(fake: FakeMedplum) -> list[str | None]:
    return [header(r, OBO_HEADER) for r in fake.api_requests]


@pytest.mark.parametrize("call", sorted(ADMIN_CALLS))
def test_admin_call_ignores_the_ambient_and_default_on_behalf_of(
    make: Callable[..., Driver], fake: FakeMedplum, call: str
) -> None:
    prepare(fake)
    api = make(default_on_behalf_of=DEFAULT)
    with api.client.on_behalf_of(AMBIENT):
        ADMIN_CALLS[call](api, {})
    assert fake.api_requests, "the call sent nothing"
    assert obo_sent(fake) == [None] * len(fake.api_requests)


@pytest.mark.parametrize("call", sorted(ADMIN_CALLS))
def test_admin_call_sends_an_explicit_on_behalf_of(
    make: Callable[..., Driver], fake: FakeMedplum, call: str
) -> None:
    prepare(fake)
    api = make(default_on_behalf_of=DEFAULT)
    with api.client.on_behalf_of(AMBIENT):
        ADMIN_CALLS[call](api, {"on_behalf_of": EXPLICIT})
    assert obo_sent(fake) == [EXPLICIT] * len(fake.api_requests)


def test_membership_access_write_reads_and_writes_as_the_client(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    prepare(fake)
    api = make(default_on_behalf_of=DEFAULT)
    result = api.merge_project_membership_access(
        "m1", managed_access=[ENTRY], managed_policy_ids={"p"}
    )
    assert result.updated
    assert [r.method for r in fake.api_requests] == ["GET", "PUT"]
    assert obo_sent(fake) == [None, None]
    assert json.loads(fake.api_requests[1].content)["access"] == [ENTRY]


def test_an_ordinary_call_still_uses_the_ambient_value(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make(default_on_behalf_of=DEFAULT)
    with api.client.on_behalf_of(AMBIENT):
        api.read_resource("ProjectMembership", "m1")
        api.get("fhir/R4/Patient/1")
        api.get("auth/me")
    assert obo_sent(fake) == [AMBIENT] * 3


@pytest.mark.parametrize(
    ("path", "admin"),
    [
        ("admin/projects/p", True),
        ("/admin/projects/p/invite", True),
        ("https://medplum.test/admin/projects/p", True),
        ("https://medplum.test/base/admin/x", False),
        ("fhir/R4/Patient", False),
        ("auth/me", False),
        ("administrator/x", False),
        ("fhir/R4/admin/x", False),
    ],
)
def test_admin_paths_are_those_under_admin(path: str, admin: bool) -> None:
    assert is_admin_path("https://medplum.test/", path) is admin


def test_admin_paths_are_relative_to_the_base_url_path() -> None:
    assert is_admin_path("https://medplum.test/base/", "https://medplum.test/base/admin/x")
    assert not is_admin_path("https://medplum.test/base/", "https://medplum.test/admin/x")
