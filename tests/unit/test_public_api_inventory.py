"""Every public name code written for pymedplum's documented API reaches for, exercised.

The inventory: the names the peer SDK's documentation uses (kinsteadhealth/pymedplum:
docs/api_reference.md, docs/advanced/*.md, fhir_models.md, utils.md, bots.md, faq.md and the
README) plus the other public, non-underscore names of its package (pymedplum/__init__,
client, async_client, access, exceptions, helpers, hooks, bundle, types, config). Each row
maps one name to a check of how it behaves here (what is sent, what comes back, what is
refused), not to a hasattr. docs/compatibility.md holds the same table;
`test_the_docs_table_lists_every_row` keeps the two in step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

import pymedplum
from pymedplum import AsyncMedplumClient, FHIRBundle, MedplumClient
from pymedplum.fhir import Patient

from .conftest import BASE, FakeMedplum, header, query

DOCS_TABLE = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
OUTCOME_400 = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "structure",
            "diagnostics": "birthDate 'nineteen-eighty' of Jane Roe is not a date",
            "details": {"text": "Invalid date format"},
            "expression": ["Patient.birthDate"],
        }
    ],
}
PHI = "Jane Roe"


@dataclass
class Env:
    """A scripted fake Medplum and clients on it."""

    fake: FakeMedplum
    made: list[MedplumClient]

    def client(self, **kw: Any) -> MedplumClient:
        c = self.fake.sync_client(**kw)
        self.made.append(c)
        return c

    def aclient(self, **kw: Any) -> AsyncMedplumClient:
        return self.fake.async_client(**kw)

    @property
    def last(self) -> httpx.Request:
        return self.fake.api_requests[-1]

    def body(self, request: httpx.Request | None = None) -> Any:
        return json.loads((request or self.last).content)

    def reply(self, method: str, path: str, status: int = 200, **kw: Any) -> None:
        self.fake.script(method, path, httpx.Response(status, **kw))


Check = Callable[[Env], None]
ROWS: dict[str, Check] = {}


def row(*names: str) -> Callable[[Check], Check]:
    """Register `check` as the behaviour of each documented name."""

    def register(check: Check) -> Check:
        for name in names:
            assert name not in ROWS, name
            ROWS[name] = check
        return check

    return register


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---- imports ----------------------------------------------------------------------------------


@row("pymedplum.MedplumClient", "pymedplum.client.MedplumClient")
def _sync_client_import(env: Env) -> None:
    from pymedplum.client import MedplumClient as FromModule

    assert FromModule is pymedplum.MedplumClient
    assert env.client().read_resource("Patient", "1")["id"] == "1"


@row("pymedplum.AsyncMedplumClient", "pymedplum.async_client.AsyncMedplumClient")
def _async_client_import(env: Env) -> None:
    from pymedplum.async_client import AsyncMedplumClient as FromModule

    async def main() -> dict[str, Any]:
        async with FromModule(
            BASE,
            client_id="cid",
            client_secret="secret",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(env.fake.handle)),
        ) as client:
            return await client.read_resource("Patient", "1")

    assert FromModule is pymedplum.AsyncMedplumClient
    assert run(main())["id"] == "1"


@row("pymedplum.__version__")
def _version(env: Env) -> None:
    assert isinstance(pymedplum.__version__, str)
    assert all(part.isdigit() for part in pymedplum.__version__.split(".")[:2])


# ---- the constructor --------------------------------------------------------------------------


@row("MedplumClient(base_url=...)")
def _ctor_base_url(env: Env) -> None:
    client = env.client(base_url="https://medplum.test")  # no trailing slash
    assert client.base_url == "https://medplum.test/"
    client.read_resource("Patient", "1")
    assert str(env.last.url) == "https://medplum.test/fhir/R4/Patient/1"
    with pytest.raises(pymedplum.InsecureTransportError):
        MedplumClient("http://medplum.example/")


@row("MedplumClient(client_id=, client_secret=)")
def _ctor_credentials(env: Env) -> None:
    env.client(client_id="my-id", client_secret="my-secret").read_resource("Patient", "1")
    form = env.fake.token_requests[0].content.decode()
    assert "client_id=my-id" in form and "client_secret=my-secret" in form


@row("MedplumClient(access_token=)")
def _ctor_access_token(env: Env) -> None:
    env.client(client_id=None, client_secret=None, access_token="given").read_resource(
        "Patient", "1"
    )
    assert header(env.last, "authorization") == "Bearer given"
    assert env.fake.token_requests == []


@row("MedplumClient(project_id=)")
def _ctor_project_id(env: Env) -> None:
    assert env.client(project_id="proj-1").project_id == "proj-1"


@row("MedplumClient(fhir_url_path=)")
def _ctor_fhir_url_path(env: Env) -> None:
    client = env.client(fhir_url_path="fhir/R5")
    client.read_resource("Patient", "1")
    assert env.last.url.path == "/fhir/R5/Patient/1"


@row("MedplumClient(timeout=)")
def _ctor_timeout(env: Env) -> None:
    client = MedplumClient(BASE, timeout=7.5)
    assert client._http.timeout.read == 7.5  # the pool the client builds
    client.close()


@row("MedplumClient(http_client=)")
def _ctor_http_client(env: Env) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return env.fake.handle(request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    MedplumClient(BASE, client_id="cid", client_secret="secret", http_client=http).read_resource(
        "Patient", "1"
    )
    assert [r.url.path for r in seen] == ["/oauth2/token", "/fhir/R4/Patient/1"]
    with pytest.raises(ValueError):
        MedplumClient(BASE, http_client=httpx.Client(follow_redirects=True))


@row("MedplumClient(before_request=)")
def _ctor_before_request(env: Env) -> None:
    def hook(request: Any) -> Any:
        return dataclasses.replace(request, headers={**request.headers, "X-Trace": "t1"})

    env.client(before_request=hook).read_resource("Patient", "1")
    assert header(env.last, "x-trace") == "t1"


@row("MedplumClient(on_request_complete=)")
def _ctor_on_request_complete(env: Env) -> None:
    events: list[Any] = []
    env.client(on_request_complete=events.append).read_resource("Patient", "1")
    [event] = events
    assert (event.method, event.resource_type, event.action) == ("GET", "Patient", "read")


@row("MedplumClient(allow_insecure_http=)")
def _ctor_allow_insecure_http(env: Env) -> None:
    client = MedplumClient("http://medplum.example/", allow_insecure_http=True)
    assert client.base_url == "http://medplum.example/"
    client.close()


@row("MedplumClient(failed_refresh_cooldown=)")
def _ctor_cooldown(env: Env) -> None:
    env.fake.token_replies.append(httpx.Response(503))
    client = env.client(failed_refresh_cooldown=30.0)
    with pytest.raises(pymedplum.ServerError):
        client.read_resource("Patient", "1")
    with pytest.raises(pymedplum.TokenRefreshCooldownError) as caught:
        client.read_resource("Patient", "1")
    assert 0 < caught.value.retry_after <= 30.0


@row("MedplumClient(default_on_behalf_of=)", "client.default_on_behalf_of")
def _ctor_default_obo(env: Env) -> None:
    client = env.client(default_on_behalf_of="ProjectMembership/abc")
    assert client.default_on_behalf_of == "ProjectMembership/abc"
    client.read_resource("Patient", "1")
    assert header(env.last, "x-medplum-on-behalf-of") == "ProjectMembership/abc"


@row("MedplumClient(unknown kwarg) raises TypeError")
def _ctor_unknown_kwarg(env: Env) -> None:
    with pytest.raises(TypeError):
        MedplumClient(BASE, no_such_option=1)  # type: ignore[call-arg]


# ---- client attributes ------------------------------------------------------------------------


@row("client.base_url", "client.fhir_base_url", "client.fhir_url_path")
def _attr_urls(env: Env) -> None:
    client = env.client()
    assert (client.base_url, client.fhir_base_url, client.fhir_url_path) == (
        BASE,
        BASE + "fhir/R4/",
        "fhir/R4/",
    )


@row("client.client_id", "client.client_secret")
def _attr_credentials(env: Env) -> None:
    client = env.client(client_id="id-1", client_secret="s3cr3t-value")
    assert (client.client_id, client.client_secret) == ("id-1", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(client)
    with pytest.raises(AttributeError):
        client.client_secret = "x"  # type: ignore[misc]


@row("client.access_token")
def _attr_access_token(env: Env) -> None:
    client = env.client()
    assert client.access_token is None  # reading never logs in
    assert env.fake.requests == []
    client.read_resource("Patient", "1")
    assert client.access_token == "tok-1"


@row("client.token_expires_at")
def _attr_token_expires_at(env: Env) -> None:
    given = env.client(client_id=None, client_secret=None, access_token="given")
    assert given.token_expires_at is None  # a caller's token, given without an expiry
    client = env.client()
    before = datetime.now(UTC)
    client.read_resource("Patient", "1")  # the login answered expires_in=3600
    expires = client.token_expires_at
    assert expires is not None and expires.tzinfo is not None
    assert before + timedelta(seconds=3590) <= expires <= datetime.now(UTC) + timedelta(hours=1)


@row("client.set_access_token(token, expires_at=None)")
def _attr_set_access_token(env: Env) -> None:
    client = env.client(client_id=None, client_secret=None)
    client.set_access_token("external-1")
    client.read_resource("Patient", "1")
    assert header(env.last, "authorization") == "Bearer external-1"
    assert client.token_expires_at is None
    when = datetime.now(UTC) + timedelta(minutes=5)
    client.set_access_token("external-2", expires_at=when)
    assert client.token_expires_at == when.replace(microsecond=when.microsecond)
    client.read_resource("Patient", "1")
    assert header(env.last, "authorization") == "Bearer external-2"
    with pytest.raises(ValueError):
        client.set_access_token("x", expires_at=datetime(2030, 1, 1))  # no time zone


@row("repr(client) hides the secret and the token")
def _attr_repr(env: Env) -> None:
    client = env.client(client_secret="s3cr3t-value")
    client.read_resource("Patient", "1")
    assert "s3cr3t-value" not in repr(client) and "tok-1" not in repr(client)


@row("client.close()", "with MedplumClient(...)")
def _close_sync(env: Env) -> None:
    with MedplumClient(BASE) as client:
        assert not client._http.is_closed
    assert client._http.is_closed
    other = MedplumClient(BASE)
    other.close()
    assert other._http.is_closed


@row("await AsyncMedplumClient.close()", "async with AsyncMedplumClient(...)")
def _close_async(env: Env) -> None:
    async def main() -> tuple[bool, bool]:
        client = AsyncMedplumClient(BASE)
        await client.close()
        async with AsyncMedplumClient(BASE) as other:
            pass
        return client._http.is_closed, other._http.is_closed

    assert run(main()) == (True, True)


# ---- CRUD -------------------------------------------------------------------------------------


@row("client.create_resource")
def _create(env: Env) -> None:
    created = env.client().create_resource(
        {"resourceType": "Patient", "active": True}, accounts="Organization/org-1"
    )
    assert env.last.method == "POST" and env.last.url.path == "/fhir/R4/Patient"
    assert env.body()["meta"]["accounts"] == [{"reference": "Organization/org-1"}]
    assert created["id"] == "new-id"
    typed = env.client().create_resource(Patient(active=True), as_fhir=Patient)
    assert isinstance(typed, Patient) and typed.id == "new-id"


@row("client.create_resource_if_none_exist")
def _create_if_none_exist(env: Env) -> None:
    env.client().create_resource_if_none_exist(
        {"resourceType": "Patient"}, if_none_exist="?identifier=http://mrn|1"
    )
    assert header(env.last, "if-none-exist") == "identifier=http://mrn|1"
    with pytest.raises(pymedplum.UnsafeRedirectError):
        env.client().create_resource_if_none_exist(
            {"resourceType": "Patient"}, "https://elsewhere.example/fhir/R4/Patient?x=1"
        )


@row("client.conditional_create_batch", "BatchCreateResult")
def _conditional_create_batch(env: Env) -> None:
    answer = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Patient/a/_history/1"}},
            {"response": {"status": "200 OK", "location": "Patient/b/_history/3"}},
        ],
    }
    env.reply("POST", "/fhir/R4/", json=answer)
    result = env.client().conditional_create_batch(
        [
            ({"resourceType": "Patient"}, "identifier=x|1"),
            ({"resourceType": "Patient"}, "identifier=x|2"),
        ]
    )
    assert [e.resource_id for e in result.created] == ["a"]
    assert [e.resource_id for e in result.existed] == ["b"]
    assert result.failed == [] and result.ok
    sent = env.body()
    assert sent["type"] == "batch"
    assert [e["request"]["ifNoneExist"] for e in sent["entry"]] == [
        "identifier=x|1",
        "identifier=x|2",
    ]


@row("client.read_resource")
def _read(env: Env) -> None:
    patient = env.client().read_resource("Patient", "123", as_fhir=Patient)
    assert isinstance(patient, Patient) and patient.id == "123"
    env.reply("GET", "/fhir/R4/Patient/gone", 410)
    with pytest.raises(pymedplum.NotFoundError):
        env.client().read_resource("Patient", "gone")


@row("client.vread_resource")
def _vread(env: Env) -> None:
    env.client().vread_resource("Patient", "123", "1")
    assert env.last.url.path == "/fhir/R4/Patient/123/_history/1"


@row("client.update_resource")
def _update(env: Env) -> None:
    env.client().update_resource({"resourceType": "Patient", "id": "1", "meta": {"versionId": "4"}})
    assert env.last.method == "PUT" and header(env.last, "if-match") == 'W/"4"'
    with pytest.raises(pymedplum.MissingVersionIdError):
        env.client().update_resource({"resourceType": "Patient", "id": "1"}, if_match="required")
    with pytest.raises(ValueError):
        env.client().update_resource({"resourceType": "Patient"})


@row("client.update_with_retry", "UpdateResult")
def _update_with_retry(env: Env) -> None:
    def deactivate(patient: dict[str, Any]) -> dict[str, Any]:
        patient["active"] = False
        return patient

    result = env.client().update_with_retry("Patient", "1", deactivate)
    assert result.wrote and result.version_id == "2"
    assert result.resource["active"] is False
    assert header(env.last, "if-match") == 'W/"1"'


@row("client.patch_resource")
def _patch(env: Env) -> None:
    ops = [{"op": "replace", "path": "/active", "value": False}]
    env.client().patch_resource("Patient", "1", ops, if_match='W/"3"')
    assert env.last.method == "PATCH" and env.body() == ops
    assert header(env.last, "content-type") == "application/json-patch+json"
    assert header(env.last, "if-match") == 'W/"3"'


@row("client.delete_resource")
def _delete(env: Env) -> None:
    assert env.client().delete_resource("Patient", "1") is None
    assert env.last.method == "DELETE" and env.last.url.path == "/fhir/R4/Patient/1"


# ---- search -----------------------------------------------------------------------------------

SEARCHSET = {
    "resourceType": "Bundle",
    "type": "searchset",
    "total": 2,
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "match"}},
        {"resource": {"resourceType": "Patient", "id": "p2"}, "search": {"mode": "match"}},
    ],
    "link": [{"relation": "next", "url": BASE + "fhir/R4/Patient?_offset=2"}],
}


@row("client.search_resources")
def _search(env: Env) -> None:
    env.reply("GET", "/fhir/R4/Patient", json=SEARCHSET)
    bundle = env.client().search_resources(
        "Patient", {"birthdate": ["ge1990", "le2000"], "active": True}, return_bundle=True
    )
    assert isinstance(bundle, FHIRBundle) and [p["id"] for p in bundle] == ["p1", "p2"]
    assert query(env.last) == {"birthdate": ["ge1990", "le2000"], "active": ["true"]}


@row("client.search_one")
def _search_one(env: Env) -> None:
    env.reply("GET", "/fhir/R4/Patient", json=SEARCHSET)
    assert env.client().search_one("Patient", {"identifier": "MRN|1"})["id"] == "p1"
    assert query(env.last)["_count"] == ["1"]


@row("client.search_resource_pages")
def _search_pages(env: Env) -> None:
    last_page = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p3"}}],
    }
    env.fake.script(
        "GET",
        "/fhir/R4/Patient",
        httpx.Response(200, json=SEARCHSET),
        httpx.Response(200, json=last_page),
    )
    ids = [p.id for p in env.client().search_resource_pages("Patient", as_fhir=Patient)]
    assert ids == ["p1", "p2", "p3"]


@row("client.search_with_options", "client.searchWithOptions")
def _search_with_options(env: Env) -> None:
    client = env.client()
    assert client.searchWithOptions == client.search_with_options
    client.search_with_options(
        "Observation",
        {"patient": "Patient/1"},
        summary="count",
        sort=["-date", "code"],
        include="Observation:patient",
        count=50,
    )
    sent = query(env.last)
    assert sent["_summary"] == ["count"] and sent["_sort"] == ["-date,code"]
    assert sent["_include"] == ["Observation:patient"] and sent["_count"] == ["50"]


# ---- bundles, GraphQL, low level --------------------------------------------------------------


@row("client.execute_batch")
def _execute_batch(env: Env) -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [{"request": {"method": "GET", "url": "Patient/1"}}],
    }
    env.client().execute_batch(bundle)
    assert env.last.url.path == "/fhir/R4/" and env.body()["type"] == "batch"
    assert "type" not in bundle  # the caller's dict is untouched


@row("client.execute_transaction")
def _execute_transaction(env: Env) -> None:
    entry = {
        "request": {"method": "POST", "url": "Patient"},
        "resource": {"resourceType": "Patient"},
    }
    env.client().execute_transaction(
        {"resourceType": "Bundle", "entry": [entry]}, accounts="Organization/a"
    )
    sent = env.body()
    assert sent["type"] == "transaction"
    assert sent["entry"][0]["resource"]["meta"]["accounts"] == [{"reference": "Organization/a"}]


@row("client.execute_graphql")
def _execute_graphql(env: Env) -> None:
    env.reply("POST", "/fhir/R4/$graphql", json={"data": {"Patient": {"id": "1"}}})
    result = env.client().execute_graphql(
        "query Q($id: ID!) { Patient(id: $id) { id } }", {"id": "1"}
    )
    assert result["data"]["Patient"]["id"] == "1"
    assert env.body()["variables"] == {"id": "1"}


@row("client.get")
def _raw_get(env: Env) -> None:
    env.reply("GET", "/auth/me", json={"profile": {"reference": "Practitioner/1"}})
    assert env.client().get("auth/me")["profile"]["reference"] == "Practitioner/1"


@row("client.post")
def _raw_post(env: Env) -> None:
    env.reply("POST", "/admin/projects/p/secrets", json={"ok": True})
    assert env.client().post("admin/projects/p/secrets", [{"name": "K", "valueString": "v"}]) == {
        "ok": True
    }
    assert env.body() == [{"name": "K", "valueString": "v"}]


@row("client.put")
def _raw_put(env: Env) -> None:
    env.client().put("fhir/R4/Patient/1", {"resourceType": "Patient", "id": "1"})
    assert env.last.method == "PUT" and env.body()["id"] == "1"


@row("client.delete")
def _raw_delete(env: Env) -> None:
    assert env.client().delete("fhir/R4/Patient/1") is None
    assert env.last.method == "DELETE"


# ---- on-behalf-of -----------------------------------------------------------------------------


@row("client.on_behalf_of(membership)", "OnBehalfOfContext")
def _on_behalf_of(env: Env) -> None:
    client = env.client()
    context = client.on_behalf_of("abc")  # "ProjectMembership resource or ID"
    assert isinstance(context, pymedplum.OnBehalfOfContext)
    with context:
        client.read_resource("Patient", "1")
    assert header(env.last, "x-medplum-on-behalf-of") == "ProjectMembership/abc"
    with client.on_behalf_of({"resourceType": "ProjectMembership", "id": "xyz"}):
        client.read_resource("Patient", "1", on_behalf_of="")  # "" clears for one call
        assert header(env.last, "x-medplum-on-behalf-of") is None


@row("on_behalf_of= per-call kwarg")
def _per_call_obo(env: Env) -> None:
    client = env.client(default_on_behalf_of="ProjectMembership/default")
    client.read_resource("Patient", "1", on_behalf_of="ProjectMembership/abc")
    assert header(env.last, "x-medplum-on-behalf-of") == "ProjectMembership/abc"


# ---- accounts, memberships, jobs ----------------------------------------------------------------


@row("client.set_accounts")
def _set_accounts(env: Env) -> None:
    env.client().set_accounts("Patient/1", ["Organization/a", "Organization/b"], propagate=True)
    assert env.last.url.path == "/fhir/R4/Patient/1/$set-accounts"
    params = {
        (p["name"], json.dumps(p.get("valueReference") or p.get("valueBoolean")))
        for p in env.body()["parameter"]
    }
    assert ("accounts", '{"reference": "Organization/a"}') in params and (
        "propagate",
        "true",
    ) in params


def _membership(env: Env, access: list[Any]) -> None:
    state = {
        "resourceType": "ProjectMembership",
        "id": "m1",
        "meta": {"versionId": "1"},
        "access": access,
    }
    env.reply("GET", "/fhir/R4/ProjectMembership/m1", json=state)


ENTRY_A = {
    "policy": {"reference": "AccessPolicy/p"},
    "parameter": [{"name": "organization", "valueReference": {"reference": "Organization/a"}}],
}


@row("client.merge_project_membership_access", "MergeResult")
def _merge_access(env: Env) -> None:
    other = {"policy": {"reference": "AccessPolicy/other"}}
    _membership(env, [other])
    result = env.client().merge_project_membership_access(
        "ProjectMembership/m1", managed_access=[ENTRY_A], managed_policy_ids={"p"}
    )
    assert (result.updated, result.managed_count, result.untouched_count) == (True, 1, 1)
    assert env.body()["access"] == [other, ENTRY_A]
    assert header(env.last, "if-match") == 'W/"1"'


@row("client.add_project_membership_access_entry")
def _add_access(env: Env) -> None:
    _membership(env, [ENTRY_A])
    result = env.client().add_project_membership_access_entry(
        "m1", ENTRY_A, managed_policy_ids={"p"}
    )
    assert result.updated is False  # already there: no PUT
    assert [r.method for r in env.fake.api_requests] == ["GET"]


@row("client.remove_project_membership_access_entry")
def _remove_access(env: Env) -> None:
    _membership(env, [ENTRY_A])
    result = env.client().remove_project_membership_access_entry(
        "m1", ENTRY_A, managed_policy_ids={"p"}
    )
    assert result.updated and env.body()["access"] == []


JOB_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "information",
            "code": "informational",
            "diagnostics": BASE + "fhir/R4/job/j1/status",
        }
    ],
}


@row("client.get_async_job_status")
def _job_status(env: Env) -> None:
    env.reply(
        "GET",
        "/fhir/R4/job/j1/status",
        json={"resourceType": "AsyncJob", "id": "j1", "status": "active"},
    )
    assert env.client().get_async_job_status(JOB_OUTCOME)["status"] == "active"


@row("client.wait_for_async_job")
def _wait_for_job(env: Env) -> None:
    active = {"resourceType": "AsyncJob", "id": "j1", "status": "active"}
    done = {**active, "status": "completed", "output": {"resourceType": "Parameters"}}
    env.fake.script(
        "GET",
        "/fhir/R4/job/j1/status",
        httpx.Response(200, json=active),
        httpx.Response(200, json=done),
    )
    assert env.client().wait_for_async_job(JOB_OUTCOME, poll_interval=0.5)["status"] == "completed"
    env.fake.script(
        "GET", "/fhir/R4/job/j1/status", *(httpx.Response(200, json=active) for _ in range(50))
    )
    client = env.client()
    ticks = iter(range(0, 10_000, 10))
    client._clock = lambda: float(next(ticks))  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        client.wait_for_async_job("j1", poll_interval=0.5, timeout=60)


@row("client.invite_user")
def _invite(env: Env) -> None:
    env.reply(
        "POST",
        "/admin/projects/proj/invite",
        json={"resourceType": "ProjectMembership", "id": "m9"},
    )
    membership = env.client().invite_user(
        project_id="proj",
        resource_type="Practitioner",
        first_name="Alice",
        last_name="Smith",
        email="alice@example.com",
        send_email=True,
    )
    assert membership["id"] == "m9"
    assert env.body()["firstName"] == "Alice" and env.body()["sendEmail"] is True


# ---- binary, documents, operations, terminology ---------------------------------------------


@row("client.upload_binary")
def _upload(env: Env) -> None:
    env.reply(
        "POST",
        "/fhir/R4/Binary",
        201,
        json={"resourceType": "Binary", "id": "b1", "contentType": "application/pdf"},
    )
    assert env.client().upload_binary(b"%PDF-1.4", "application/pdf")["id"] == "b1"
    assert env.last.content == b"%PDF-1.4" and header(env.last, "content-type") == "application/pdf"


@row("client.download_binary")
def _download(env: Env) -> None:
    env.reply(
        "GET",
        "/fhir/R4/Binary/b1",
        content=b"\x00bytes",
        headers={"Content-Type": "application/pdf"},
    )
    assert env.client().download_binary("b1") == b"\x00bytes"


@row("client.create_document_reference")
def _document_reference(env: Env) -> None:
    env.client().create_document_reference(
        patient_id="p1",
        binary_id="b1",
        content_type="application/pdf",
        title="Lab",
        description="CBC",
    )
    sent = env.body()
    assert sent["resourceType"] == "DocumentReference" and sent["subject"] == {
        "reference": "Patient/p1"
    }
    assert sent["content"][0]["attachment"]["url"] == "Binary/b1"


@row("client.export_ccda")
def _export_ccda(env: Env) -> None:
    env.reply(
        "GET",
        "/fhir/R4/Patient/p1/$ccda-export",
        content=b"<ClinicalDocument/>",
        headers={"Content-Type": "application/cda+xml"},
    )
    assert env.client().export_ccda(patient_id="p1") == "<ClinicalDocument/>"


@row("client.execute_operation")
def _execute_operation(env: Env) -> None:
    env.client().execute_operation(
        "Patient", "$match", params={"onlyCertainMatches": True}, wrap_params=True
    )
    assert env.last.url.path == "/fhir/R4/Patient/$match"
    assert env.body() == {
        "resourceType": "Parameters",
        "parameter": [{"name": "onlyCertainMatches", "valueBoolean": True}],
    }
    env.client().execute_operation("CodeSystem", "lookup", params={"code": "1"}, method="GET")
    assert env.last.method == "GET" and query(env.last) == {"code": ["1"]}


def _parameters_answer(env: Env, path: str) -> None:
    env.reply(
        "POST",
        path,
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "result", "valueBoolean": True}],
        },
    )


@row("client.expand_valueset")
def _expand(env: Env) -> None:
    env.reply(
        "POST",
        "/fhir/R4/ValueSet/$expand",
        json={"resourceType": "ValueSet", "expansion": {"contains": [{"code": "final"}]}},
    )
    result = env.client().expand_valueset(
        valueset_url="http://hl7.org/fhir/ValueSet/observation-status", count=20
    )
    assert result["expansion"]["contains"][0]["code"] == "final"
    names = {p["name"] for p in env.body()["parameter"]}
    assert {"url", "count"} <= names


@row("client.lookup_concept")
def _lookup(env: Env) -> None:
    _parameters_answer(env, "/fhir/R4/CodeSystem/$lookup")
    env.client().lookup_concept(code="8867-4", system="http://loinc.org")
    assert {
        (p["name"], p.get("valueCode") or p.get("valueUri")) for p in env.body()["parameter"]
    } >= {("code", "8867-4"), ("system", "http://loinc.org")}


@row("client.translate_concept")
def _translate(env: Env) -> None:
    _parameters_answer(env, "/fhir/R4/ConceptMap/$translate")
    env.client().translate_concept(code="final", system="http://x", target_system="http://y")
    assert "targetsystem" in {p["name"] for p in env.body()["parameter"]}


@row("client.validate_valueset_code")
def _validate_vs(env: Env) -> None:
    _parameters_answer(env, "/fhir/R4/ValueSet/$validate-code")
    result = env.client().validate_valueset_code(
        valueset_url="http://vs", coding={"system": "http://s", "code": "final"}
    )
    assert result["parameter"][0]["valueBoolean"] is True


@row("client.validate_codesystem_code")
def _validate_cs(env: Env) -> None:
    _parameters_answer(env, "/fhir/R4/CodeSystem/$validate-code")
    env.client().validate_codesystem_code(codesystem_url="http://loinc.org", code="15074-8")
    assert env.last.url.path == "/fhir/R4/CodeSystem/$validate-code"


# ---- bots -------------------------------------------------------------------------------------


@row("client.create_bot")
def _create_bot(env: Env) -> None:
    bot = env.client().create_bot(name="Welcome", description="d", runtime_version="vmcontext")
    assert bot["id"] == "new-id"
    assert (env.body()["name"], env.body()["runtimeVersion"]) == ("Welcome", "vmcontext")


@row("client.read_bot")
def _read_bot(env: Env) -> None:
    assert env.client().read_bot("b1")["resourceType"] == "Bot"


@row("client.update_bot")
def _update_bot(env: Env) -> None:
    env.client().update_bot({"resourceType": "Bot", "id": "b1", "name": "n"})
    assert env.last.method == "PUT" and env.last.url.path == "/fhir/R4/Bot/b1"


@row("client.delete_bot")
def _delete_bot(env: Env) -> None:
    env.client().delete_bot("b1")
    assert env.last.method == "DELETE" and env.last.url.path == "/fhir/R4/Bot/b1"


@row("client.list_bots")
def _list_bots(env: Env) -> None:
    env.client().list_bots(name="Welcome")
    assert env.last.url.path == "/fhir/R4/Bot" and query(env.last)["name"] == ["Welcome"]


@row("client.deploy_bot")
def _deploy_bot(env: Env) -> None:
    env.reply(
        "POST", "/fhir/R4/Bot/b1/$deploy", json={"resourceType": "OperationOutcome", "issue": []}
    )
    env.client().deploy_bot("b1", "exports.handler = async () => 1;")
    assert env.body()["code"].startswith("exports.handler") and env.body()["filename"] == "index.js"


@row("client.save_bot_code")
def _save_bot_code(env: Env) -> None:
    env.client().save_bot_code(bot_id="b1", source_code="export async function handler() {}")
    assert env.last.method == "PUT" and env.last.url.path == "/fhir/R4/Bot/b1"
    assert env.body()["code"] == "export async function handler() {}"  # the Bot's code


@row("client.save_and_deploy_bot")
def _save_and_deploy(env: Env) -> None:
    env.reply(
        "POST", "/fhir/R4/Bot/b1/$deploy", json={"resourceType": "OperationOutcome", "issue": []}
    )
    bot, deployed = env.client().save_and_deploy_bot("b1", "src", "exports.handler = 1;")
    assert bot["id"] == "b1" and deployed["resourceType"] == "OperationOutcome"


@row("client.execute_bot")
def _execute_bot(env: Env) -> None:
    env.reply("POST", "/fhir/R4/Bot/b1/$execute", json={"echoed": True})
    assert env.client().execute_bot(bot_id="b1", input_data={"resourceType": "Patient"}) == {
        "echoed": True
    }
    assert env.body() == {"resourceType": "Patient"}


# ---- FHIRBundle -------------------------------------------------------------------------------

RESPONSE_BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction-response",
    "entry": [
        {"response": {"status": "201 Created", "location": "Patient/a/_history/1"}},
        {"response": {"status": "400 Bad Request", "outcome": OUTCOME_400}},
    ],
}


@row("pymedplum.FHIRBundle", "FHIRBundle iteration and len()")
def _bundle_iter(env: Env) -> None:
    bundle = FHIRBundle(SEARCHSET)
    assert [r["id"] for r in bundle] == ["p1", "p2"] and len(bundle) == 2 and bool(bundle)
    assert not FHIRBundle({"resourceType": "Bundle"})


@row("FHIRBundle.get_resources")
def _bundle_get_resources(env: Env) -> None:
    assert [r["id"] for r in FHIRBundle(SEARCHSET).get_resources()] == ["p1", "p2"]
    with pytest.raises(ValueError):
        FHIRBundle(SEARCHSET).get_resources(max_resources=1)


@row("FHIRBundle.get_resources_typed")
def _bundle_typed(env: Env) -> None:
    patients = FHIRBundle(SEARCHSET).get_resources_typed(Patient)
    assert [type(p) for p in patients] == [Patient, Patient]


@row("FHIRBundle.get_total", "FHIRBundle.total")
def _bundle_total(env: Env) -> None:
    assert FHIRBundle(SEARCHSET).get_total() == FHIRBundle(SEARCHSET).total == 2
    no_total = {k: v for k, v in SEARCHSET.items() if k != "total"}
    assert FHIRBundle(no_total).total is None and FHIRBundle(no_total).get_total() == 2


@row("FHIRBundle.is_empty")
def _bundle_is_empty(env: Env) -> None:
    assert FHIRBundle({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]}).is_empty()
    assert not FHIRBundle(SEARCHSET).is_empty()


@row("FHIRBundle.get_next_link")
def _bundle_next(env: Env) -> None:
    assert FHIRBundle(SEARCHSET).get_next_link() == BASE + "fhir/R4/Patient?_offset=2"
    assert FHIRBundle({"resourceType": "Bundle"}).get_next_link() is None


@row("FHIRBundle.raw")
def _bundle_raw(env: Env) -> None:
    assert FHIRBundle(SEARCHSET).raw == SEARCHSET


@row("FHIRBundle.entry_results", "BundleEntryResult")
def _bundle_entry_results(env: Env) -> None:
    first, second = FHIRBundle(RESPONSE_BUNDLE).entry_results()
    assert (first.index, first.status_code, first.ok, first.resource_id) == (0, 201, True, "a")
    assert (second.status_code, second.ok, second.outcome) == (400, False, OUTCOME_400)


@row("FHIRBundle.failures", "FHIRBundle.partition")
def _bundle_failures(env: Env) -> None:
    bundle = FHIRBundle(RESPONSE_BUNDLE)
    assert [f.index for f in bundle.failures()] == [1]
    ok, failed = bundle.partition()
    assert [r.index for r in ok] == [0] and [r.index for r in failed] == [1]


@row("FHIRBundle.raise_for_entry_errors", "pymedplum.BundleEntryError")
def _bundle_raise(env: Env) -> None:
    with pytest.raises(pymedplum.BundleEntryError) as caught:
        FHIRBundle(RESPONSE_BUNDLE).raise_for_entry_errors()
    assert [e.index for e in caught.value.entries] == [1]
    assert PHI not in str(caught.value) and "#1: 400" in str(caught.value)


# ---- exceptions -------------------------------------------------------------------------------

STATUS_EXCEPTIONS = {
    "pymedplum.BadRequestError": (400, None),
    "pymedplum.ValidationError": (400, OUTCOME_400),
    "pymedplum.AuthenticationError": (401, None),
    "pymedplum.AuthorizationError": (403, None),
    "pymedplum.NotFoundError": (404, None),
    "pymedplum.ConflictError": (409, None),
    "pymedplum.GoneError": (410, None),
    "pymedplum.PreconditionFailedError": (412, None),
    "pymedplum.RateLimitError": (429, None),
    "pymedplum.ServerError": (500, None),
    "pymedplum.OperationOutcomeError": (418, None),
}


def _status_check(name: str) -> Check:
    status, body = STATUS_EXCEPTIONS[name]
    cls = getattr(pymedplum, name.split(".")[1])

    def check(env: Env) -> None:
        for _ in range(4):  # enough answers for the retries a 429 gets
            if body is None:
                env.reply("GET", "/fhir/R4/Patient/1", status, content=b"")
            else:
                env.reply("GET", "/fhir/R4/Patient/1", status, json=body)
        client = env.client(client_id=None, client_secret=None, access_token="t")
        with pytest.raises(cls) as caught:
            client.read_resource("Patient", "1")
        assert caught.value.status_code == status
        assert isinstance(caught.value, pymedplum.MedplumError)
        from pymedplum import exceptions

        assert getattr(exceptions, cls.__name__) is cls

    check.__name__ = f"http_{status}_raises_{cls.__name__}"
    return check


for _name in STATUS_EXCEPTIONS:
    row(_name)(_status_check(_name))


@row("pymedplum.MedplumError", "MedplumError.status_code")
def _medplum_error(env: Env) -> None:
    env.fake.script(
        "GET",
        "/fhir/R4/Patient/1",
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
    )
    with pytest.raises(pymedplum.MedplumError) as caught:
        env.client(access_token="t", client_id=None, client_secret=None).read_resource(
            "Patient", "1"
        )
    assert caught.value.status_code is None  # no HTTP status behind a network failure


@row("MedplumError.response_data")
def _response_data(env: Env, caplog: pytest.LogCaptureFixture | None = None) -> None:
    env.reply("POST", "/fhir/R4/Patient", 400, json=OUTCOME_400)
    with pytest.raises(pymedplum.ValidationError) as caught:
        env.client().create_resource({"resourceType": "Patient", "birthDate": "nineteen-eighty"})
    error = caught.value
    assert error.response_data == OUTCOME_400  # the parsed error body
    shown = str(error) + repr(error) + json.dumps(error.sanitize_for_logging())
    assert PHI not in shown and "nineteen-eighty" not in shown
    logger = logging.getLogger("inventory-check")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (error,), None)
    assert PHI not in logging.Formatter().format(record)
    assert logger is not None
    network = pymedplum.NetworkError("x", possibly_committed=False)
    assert network.response_data is None


@row("OperationOutcomeError.outcome", "OperationOutcomeError.detail")
def _outcome_detail(env: Env) -> None:
    env.reply("POST", "/fhir/R4/Patient", 400, json=OUTCOME_400)
    with pytest.raises(pymedplum.OperationOutcomeError) as caught:
        env.client().create_resource({"resourceType": "Patient"})
    assert caught.value.outcome == OUTCOME_400
    assert caught.value.detail == f"{OUTCOME_400['issue'][0]['diagnostics']} | Invalid date format"
    assert "Invalid date format" not in str(caught.value)


@row("MedplumError.sanitize_for_logging")
def _sanitize(env: Env) -> None:
    env.reply("POST", "/fhir/R4/Patient", 400, json=OUTCOME_400)
    with pytest.raises(pymedplum.ValidationError) as caught:
        env.client().create_resource({"resourceType": "Patient"})
    logged = caught.value.sanitize_for_logging()
    assert logged["status_code"] == 400 and logged["issues"][0]["code"] == "structure"
    assert PHI not in json.dumps(logged)


@row("ServerError.response", "ServerError.method", "ServerError.path_template")
def _server_error(env: Env) -> None:
    env.reply("POST", "/fhir/R4/Patient", 500, content=b"upstream broke for Jane Roe")
    with pytest.raises(pymedplum.ServerError) as caught:
        env.client().create_resource({"resourceType": "Patient"})
    error = caught.value
    assert error.response is not None and error.response.status_code == 500
    assert PHI in error.response.text and PHI not in str(error)
    assert (error.method, error.path_template) == ("POST", "/fhir/R4/Patient")


@row("NetworkError.possibly_committed", "pymedplum.NetworkError")
def _network_error(env: Env) -> None:
    env.fake.script("POST", "/fhir/R4/Patient", httpx.ReadTimeout("slow"))
    with pytest.raises(pymedplum.NetworkError) as caught:
        env.client().create_resource({"resourceType": "Patient"})
    assert caught.value.possibly_committed is True  # sent, then lost: a POST is not replayed


@row("pymedplum.TokenRefreshCooldownError", "TokenRefreshCooldownError.retry_after")
def _cooldown_error(env: Env) -> None:
    env.fake.token_replies.append(httpx.Response(500))
    client = env.client(failed_refresh_cooldown=10.0)
    with pytest.raises(pymedplum.ServerError):
        client.read_resource("Patient", "1")
    with pytest.raises(pymedplum.TokenRefreshCooldownError) as caught:
        client.read_resource("Patient", "1")
    assert 9.0 < caught.value.retry_after <= 10.0


@row("pymedplum.InsecureTransportError")
def _insecure(env: Env) -> None:
    with pytest.raises(pymedplum.InsecureTransportError):
        MedplumClient("http://medplum.example.org/")
    MedplumClient("http://localhost:8103/").close()  # loopback is fine


@row("pymedplum.UnsafeRedirectError")
def _unsafe_redirect(env: Env) -> None:
    page = {
        **SEARCHSET,
        "link": [{"relation": "next", "url": "https://evil.example/fhir/R4/Patient"}],
    }
    env.reply("GET", "/fhir/R4/Patient", json=page)
    with pytest.raises(pymedplum.UnsafeRedirectError):
        list(env.client().search_resource_pages("Patient"))


@row("pymedplum.MissingVersionIdError")
def _missing_version(env: Env) -> None:
    with pytest.raises(pymedplum.MissingVersionIdError):
        env.client().update_resource({"resourceType": "Patient", "id": "1"}, if_match="required")
    assert env.fake.api_requests == []


# ---- helpers ----------------------------------------------------------------------------------


@row("pymedplum.parse_reference", "pymedplum.helpers.parse_reference")
def _parse_reference(env: Env) -> None:
    assert pymedplum.parse_reference("Patient/abc-123") == ("Patient", "abc-123")
    with pytest.raises(ValueError):
        pymedplum.parse_reference("abc")


@row("pymedplum.build_reference", "pymedplum.helpers.build_reference")
def _build_reference(env: Env) -> None:
    assert pymedplum.build_reference("Observation", "obs-456") == "Observation/obs-456"


@row("pymedplum.resolve_id")
def _resolve_id(env: Env) -> None:
    assert pymedplum.resolve_id("Patient/123") == "123"
    assert pymedplum.resolve_id("123") == "123"
    assert pymedplum.resolve_id({"reference": "Patient/abc"}) == "abc"
    assert pymedplum.resolve_id(Patient(id="p9")) == "p9"
    assert pymedplum.resolve_id(None) is None and pymedplum.resolve_id("Patient/") is None


@row("pymedplum.get_patient_display_name", "pymedplum.helpers.get_patient_display_name")
def _display_name(env: Env) -> None:
    assert (
        pymedplum.get_patient_display_name({"name": [{"given": ["John", "B."], "family": "Doe"}]})
        == "John B. Doe"
    )
    assert pymedplum.get_patient_display_name({}) == "Unknown"


@row("pymedplum.extract_identifier", "pymedplum.helpers.extract_identifier")
def _extract_identifier(env: Env) -> None:
    patient = {
        "identifier": [
            {"system": "http://a", "value": "1"},
            {"system": "http://mrn", "value": "MRN1"},
        ]
    }
    assert pymedplum.extract_identifier(patient, "http://mrn") == "MRN1"
    assert pymedplum.extract_identifier(patient, "http://none") is None


@row("pymedplum.get_code_display", "pymedplum.helpers.get_code_display")
def _code_display(env: Env) -> None:
    assert pymedplum.get_code_display({"text": "Type 2 Diabetes"}) == "Type 2 Diabetes"
    assert pymedplum.get_code_display({"coding": [{"display": "Hypertension"}]}) == "Hypertension"
    assert pymedplum.get_code_display({"coding": [{"code": "x"}]}) is None


CONCEPT = {
    "coding": [
        {"system": "http://snomed.info/sct", "code": "44054006"},
        {"system": "http://icd", "code": "E11.9"},
    ]
}


@row("pymedplum.get_code_by_system")
def _code_by_system(env: Env) -> None:
    assert pymedplum.get_code_by_system(CONCEPT, "http://icd") == "E11.9"
    assert pymedplum.get_code_by_system(CONCEPT, "http://loinc.org") is None


@row("pymedplum.coding_parts")
def _coding_parts(env: Env) -> None:
    assert pymedplum.coding_parts(CONCEPT) == ("44054006", "http://snomed.info/sct", None, None)
    assert pymedplum.coding_parts({"text": "free text only"}) == (
        None,
        None,
        None,
        "free text only",
    )
    assert pymedplum.coding_parts(None) == (None, None, None, None)


META = {
    "account": {"reference": "Organization/org-1"},
    "accounts": [{"reference": "Organization/org-2"}],
}


@row("pymedplum.get_resource_accounts", "pymedplum.helpers.get_resource_accounts")
def _resource_accounts(env: Env) -> None:
    assert pymedplum.get_resource_accounts({"meta": META}) == [
        "Organization/org-1",
        "Organization/org-2",
    ]


@row("pymedplum.extract_account_references")
def _account_references(env: Env) -> None:
    assert pymedplum.extract_account_references(META) == [
        "Organization/org-1",
        "Organization/org-2",
    ]
    assert pymedplum.extract_account_references(None) == []


@row("pymedplum.resource_has_account", "pymedplum.helpers.resource_has_account")
def _has_account(env: Env) -> None:
    assert pymedplum.resource_has_account({"meta": META}, "Organization/org-1")
    assert not pymedplum.resource_has_account({"meta": META}, "Organization/org-3")


@row("pymedplum.to_fhir_json", "pymedplum.helpers.to_fhir_json")
def _to_fhir_json(env: Env) -> None:
    from pymedplum.fhir import HumanName

    dumped = pymedplum.to_fhir_json(
        Patient(name=[HumanName(given=["John"], family="Doe")], birth_date="1990-01-01")
    )
    assert dumped == {
        "resourceType": "Patient",
        "name": [{"given": ["John"], "family": "Doe"}],
        "birthDate": "1990-01-01",
    }
    plain = {"resourceType": "Patient"}
    assert pymedplum.to_fhir_json(plain) is plain  # a dict comes back as is


@row("pymedplum.helpers.decode_jwt_exp")
def _decode_jwt_exp(env: Env) -> None:
    import base64

    payload = (
        base64.urlsafe_b64encode(json.dumps({"exp": 1767225600}).encode()).decode().rstrip("=")
    )
    assert pymedplum.helpers.decode_jwt_exp(f"h.{payload}.s") == datetime(2026, 1, 1, tzinfo=UTC)
    assert pymedplum.helpers.decode_jwt_exp("not-a-jwt") is None


# ---- parameters, extensions -------------------------------------------------------------------

LOOKUP = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "name", "valueString": "LOINC"},
        {"name": "display", "valueString": "Heart rate"},
        {"name": "property", "part": [{"name": "code", "valueCode": "parent"}]},
    ],
}


@row("pymedplum.parameters_to_dict")
def _parameters_to_dict(env: Env) -> None:
    result = pymedplum.parameters_to_dict(LOOKUP)
    assert result["display"] == "Heart rate" and result["property"] == {"code": "parent"}


@row("pymedplum.get_parameter")
def _get_parameter(env: Env) -> None:
    assert pymedplum.get_parameter(LOOKUP, "display") == "Heart rate"
    assert pymedplum.get_parameter(LOOKUP, "missing") is None


@row("pymedplum.get_parameter_resource")
def _get_parameter_resource(env: Env) -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "return", "resource": {"resourceType": "Patient", "id": "1"}}],
    }
    assert pymedplum.get_parameter_resource(params, "return") == {
        "resourceType": "Patient",
        "id": "1",
    }


@row("pymedplum.dict_to_parameters")
def _dict_to_parameters(env: Env) -> None:
    assert pymedplum.dict_to_parameters({"count": 10, "active": True}) == {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "count", "valueInteger": 10},
            {"name": "active", "valueBoolean": True},
        ],
    }


EXT_URL = "http://example.org/ext"


@row("pymedplum.extensions.get_extension", "pymedplum.extensions.get_extensions")
def _get_extension(env: Env) -> None:
    from pymedplum import extensions

    resource = {
        "extension": [{"url": EXT_URL, "valueString": "a"}, {"url": EXT_URL, "valueString": "b"}]
    }
    assert extensions.get_extension(resource, EXT_URL) == {"url": EXT_URL, "valueString": "a"}
    assert [e["valueString"] for e in extensions.get_extensions(resource, EXT_URL)] == ["a", "b"]


@row("pymedplum.extensions.get_extension_value")
def _get_extension_value(env: Env) -> None:
    from pymedplum import extensions

    assert (
        extensions.get_extension_value(
            {"extension": [{"url": EXT_URL, "valueBoolean": True}]}, EXT_URL
        )
        is True
    )


@row("pymedplum.extensions.set_extension", "pymedplum.extensions.upsert_extension")
def _set_extension(env: Env) -> None:
    from pymedplum import extensions

    resource: dict[str, Any] = {"resourceType": "Patient"}
    extensions.set_extension(resource, EXT_URL, valueString="x")
    extensions.set_extension(resource, EXT_URL, value_string="y")  # replaced, not appended
    assert extensions.get_extensions(resource, EXT_URL) == [{"url": EXT_URL, "valueString": "y"}]
    extensions.upsert_extension(resource, {"url": EXT_URL, "valueBoolean": True}, key_url=EXT_URL)
    assert extensions.get_extensions(resource, EXT_URL) == [{"url": EXT_URL, "valueBoolean": True}]


@row("pymedplum.extensions.remove_extension")
def _remove_extension(env: Env) -> None:
    from pymedplum import extensions

    resource = {"extension": [{"url": EXT_URL, "valueString": "a"}]}
    extensions.remove_extension(resource, EXT_URL)
    assert extensions.get_extensions(resource, EXT_URL) == []


@row("pymedplum.extensions.get_nested_value")
def _nested_value(env: Env) -> None:
    from pymedplum import extensions

    window = {
        "url": "https://x/window",
        "extension": [{"url": "start", "valueDateTime": "2026-01-01T09:00:00Z"}],
    }
    assert extensions.get_nested_value(window, "start") == "2026-01-01T09:00:00Z"
    assert extensions.get_nested_value(window, "end") is None


@row(
    "pymedplum.extensions.service_type_reference_extension",
    "pymedplum.extensions.read_service_type_references",
    "pymedplum.extensions.SERVICE_TYPE_REFERENCE_URL",
)
def _service_type(env: Env) -> None:
    from pymedplum import extensions

    concept = extensions.service_type_reference_extension("HealthcareService/hs-1")
    assert concept["extension"] == [
        {
            "url": extensions.SERVICE_TYPE_REFERENCE_URL,
            "valueReference": {"reference": "HealthcareService/hs-1"},
        }
    ]
    slot = {"resourceType": "Slot", "serviceType": [concept, {"text": "untagged"}]}
    assert extensions.read_service_type_references(slot) == ["HealthcareService/hs-1"]


# ---- ProjectMembership.access helpers (pymedplum and pymedplum.access) ------------------------


@row("pymedplum.make_project_membership_access", "pymedplum.access.make_project_membership_access")
def _make_access(env: Env) -> None:
    from pymedplum import access

    assert access.make_project_membership_access is pymedplum.make_project_membership_access
    entry = access.make_project_membership_access(
        "AccessPolicy/abc", {"organization": "Organization/org-a", "mode": "active"}
    )
    assert entry == {
        "policy": {"reference": "AccessPolicy/abc"},
        "parameter": [
            {"name": "organization", "valueReference": {"reference": "Organization/org-a"}},
            {"name": "mode", "valueString": "active"},
        ],
    }


@row("pymedplum.access.normalize_access_entry", "pymedplum.normalize_access_entry")
def _normalize_entry(env: Env) -> None:
    from pymedplum import access
    from pymedplum.fhir import ProjectMembershipAccess, ProjectMembershipAccessParameter, Reference

    model = ProjectMembershipAccess(
        policy=Reference(reference="AccessPolicy/abc"),
        parameter=[
            ProjectMembershipAccessParameter(
                name="organization", value_reference=Reference(reference="Organization/a")
            )
        ],
    )
    assert access.normalize_access_entry(model) == {
        "policy": {"reference": "AccessPolicy/abc"},
        "parameter": [{"name": "organization", "valueReference": {"reference": "Organization/a"}}],
    }
    original = {"policy": {"reference": "AccessPolicy/abc"}}
    copy = access.normalize_access_entry(original)
    copy["policy"]["reference"] = "changed"
    assert original == {"policy": {"reference": "AccessPolicy/abc"}}  # a deep copy
    with pytest.raises(TypeError):
        access.normalize_access_entry({"policy": {1, 2}})
    assert pymedplum.normalize_access_entry is access.normalize_access_entry


@row(
    "pymedplum.access.normalize_access_policy_reference",
    "pymedplum.normalize_access_policy_reference",
)
def _normalize_policy_reference(env: Env) -> None:
    from pymedplum import access

    for shape in ("abc", "AccessPolicy/abc", {"reference": "AccessPolicy/abc"}):
        assert access.normalize_access_policy_reference(shape) == {"reference": "AccessPolicy/abc"}
    with pytest.raises(ValueError):
        access.normalize_access_policy_reference("Patient/abc")


@row("pymedplum.access.normalize_access_policy_id", "pymedplum.normalize_access_policy_id")
def _normalize_policy_id(env: Env) -> None:
    from pymedplum import access

    assert access.normalize_access_policy_id({"reference": "AccessPolicy/abc"}) == "abc"


@row(
    "pymedplum.access.get_project_membership_access_policy_id",
    "pymedplum.get_project_membership_access_policy_id",
)
def _policy_id_of_entry(env: Env) -> None:
    from pymedplum import access

    assert access.get_project_membership_access_policy_id(ENTRY_A) == "p"
    assert (
        access.get_project_membership_access_policy_id({"policy": {"reference": "Patient/x"}})
        is None
    )


@row(
    "pymedplum.access.get_project_membership_access_parameter",
    "pymedplum.get_project_membership_access_parameter",
)
def _parameter_of_entry(env: Env) -> None:
    from pymedplum import access

    assert (
        access.get_project_membership_access_parameter(ENTRY_A, "organization")
        == ENTRY_A["parameter"][0]
    )
    assert access.get_project_membership_access_parameter(ENTRY_A, "missing") is None


OTHER = {"policy": {"reference": "AccessPolicy/other"}}


@row("pymedplum.access.partition_access", "pymedplum.partition_access")
def _partition(env: Env) -> None:
    from pymedplum import access

    managed, untouched = access.partition_access([OTHER, ENTRY_A, {"policy": {}}], {"p"})
    assert managed == [ENTRY_A] and untouched == [OTHER, {"policy": {}}]
    with pytest.raises(ValueError):
        access.partition_access([], set())


@row("pymedplum.access.build_merged_access", "pymedplum.build_merged_access")
def _build_merged(env: Env) -> None:
    from pymedplum import access

    assert access.build_merged_access([OTHER], [ENTRY_A]) == [OTHER, ENTRY_A]


@row("pymedplum.access.merged_equals_remote", "pymedplum.merged_equals_remote")
def _merged_equals(env: Env) -> None:
    from pymedplum import access

    reordered = {"parameter": ENTRY_A["parameter"], "policy": ENTRY_A["policy"]}
    assert access.merged_equals_remote([ENTRY_A], [reordered])
    assert access.merged_equals_remote([], None)
    assert not access.merged_equals_remote([ENTRY_A, OTHER], [OTHER, ENTRY_A])


@row("pymedplum.access.validate_managed_access", "pymedplum.validate_managed_access")
def _validate_managed(env: Env) -> None:
    from pymedplum import access

    access.validate_managed_access([ENTRY_A], {"p"})
    with pytest.raises(ValueError, match=r"managed_access\[0\]"):
        access.validate_managed_access([OTHER], {"p"})


@row("pymedplum.access.MergeResult", "pymedplum.MergeResult")
def _merge_result_type(env: Env) -> None:
    from pymedplum import access

    result = access.MergeResult(updated=True, version_id="2", managed_count=1, untouched_count=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.updated = False  # type: ignore[misc]
    assert access.MergeResult is pymedplum.MergeResult


# ---- types, config ----------------------------------------------------------------------------


@row("pymedplum.PatchOperation", "pymedplum.types.PatchOperation")
def _patch_operation(env: Env) -> None:
    from pymedplum.types import PatchOperation

    op: PatchOperation = {"op": "replace", "path": "/active", "value": False}
    env.client().patch_resource("Patient", "1", [op])
    assert env.body() == [op]
    assert pymedplum.PatchOperation is PatchOperation
    assert set(PatchOperation.__annotations__) == {"op", "path", "value"}


@row("pymedplum.SummaryMode", "pymedplum.types.SummaryMode")
def _summary_mode(env: Env) -> None:
    assert set(get_args(pymedplum.SummaryMode)) == {"true", "text", "data", "count", "false"}
    for mode in get_args(pymedplum.SummaryMode):
        env.client().search_with_options("Patient", summary=mode)
        assert query(env.last)["_summary"] == [mode]


@row("pymedplum.TotalMode", "pymedplum.types.TotalMode")
def _total_mode(env: Env) -> None:
    assert set(get_args(pymedplum.TotalMode)) == {"none", "estimate", "accurate"}
    env.client().search_with_options("Patient", total="accurate")
    assert query(env.last)["_total"] == ["accurate"]


@row("pymedplum.types.QueryTypes")
def _query_types(env: Env) -> None:
    from pymedplum.types import QueryTypes

    queries: list[QueryTypes] = [{"family": "Smith"}, [("family", "Smith")]]
    for q in queries:
        env.client().search_resources("Patient", q)
        assert query(env.last) == {"family": ["Smith"]}


@row("pymedplum.types.UpdateResult", "pymedplum.UpdateResult")
def _update_result_type(env: Env) -> None:
    from pymedplum.types import UpdateResult

    assert UpdateResult is pymedplum.UpdateResult
    result = UpdateResult(wrote=False, version_id="1", resource={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.wrote = True  # type: ignore[misc]


@row("pymedplum.config.MedplumClientConfig")
def _client_config(env: Env) -> None:
    from pymedplum.config import MedplumClientConfig

    config = MedplumClientConfig(
        base_url="https://medplum.test", client_id="cid", client_secret="s3cr3t-value"
    )
    assert config.base_url == "https://medplum.test/"
    assert "s3cr3t-value" not in repr(config)
    http = httpx.Client(transport=httpx.MockTransport(env.fake.handle))
    with MedplumClient(**config.to_dict(), http_client=http) as client:
        client.read_resource("Patient", "1")
    assert "client_secret=s3cr3t-value" in env.fake.token_requests[0].content.decode()


# ---- hooks ------------------------------------------------------------------------------------


@row("pymedplum.hooks.PreparedRequest", "pymedplum.hooks.BeforeRequestHook")
def _prepared_request(env: Env) -> None:
    from pymedplum.hooks import BeforeRequestHook, PreparedRequest

    seen: list[PreparedRequest] = []

    def hook(request: PreparedRequest) -> PreparedRequest | None:
        seen.append(request)
        return dataclasses.replace(
            request, headers={**request.headers, "Authorization": "Bearer evil"}
        )

    typed: BeforeRequestHook = hook
    env.client(default_on_behalf_of="ProjectMembership/a", before_request=typed).read_resource(
        "Patient", "1"
    )
    [request] = seen
    assert (request.method, request.url) == ("GET", BASE + "fhir/R4/Patient/1")
    lowered = {k.lower() for k in request.headers}
    assert "authorization" not in lowered and "x-medplum-on-behalf-of" not in lowered
    assert header(env.last, "authorization") == "Bearer tok-1"  # the injected one was stripped
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.url = "x"  # type: ignore[misc]


@row(
    "pymedplum.hooks.RequestEvent",
    "pymedplum.hooks.RequestAttempt",
    "pymedplum.hooks.OnRequestCompleteHook",
    "pymedplum.hooks.RequestAction",
    "pymedplum.hooks.RequestOutcome",
)
def _request_event(env: Env) -> None:
    from pymedplum.hooks import OnRequestCompleteHook, RequestAction, RequestEvent, RequestOutcome

    events: list[RequestEvent] = []
    typed: OnRequestCompleteHook = events.append
    env.fake.script(
        "GET",
        "/fhir/R4/Patient/1",
        httpx.Response(503),
        httpx.Response(200, json={"resourceType": "Patient", "id": "1"}),
    )
    env.client(on_request_complete=typed, default_on_behalf_of="ProjectMembership/a").read_resource(
        "Patient", "1"
    )
    [event] = events
    assert [a.status_code for a in event.attempts] == [503, 200]
    assert [a.attempt_number for a in event.attempts] == [1, 2]
    assert [a.on_behalf_of for a in event.attempts] == ["ProjectMembership/a"] * 2
    assert event.attempts[0].duration_seconds >= 0
    assert event.action in get_args(RequestAction) and event.outcome in get_args(RequestOutcome)
    assert (event.path, event.path_template, event.resource_id) == (
        "/fhir/R4/Patient/1",
        "/fhir/R4/Patient/{id}",
        "1",
    )
    assert event.final_status_code == 200 and event.final_exception is None
    assert event.started_at <= event.ended_at


@row("RequestEvent.to_phi_audit_dict", "RequestEvent.to_non_phi_dict")
def _event_serializers(env: Env) -> None:
    events: list[Any] = []
    env.client(on_request_complete=events.append).search_resources("Patient", {"name": PHI})
    [event] = events
    assert (
        "query_params" not in event.to_phi_audit_dict()
        or event.to_phi_audit_dict()["query_params"] is None
    )
    assert event.to_phi_audit_dict(include_query_params=True)["query_params"] == {"name": [PHI]}
    non_phi = json.dumps(event.to_non_phi_dict())
    assert PHI not in non_phi and "tok-1" not in non_phi
    json.dumps(event.to_phi_audit_dict())  # JSON-serializable


@row("pymedplum.hooks.AsyncOnRequestCompleteHook")
def _async_hook(env: Env) -> None:
    from pymedplum.hooks import AsyncOnRequestCompleteHook

    events: list[Any] = []

    async def record(event: Any) -> None:
        events.append(event)

    typed: AsyncOnRequestCompleteHook = record

    async def main() -> None:
        async with env.aclient(on_request_complete=typed) as client:
            await client.read_resource("Patient", "1")

    run(main())
    assert len(events) == 1
    with pytest.raises(TypeError):
        MedplumClient(BASE, on_request_complete=record)  # the sync client refuses it


@row("pymedplum.hooks.serialize_exception")
def _serialize_exception(env: Env) -> None:
    from pymedplum.hooks import serialize_exception

    env.reply("POST", "/fhir/R4/Patient", 400, json=OUTCOME_400)
    with pytest.raises(pymedplum.ValidationError) as caught:
        env.client().create_resource({"resourceType": "Patient"})
    serialized = serialize_exception(caught.value)
    assert serialized["type"] == "ValidationError" and PHI not in json.dumps(serialized)
    assert serialize_exception(RuntimeError("boom"))["type"] == "RuntimeError"


# ---- models -----------------------------------------------------------------------------------


@row("pymedplum.fhir models (Patient, HumanName, ...)", "pymedplum.fhir.patient.Patient")
def _models(env: Env) -> None:
    from pymedplum.fhir import HumanName
    from pymedplum.fhir.patient import Patient as FromModule

    assert FromModule is Patient
    a = Patient(birth_date="1985-01-15", name=[HumanName(family="Smith")])
    b = Patient(birthDate="1985-01-15", name=[{"family": "Smith"}])
    assert a.birth_date == b.birth_date and a == b
    with pytest.raises(ValueError):
        Patient(active="yes")  # wrong type
    with pytest.raises(ValueError):
        Patient(birth_date="01/15/1990")  # not a FHIR date


@row("keyword fields end in _ (Coverage.class_)")
def _keyword_fields(env: Env) -> None:
    from pymedplum.fhir import Coverage

    coverage = Coverage(
        status="active",
        beneficiary={"reference": "Patient/1"},
        payor=[{"reference": "Organization/1"}],
        class_=[{"type": {"coding": [{"code": "group"}]}, "value": "GRP12345"}],
    )
    assert pymedplum.to_fhir_json(coverage)["class"][0]["value"] == "GRP12345"


@row(
    "resource.medplum_account",
    "resource.medplum_accounts",
    "resource.medplum_author",
    "resource.medplum_project",
    "resource.medplum_compartment",
)
def _meta_properties(env: Env) -> None:
    patient = env.client().read_resource("Patient", "123", as_fhir=Patient)
    assert patient.medplum_accounts == [] and patient.medplum_account is None
    stored = Patient.model_validate(
        {
            "resourceType": "Patient",
            "meta": {
                **META,
                "author": {"reference": "Practitioner/np-7"},
                "project": "proj-1",
                "compartment": [{"reference": "Project/proj-1"}],
            },
        }
    )
    assert stored.medplum_accounts == ["Organization/org-1", "Organization/org-2"]
    assert stored.medplum_account == "Organization/org-1"
    assert stored.medplum_author == "Practitioner/np-7"
    assert stored.medplum_project == "proj-1"
    assert stored.medplum_compartment == [{"reference": "Project/proj-1"}]


# ---- the tests --------------------------------------------------------------------------------


@pytest.fixture
def env(fake: FakeMedplum, sleeps: list[float]) -> Iterator[Env]:
    made: list[MedplumClient] = []
    yield Env(fake, made)
    for client in made:
        client.close()


@pytest.mark.parametrize("name", sorted(ROWS))
def test_documented_name_behaves_as_documented(env: Env, name: str) -> None:
    ROWS[name](env)


def _docs_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOCS_TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`") and cells[1].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_the_docs_table_lists_every_row() -> None:
    documented = _docs_rows()
    assert set(documented) == set(ROWS), (
        f"only in docs: {sorted(set(documented) - set(ROWS))}; "
        f"only in tests: {sorted(set(ROWS) - set(documented))}"
    )


def test_every_row_names_its_check_in_the_docs() -> None:
    for name, cell in _docs_rows().items():
        if name in ROWS:
            assert ROWS[name].__name__.lstrip("_") in cell, name


def test_every_client_row_exists_on_both_clients() -> None:
    # The checks drive the sync client; the async client has the same names (and
    # tests/unit/test_signatures.py checks that the parameters match).
    sync, async_ = MedplumClient(BASE), AsyncMedplumClient(BASE)
    for name in ROWS:
        if name.startswith("client.") and "(" not in name:
            attribute = name.split(".", 1)[1]
            assert hasattr(sync, attribute) and hasattr(async_, attribute), name
    sync.close()


def test_no_row_names_an_underscore_name() -> None:
    # Underscore names are not part of the API.
    parts = [p for n in ROWS for p in n.replace("(", ".").split(".")]
    assert not [p for p in parts if p.startswith("_") and p != "__version__"]
