"""Hooks: before_request sanitizing, on_request_complete as an audit event contract."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pymedplum import MedplumClient, NotFoundError, PreparedRequest, RequestEvent
from pymedplum._obo import OBO_HEADER

from .conftest import Driver, FakeMedplum, header

PATIENT_ID = "a1b2c3d4-patient-phi"
OBO = "ProjectMembership/actor-1"


def events_of(make: Callable[..., Driver], **kw: Any) -> tuple[Driver, list[RequestEvent]]:
    events: list[RequestEvent] = []
    return make(on_request_complete=events.append, **kw), events


# ------------------------------------------------------------ before_request


def test_before_request_sees_no_token_and_no_obo(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    seen: list[PreparedRequest] = []
    api = make(before_request=seen.append, default_on_behalf_of=OBO)
    api.read_resource("Patient", "1")
    (request,) = seen
    lowered = {k.lower() for k in request.headers}
    assert "authorization" not in lowered and OBO_HEADER.lower() not in lowered
    assert request.method == "GET" and request.url.endswith("/fhir/R4/Patient/1")
    # ...while the wire request still carried both.
    assert header(fake.api_requests[0], "authorization") == "Bearer tok-1"
    assert header(fake.api_requests[0], OBO_HEADER) == OBO


def test_prepared_request_is_frozen(make: Callable[..., Driver]) -> None:
    seen: list[PreparedRequest] = []
    make(before_request=seen.append).read_resource("Patient", "1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].url = "https://evil.test/"  # type: ignore[misc]
    with pytest.raises(TypeError):
        seen[0].headers["X-New"] = "1"  # type: ignore[index]


def test_returned_copy_is_sent(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    def add_trace(request: PreparedRequest) -> PreparedRequest:
        return request.replace(headers={**request.headers, "X-Trace": "t-1"})

    make(before_request=add_trace).read_resource("Patient", "1")
    assert header(fake.api_requests[0], "x-trace") == "t-1"


def test_returned_body_is_sent(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    def tag(request: PreparedRequest) -> PreparedRequest:
        return request.replace(json_body={**request.json_body, "active": True})

    make(before_request=tag).create_resource({"resourceType": "Patient"})
    assert json.loads(fake.api_requests[0].content) == {"resourceType": "Patient", "active": True}


def test_authorization_from_hook_is_stripped_and_logged(
    make: Callable[..., Driver], fake: FakeMedplum, caplog: pytest.LogCaptureFixture
) -> None:
    def inject(request: PreparedRequest) -> PreparedRequest:
        return request.replace(
            headers={
                **request.headers,
                "Authorization": "Bearer stolen",
                OBO_HEADER: "x",
                "X-Ok": "1",
            }
        )

    with caplog.at_level(logging.WARNING, logger="pymedplum.hooks"):
        make(before_request=inject).read_resource("Patient", "1")
    sent = fake.api_requests[0]
    assert header(sent, "authorization") == "Bearer tok-1"
    assert header(sent, OBO_HEADER) is None
    assert header(sent, "x-ok") == "1"
    assert any(r.name == "pymedplum.hooks" and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "AUTHORIZATION",
        "proxy-authorization",
        "Proxy-Authorization",
        "cookie",
        "Cookie",
        "x-medplum-on-behalf-of",
        "X-MEDPLUM-ON-BEHALF-OF",
    ],
)
def test_reserved_header_from_hook_never_reaches_the_wire_in_any_spelling(
    make: Callable[..., Driver], fake: FakeMedplum, name: str
) -> None:
    # A spelling other than the client's own (`Authorization`) is not overwritten by it:
    # only the stripping keeps it off the wire.
    def inject(request: PreparedRequest) -> PreparedRequest:
        return request.replace(headers={**request.headers, name: "stolen"})

    make(before_request=inject).read_resource("Patient", "1")
    sent = fake.api_requests[0]
    assert [k for k, v in sent.headers.multi_items() if v == "stolen"] == []
    assert sent.headers.get_list("authorization") == ["Bearer tok-1"]


def test_cross_origin_url_from_hook_is_rejected_and_logged(
    make: Callable[..., Driver], fake: FakeMedplum, caplog: pytest.LogCaptureFixture
) -> None:
    def redirect(request: PreparedRequest) -> PreparedRequest:
        return request.replace(url="https://evil.test/fhir/R4/Patient/1?name=Smith")

    with caplog.at_level(logging.WARNING, logger="pymedplum.hooks"):
        make(before_request=redirect).read_resource("Patient", "1")
    assert [r.url.host for r in fake.requests] == ["medplum.test", "medplum.test"]
    warnings = [r for r in caplog.records if r.name == "pymedplum.hooks"]
    assert warnings and warnings[0].levelno == logging.WARNING
    assert "Smith" not in warnings[0].getMessage()


def test_same_origin_url_change_is_allowed(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    def add_param(request: PreparedRequest) -> PreparedRequest:
        return request.replace(url=request.url + "?_elements=id")

    make(before_request=add_param).read_resource("Patient", "1")
    assert fake.api_requests[0].url.query == b"_elements=id"


def test_failing_hooks_are_logged_and_never_fail_the_call(
    make: Callable[..., Driver], caplog: pytest.LogCaptureFixture
) -> None:
    def boom(_: object) -> None:
        raise RuntimeError("hook bug mentioning Smith")

    with caplog.at_level(logging.WARNING, logger="pymedplum.hooks"):
        result = make(before_request=boom, on_request_complete=boom).read_resource("Patient", "1")
    assert result["id"] == "1"
    messages = [r.getMessage() for r in caplog.records if r.name == "pymedplum.hooks"]
    assert len(messages) == 2 and all(r.levelno == logging.WARNING for r in caplog.records)
    assert not any("Smith" in m for m in messages)


# ------------------------------------------------------------ on_request_complete


def test_fires_once_per_logical_call_with_every_attempt(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", f"/fhir/R4/Patient/{PATIENT_ID}", httpx.Response(429), httpx.Response(503))
    api, events = events_of(make)
    api.read_resource("Patient", PATIENT_ID, on_behalf_of=OBO)
    (event,) = events
    assert [a.status_code for a in event.attempts] == [429, 503, 200]
    assert [a.attempt_number for a in event.attempts] == [1, 2, 3]
    assert all(a.on_behalf_of == OBO for a in event.attempts)
    assert all(a.duration_seconds >= 0 for a in event.attempts)
    assert event.attempts[0].retry_delay_seconds is not None
    assert event.final_status_code == 200 and event.outcome == "success"
    assert event.action == "read" and event.resource_type == "Patient"
    assert event.resource_id == PATIENT_ID
    assert event.path_template == "/fhir/R4/Patient/{id}"
    assert event.ended_at >= event.started_at


def test_attempts_record_the_401_replay(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(401))
    api, events = events_of(make)
    api.read_resource("Patient", "1")
    assert [a.status_code for a in events[0].attempts] == [401, 200]


def test_fires_on_failure_with_the_final_exception(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(404))
    api, events = events_of(make)
    with pytest.raises(NotFoundError) as caught:
        api.read_resource("Patient", "1")
    (event,) = events
    assert event.final_exception is caught.value
    assert event.outcome == "error" and event.final_status_code == 404


def test_fires_when_no_attempt_reached_the_wire(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.token_replies.append(httpx.Response(401, json={"error": "invalid_client"}))
    api, events = events_of(make)
    with pytest.raises(Exception):  # noqa: B017 - the type is not the point here
        api.read_resource("Patient", "1")
    assert len(events) == 1 and events[0].attempts == () and events[0].outcome == "error"


def test_views_split_phi_from_non_phi(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api, events = events_of(make)
    api.search_resources("Patient", {"family": "Smithson", "_id": PATIENT_ID}, on_behalf_of=OBO)
    api.read_resource("Patient", PATIENT_ID, on_behalf_of=OBO)
    search, read = events
    phi = read.to_phi_audit_dict()
    assert phi["path"].endswith(PATIENT_ID) and phi["resource_id"] == PATIENT_ID
    assert phi["attempts"][0]["on_behalf_of"] == OBO
    assert "query_params" not in search.to_phi_audit_dict()
    assert search.to_phi_audit_dict(include_query_params=True)["query_params"]["family"] == [
        "Smithson"
    ]
    for event in (search, read):
        text = json.dumps(event.to_non_phi_dict())  # also proves JSON-serializable
        assert PATIENT_ID not in text and "Smithson" not in text and OBO not in text
        json.dumps(event.to_phi_audit_dict(include_query_params=True))


def test_event_never_holds_token_body_or_raw_query(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api, events = events_of(make)
    api.create_resource({"resourceType": "Patient", "name": [{"family": "Bodyname"}]})
    api.search_resources("Patient", {"family": "Querystring"})
    for event in events:
        dumped = json.dumps(event.to_phi_audit_dict()) + repr(event)
        assert "tok-1" not in dumped and "Bodyname" not in dumped and "Querystring" not in dumped
        assert not hasattr(event, "query_string") and not hasattr(event, "body")


def test_event_is_frozen_and_slotted(make: Callable[..., Driver]) -> None:
    api, events = events_of(make)
    api.read_resource("Patient", "1")
    event = events[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.method = "DELETE"  # type: ignore[misc]
    assert not hasattr(event, "__dict__") and not hasattr(event.attempts[0], "__dict__")


def test_actions_are_classified(make: Callable[..., Driver]) -> None:
    api, events = events_of(make)
    api.create_resource({"resourceType": "Patient"})
    api.update_resource({"resourceType": "Patient", "id": "1"})
    api.patch_resource("Patient", "1", [])
    api.delete_resource("Patient", "1")
    api.search_resources("Patient")
    api.vread_resource("Patient", "1", "2")
    api.execute_batch({"resourceType": "Bundle"})
    api.execute_graphql("{ PatientList { id } }")
    api.get("auth/me")
    assert [e.action for e in events] == [
        "create",
        "update",
        "patch",
        "delete",
        "search",
        "read",
        "batch_or_transaction",
        "operation",
        None,
    ]
    assert events[5].path_template == "/fhir/R4/Patient/{id}/_history/{version_id}"


def test_async_hooks_are_awaited_by_the_async_client(fake: FakeMedplum) -> None:
    events: list[RequestEvent] = []
    seen: list[PreparedRequest] = []

    async def record(event: RequestEvent) -> None:
        await asyncio.sleep(0)
        events.append(event)

    async def before(request: PreparedRequest) -> None:
        seen.append(request)

    async def main() -> None:
        async with fake.async_client(on_request_complete=record, before_request=before) as c:
            await c.read_resource("Patient", "1")

    asyncio.run(main())
    assert len(events) == 1 and len(seen) == 1


def test_sync_client_refuses_async_hooks_at_construction() -> None:
    async def record(event: RequestEvent) -> None: ...

    class AsyncCallable:
        async def __call__(self, event: RequestEvent) -> None: ...

    for hook in (record, AsyncCallable()):
        with pytest.raises(TypeError):
            MedplumClient(on_request_complete=hook)
        with pytest.raises(TypeError):
            MedplumClient(before_request=hook)


def test_non_callable_hook_is_refused() -> None:
    with pytest.raises(TypeError):
        MedplumClient(on_request_complete="log")  # type: ignore[arg-type]


def test_job_status_polls_are_not_described_as_resources() -> None:
    from pymedplum._core import describe_path

    route = describe_path("GET", "/fhir/R4/job/5eed0000-aaaa/status", "/fhir/R4/")
    assert route.template == "/fhir/R4/job/{id}/status"
    assert route.resource_type is None and route.action is None
