"""Faults and bad input: answers the client cannot use, headers given twice, ids with a
line break, lone surrogates, deep nesting, paging loops, oversized bodies, and secrets in
traceback frames."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import pymedplum
from pymedplum import (
    AsyncMedplumClient,
    AuthenticationError,
    InsecureTransportError,
    InvalidResponseError,
    MedplumClient,
    MedplumError,
    NetworkError,
    NotFoundError,
    RequestEvent,
    ResponseTooLargeError,
    ResponseValidationError,
    ServerError,
    TokenRefreshCooldownError,
    build_reference,
    dict_to_parameters,
    parse_reference,
)
from pymedplum._obo import OBO_HEADER
from pymedplum.fhir import Extension, Patient
from pymedplum.transaction import TransactionBuilder

from .conftest import BASE, Driver, FakeMedplum

FHIR = "/fhir/R4/"


def with_events(make: Callable[..., Driver], **kw: Any) -> tuple[Driver, list[RequestEvent]]:
    events: list[RequestEvent] = []
    return make(on_request_complete=events.append, **kw), events


# ------------------------------------------------------------ answers the client cannot use


def test_a_2xx_html_body_is_an_invalid_response_that_names_the_call(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "POST",
        FHIR + "Patient",
        httpx.Response(201, text="<html>maintenance</html>", headers={"content-type": "text/html"}),
    )
    api, events = with_events(make)
    with pytest.raises(InvalidResponseError) as caught:
        api.create_resource({"resourceType": "Patient"})
    error = caught.value
    assert isinstance(error, MedplumError) and isinstance(error, ValueError)
    assert (error.status_code, error.method, error.path_template) == (201, "POST", FHIR + "Patient")
    assert error.possibly_committed is True  # a write answered 201: it was applied
    assert "not valid JSON" in str(error) and "text/html" in str(error)
    assert "maintenance" not in str(error)  # never the body
    assert error.response is not None and error.response.text == "<html>maintenance</html>"
    (event,) = events
    assert event.outcome == "error" and event.final_exception is error
    assert event.final_status_code == 201 and event.attempts[-1].exception is error
    assert len(fake.api_requests) == 1  # a write is never replayed for this


def test_a_truncated_read_is_an_invalid_response_not_committed(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", FHIR + "Patient/1", httpx.Response(200, content=b'{"resourceType": "Pat'))
    with pytest.raises(InvalidResponseError) as caught:
        make().read_resource("Patient", "1")
    assert caught.value.possibly_committed is False and caught.value.method == "GET"
    assert caught.value.path_template == FHIR + "Patient/{id}"


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("GET", FHIR + "Patient/1", lambda api: api.read_resource("Patient", "1")),
        ("POST", FHIR + "Patient", lambda api: api.create_resource({"resourceType": "Patient"})),
        (
            "PUT",
            FHIR + "Patient/1",
            lambda api: api.update_resource({"resourceType": "Patient", "id": "1"}),
        ),
        ("GET", FHIR + "Patient", lambda api: api.search_resources("Patient")),
        ("POST", FHIR, lambda api: api.execute_batch({"resourceType": "Bundle"})),
    ],
    ids=["read", "create", "update", "search", "batch"],
)
def test_an_empty_success_body_never_returns_none_for_a_dict(
    make: Callable[..., Driver],
    fake: FakeMedplum,
    method: str,
    path: str,
    call: Callable[[Driver], Any],
) -> None:
    fake.script(method, path, httpx.Response(200))
    with pytest.raises(InvalidResponseError, match="the response body is empty"):
        call(make())


def test_the_low_level_methods_document_none_for_an_empty_body(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/auth/ping", httpx.Response(200))
    fake.script("POST", "/auth/ping", httpx.Response(204))
    api = make()
    assert api.get("auth/ping") is None and api.post("auth/ping", json={}) is None


def test_an_as_fhir_validation_failure_fails_the_call_and_its_event(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "GET",
        FHIR + "Patient/1",
        httpx.Response(200, json={"resourceType": "Patient", "id": "1", "gender": "John Smith"}),
    )
    api, events = with_events(make)
    with pytest.raises(ResponseValidationError) as caught:
        api.read_resource("Patient", "1", as_fhir=Patient)
    error = caught.value
    assert isinstance(error, InvalidResponseError) and error.status_code == 200
    assert "Patient.gender" in str(error) and "John" not in str(error)
    assert "Patient.gender" in str(error.validation_error)
    assert events[0].outcome == "error" and events[0].final_exception is error


def test_a_body_over_max_response_bytes_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    big = {"resourceType": "Patient", "id": "1", "text": {"div": "x" * 5000}}
    fake.script("GET", FHIR + "Patient/1", httpx.Response(200, json=big))
    fake.script("GET", FHIR + "Patient/2", httpx.Response(200, json={"resourceType": "Patient"}))
    api, events = with_events(make, max_response_bytes=1000)
    with pytest.raises(ResponseTooLargeError) as caught:
        api.read_resource("Patient", "1")
    assert caught.value.limit == 1000 and "max_response_bytes (1000 bytes)" in str(caught.value)
    assert events[0].outcome == "error" and events[0].attempts[0].exception is caught.value
    assert api.read_resource("Patient", "2") == {"resourceType": "Patient"}


def test_max_response_bytes_has_a_default_and_can_be_lifted() -> None:
    with MedplumClient(BASE) as default, MedplumClient(BASE, max_response_bytes=None) as lifted:
        assert default._max_response_bytes == 64 * 1024 * 1024
        assert lifted._max_response_bytes is None
    with pytest.raises(ValueError, match="max_response_bytes"):
        MedplumClient(BASE, max_response_bytes=0)


def _page(self_url: str, next_url: str | None) -> httpx.Response:
    link = [{"relation": "next", "url": next_url}] if next_url else []
    entry = [{"resource": {"resourceType": "Patient", "id": self_url[-1]}}]
    return httpx.Response(
        200, json={"resourceType": "Bundle", "type": "searchset", "link": link, "entry": entry}
    )


def test_paging_stops_when_a_next_link_repeats(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    page2 = BASE + "fhir/R4/Patient?_page=2"
    fake.script("GET", FHIR + "Patient", _page("p1", page2), _page("p2", page2))
    with pytest.raises(InvalidResponseError, match="leads back to a page already read"):
        make().search_resource_pages("Patient")
    assert len(fake.api_requests) == 2


def test_history_paging_stops_when_a_next_link_repeats(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    first = BASE + "fhir/R4/Patient/1/_history"
    fake.script("GET", FHIR + "Patient/1/_history", _page("h1", first))
    with pytest.raises(InvalidResponseError, match="leads back to a page already read"):
        make().read_history_pages("Patient", "1")
    assert len(fake.api_requests) == 1


# ------------------------------------------------------------ headers given per call


def test_authorization_in_headers_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    for name in ("authorization", "Authorization", "PROXY-AUTHORIZATION"):
        with pytest.raises(ValueError, match="set by the client from its credentials"):
            make().read_resource("Patient", "1", headers={name: "Bearer someone-else"})
    assert fake.api_requests == []


@pytest.mark.parametrize("name", ["x-medplum-on-behalf-of", "X-MEDPLUM-ON-BEHALF-OF", OBO_HEADER])
def test_an_obo_header_in_headers_acts_as_the_per_call_kwarg(
    make: Callable[..., Driver], fake: FakeMedplum, name: str
) -> None:
    api, events = with_events(make, default_on_behalf_of="ProjectMembership/default")
    with api.client.on_behalf_of("ProjectMembership/ambient"):
        api.read_resource("Patient", "1", headers={name: "ProjectMembership/given"})
    sent = fake.api_requests[0]
    assert sent.headers.get_list(OBO_HEADER) == ["ProjectMembership/given"]
    assert len(sent.headers.get_list("authorization")) == 1
    assert events[0].attempts[0].on_behalf_of == "ProjectMembership/given"


def test_an_empty_obo_header_clears_like_the_empty_kwarg(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api, events = with_events(make, default_on_behalf_of="ProjectMembership/default")
    api.create_resource({"resourceType": "Patient"}, headers={"x-medplum-on-behalf-of": ""})
    assert fake.api_requests[0].headers.get_list(OBO_HEADER) == []
    assert events[0].attempts[0].on_behalf_of is None


def test_an_obo_header_that_disagrees_with_the_kwarg_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make()
    with pytest.raises(ValueError, match="name different memberships"):
        api.read_resource(
            "Patient",
            "1",
            headers={"x-medplum-on-behalf-of": "ProjectMembership/a"},
            on_behalf_of="ProjectMembership/b",
        )
    assert fake.api_requests == []
    api.read_resource(
        "Patient",
        "1",
        headers={"x-medplum-on-behalf-of": "ProjectMembership/a"},
        on_behalf_of="ProjectMembership/a",
    )
    assert fake.api_requests[0].headers.get_list(OBO_HEADER) == ["ProjectMembership/a"]


def test_a_header_given_in_another_case_replaces_the_sdks(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().create_resource(
        {"resourceType": "Patient"},
        headers={"content-type": "application/json", "ACCEPT": "application/json"},
    )
    sent = fake.api_requests[0]
    assert sent.headers.get_list("content-type") == ["application/json"]
    assert sent.headers.get_list("accept") == ["application/json"]


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "caf\u00e9", "\ud800"])
def test_a_header_value_that_cannot_be_sent_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum, value: str
) -> None:
    with pytest.raises(ValueError, match="must be printable ASCII") as caught:
        make().read_resource("Patient", "1", headers={"X-Trace": value})
    assert not isinstance(caught.value, UnicodeError)
    assert fake.api_requests == []


# ------------------------------------------------------------ ids and types with a line break


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.read_resource("Patient", "abc\n"),
        lambda api: api.read_resource("Patient\n", "abc"),
        lambda api: api.vread_resource("Patient", "abc", "1\n"),
        lambda api: api.delete_resource("Patient", "abc\n"),
        lambda api: api.update_resource({"resourceType": "Patient", "id": "abc\n"}),
        lambda api: api.execute_operation("Patient", "everything\n", resource_id="abc"),
        lambda api: api.create_resource_if_none_exist({"resourceType": "Patient\n"}, "x=1"),
    ],
    ids=["read id", "read type", "vread version", "delete", "update", "operation", "create type"],
)
def test_a_trailing_line_break_is_refused_by_our_checks(
    make: Callable[..., Driver], fake: FakeMedplum, call: Callable[[Driver], Any]
) -> None:
    with pytest.raises(ValueError):
        call(make())
    assert fake.api_requests == []


def test_references_with_a_trailing_line_break_are_refused() -> None:
    with pytest.raises(ValueError):
        build_reference("Patient", "abc\n")
    with pytest.raises(ValueError):
        build_reference("Patient\n", "abc")
    with pytest.raises(ValueError):
        parse_reference("Patient/abc\n")
    with pytest.raises(ValueError):
        parse_reference("Patient\n/abc")


# ------------------------------------------------------------ lone surrogates, deep nesting

SURROGATE = "\ud800"


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.create_resource(
            {"resourceType": "Patient", "name": [{"family": SURROGATE}]}
        ),
        lambda api: api.create_resource({"resourceType": "Patient", SURROGATE: 1}),
        lambda api: api.search_resources("Patient", {"name": SURROGATE}),
        lambda api: api.search_resources("Patient", {SURROGATE: "x"}),
        lambda api: api.get("fhir/R4/Patient/" + SURROGATE),
        lambda api: api.execute_bot("b1", "MSH|" + SURROGATE, "text/plain"),
        lambda api: api.execute_bot("b1", {"a": SURROGATE}),
        lambda api: api.read_resource("Patient", SURROGATE),
    ],
    ids=[
        "body value",
        "body key",
        "query value",
        "query name",
        "path",
        "bot text",
        "bot json",
        "id",
    ],
)
def test_a_lone_surrogate_is_a_validation_error(
    make: Callable[..., Driver], fake: FakeMedplum, call: Callable[[Driver], Any]
) -> None:
    with pytest.raises(ValueError) as caught:
        call(make())
    assert not isinstance(caught.value, UnicodeError)
    assert fake.api_requests == []


def _nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {"url": "http://example.com/x"}
    node = root
    for _ in range(depth):
        child: dict[str, Any] = {"url": "http://example.com/x"}
        node["extension"] = [child]
        node = child
    return root


DEEP = _nested(1000)


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.create_resource({"resourceType": "Patient", "extension": [DEEP]}),
        lambda api: api.execute_batch(
            {
                "resourceType": "Bundle",
                "entry": [{"resource": {"resourceType": "Patient", "extension": [DEEP]}}],
            }
        ),
        lambda api: api.execute_bot("b1", DEEP),
        lambda api: api.execute_operation("Patient", "match", params=DEEP),
        lambda api: api.post("auth/x", json=DEEP),
    ],
    ids=["create", "batch", "bot", "operation", "post"],
)
def test_a_dict_nested_1000_deep_is_a_validation_error(
    make: Callable[..., Driver], fake: FakeMedplum, call: Callable[[Driver], Any]
) -> None:
    with pytest.raises(ValueError, match="nested more than 254 levels deep"):
        call(make())
    assert fake.api_requests == []


def test_a_lone_surrogate_in_json_text_is_a_validation_error() -> None:
    from pymedplum.helpers import parse_resource

    for text in ('{"resourceType": "Patient", "id": "\ud800"}', '{"resourceType": "\\ud800"}'):
        for parse in (parse_resource, Patient.model_validate_json, Patient.from_server):
            with pytest.raises(ValueError) as caught:
                parse(text)
            assert not isinstance(caught.value, UnicodeError)


def test_deep_nesting_in_helpers_and_models_is_a_validation_error() -> None:
    with pytest.raises(ValueError):
        dict_to_parameters({"x": DEEP})
    builder = TransactionBuilder()
    builder.create({"resourceType": "Patient", "extension": [DEEP]})
    with pytest.raises(ValueError):
        builder.build()
    with pytest.raises(ValueError):
        Patient.model_validate({"resourceType": "Patient", "extension": [DEEP]})


def test_repr_of_a_deeply_nested_model_does_not_crash() -> None:
    extension = Extension(url="http://example.com/x")
    for _ in range(1000):
        extension = Extension(url="http://example.com/x", extension=[extension])
    patient = Patient(extension=[extension])
    assert repr(patient).startswith("Patient(") and str(patient)
    with pytest.raises(ValueError):
        patient.to_fhir_json()


# ------------------------------------------------------------ secrets in traceback frames

SECRET = "client-SECRET-7f3a9"
TOKEN = "access-TOKEN-51c2e"


# The SDK's own files (the checkout's folder may be named pymedplum too).
PACKAGE_DIR = Path(pymedplum.__file__).resolve().parent


def _locals_text(error: BaseException) -> str:
    """The locals of the SDK's frames in the error's traceback (and its chained errors'),
    as `capture_locals=True` prints them. The test's own frames hold the secret: skipped."""
    shown: list[str] = []
    pending: list[traceback.TracebackException | None] = [
        traceback.TracebackException.from_exception(error, capture_locals=True)
    ]
    while pending:
        current = pending.pop()
        if current is None:
            continue
        for frame in current.stack:
            if Path(frame.filename).resolve().is_relative_to(PACKAGE_DIR):
                shown.append(f"{frame.name}: {frame.locals}")
        pending += [current.__cause__, current.__context__]
    assert shown, "the error never passed through the SDK"
    return "\n".join(shown)


def _token_reply(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": TOKEN, "expires_in": 3600})


def _scenario(
    fake: FakeMedplum, name: str
) -> tuple[dict[str, Any], Callable[[Driver], Any], type[BaseException]]:
    """(client kwargs, the call, the error it raises) for one failure."""
    creds: dict[str, Any] = {"client_id": "cid", "client_secret": SECRET}
    read = FHIR + "Patient/1"
    if name == "auth failure":
        fake.token_replies.append(httpx.Response(401, json={"error": "invalid_client"}))
        return creds, lambda api: api.read_resource("Patient", "1"), AuthenticationError
    fake.token_replies.extend([_token_reply] * 3)
    if name == "401 after refresh":
        fake.script("GET", read, httpx.Response(401), httpx.Response(401))
        return creds, lambda api: api.read_resource("Patient", "1"), AuthenticationError
    if name == "404":
        fake.script("GET", read, httpx.Response(404))
        return creds, lambda api: api.read_resource("Patient", "1"), NotFoundError
    if name == "500 on a write":
        fake.script("POST", FHIR + "Patient", httpx.Response(503))
        return creds, lambda api: api.create_resource({"resourceType": "Patient"}), ServerError
    if name == "network error":
        fake.script("POST", FHIR + "Patient", httpx.ReadError("reset"))
        return creds, lambda api: api.create_resource({"resourceType": "Patient"}), NetworkError
    if name == "token network error":
        fake.token_replies[:] = [httpx.ConnectError("refused")]
        return creds, lambda api: api.read_resource("Patient", "1"), NetworkError
    if name == "invalid answer":
        fake.script("GET", read, httpx.Response(200, text="<html>"))
        return creds, lambda api: api.read_resource("Patient", "1"), InvalidResponseError
    if name == "validation":
        fake.script("GET", read, httpx.Response(200, json={"resourceType": "Patient", "gender": 1}))
        return (
            creds,
            lambda api: api.read_resource("Patient", "1", as_fhir=Patient),
            ResponseValidationError,
        )
    if name == "bad input":
        return creds, lambda api: api.create_resource({"a": float("nan")}), ValueError
    if name == "caller token, 401":
        fake.script("GET", read, httpx.Response(401))
        caller_token = {"access_token": TOKEN, "client_id": None, "client_secret": None}
        return caller_token, lambda api: api.read_resource("Patient", "1"), AuthenticationError
    raise AssertionError(name)


SCENARIOS = [
    "auth failure",
    "401 after refresh",
    "404",
    "500 on a write",
    "network error",
    "token network error",
    "invalid answer",
    "validation",
    "bad input",
    "caller token, 401",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_secret_in_the_locals_of_an_errors_traceback(
    make: Callable[..., Driver], fake: FakeMedplum, name: str
) -> None:
    kw, call, expected = _scenario(fake, name)
    api = make(**kw)
    with pytest.raises(expected) as caught:
        call(api)
    text = _locals_text(caught.value)
    assert SECRET not in text and TOKEN not in text
    if name in ("auth failure", "token network error"):  # then the cooldown
        with pytest.raises(TokenRefreshCooldownError) as again:
            call(api)
        text = _locals_text(again.value)
        assert SECRET not in text and TOKEN not in text


@pytest.mark.parametrize("cls", [MedplumClient, AsyncMedplumClient])
def test_no_secret_in_the_locals_of_a_construction_error(cls: type[Any]) -> None:
    with pytest.raises(InsecureTransportError) as caught:
        cls("http://medplum.example.com/", client_id="cid", client_secret=SECRET)
    assert SECRET not in _locals_text(caught.value)
    with pytest.raises(ValueError) as mismatched:
        cls(BASE, client_secret=SECRET, access_token=TOKEN)
    text = _locals_text(mismatched.value)
    assert SECRET not in text and TOKEN not in text
    with pytest.raises(ValueError) as bad_timeout:
        cls(BASE, client_id="cid", client_secret=SECRET, timeout=-1)
    assert SECRET not in _locals_text(bad_timeout.value)


def test_redacted_secrets_still_reach_the_wire(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.token_replies.append(_token_reply)
    make(client_secret=SECRET).read_resource("Patient", "1")
    assert f"client_secret={SECRET}" in fake.token_requests[0].content.decode()
    assert fake.api_requests[0].headers["authorization"] == f"Bearer {TOKEN}"


# ------------------------------------------------------------ the attempt's time bound


class _SlowClock:
    """A clock for CallState in which every reading is 1,000 s after the one before."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1000.0
        return self.now

    def time(self) -> float:
        return 0.0


def test_a_body_arriving_past_the_timeout_fails_the_attempt(
    make: Callable[..., Driver], fake: FakeMedplum, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked between body chunks too, for http clients whose sockets the SDK cannot bound."""
    from pymedplum import _core

    api = make(timeout=5.0)
    api.read_resource("Patient", "warm")  # the token, before the clock runs fast
    monkeypatch.setattr(_core, "time", _SlowClock())
    with pytest.raises(NetworkError, match="AttemptTimeout"):
        api.create_resource({"resourceType": "Patient"})


def test_a_streamed_upload_is_bounded_per_read_not_as_a_whole(
    make: Callable[..., Driver], fake: FakeMedplum, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymedplum import _core

    fake.script("POST", FHIR + "Binary", httpx.Response(201, json={"resourceType": "Binary"}))
    api = make(timeout=5.0)
    api.read_resource("Patient", "warm")
    monkeypatch.setattr(_core, "time", _SlowClock())
    assert api.upload_binary(b"x" * 100, "text/plain") == {"resourceType": "Binary"}
