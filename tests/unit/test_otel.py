"""OpenTelemetry spans of both clients (pymedplum.otel), on the fault paths a server cannot
easily produce: retries, 429 waits, transport errors, a failed login. The SDK's in-memory
exporter collects the spans; every attribute of every span is scanned for PHI and secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from pymedplum import (  # noqa: E402
    AuthenticationError,
    MedplumClient,
    NetworkError,
    NotFoundError,
    RequestEvent,
)
from pymedplum._core import BaseClient  # noqa: E402
from pymedplum.otel import instrument, uninstrument  # noqa: E402

from .conftest import Driver, FakeMedplum  # noqa: E402

PATIENT = "/fhir/R4/Patient"
OK = {"resourceType": "Patient", "id": "p-123"}
MEMBERSHIP = "ProjectMembership/0f1e2d3c-aaaa-4bbb-8ccc-123456789abc"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def traced(make: Callable[..., Driver], provider: TracerProvider) -> Callable[..., Driver]:
    """Drivers whose client is instrumented with the in-memory provider."""

    def factory(**kw: Any) -> Driver:
        propagate = kw.pop("propagate", True)
        driver = make(**kw)
        instrument(driver.client, tracer_provider=provider, propagate=propagate)
        return driver

    return factory


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


def _attempts(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "medplum.attempt"]


def r429(**headers: str) -> httpx.Response:
    return httpx.Response(429, headers=headers, json={"resourceType": "OperationOutcome"})


def test_one_client_span_per_call_named_after_the_route(
    traced: Callable[..., Driver], exporter: InMemorySpanExporter
) -> None:
    traced().read_resource("Patient", "p-123")
    span = _only(exporter)
    assert span.name == "medplum GET /fhir/R4/Patient/{id}"
    assert span.kind is trace.SpanKind.CLIENT
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "pymedplum"
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.template": "/fhir/R4/Patient/{id}",
        "url.scheme": "https",
        "server.address": "medplum.test",
        "server.port": 443,
        "medplum.resource_type": "Patient",
        "medplum.action": "read",
        "http.response.status_code": 200,
        "medplum.attempts": 1,
        "medplum.retries": 0,
        "medplum.retry.wait_seconds": 0.0,
        "medplum.rate_limit.wait_seconds": 0.0,
        "medplum.on_behalf_of": False,
    }
    assert span.status.status_code is trace.StatusCode.UNSET
    assert [a["http.response.status_code"] for a in _attempts(span)] == [200]


def test_retries_are_attempt_events_of_the_one_span(
    traced: Callable[..., Driver],
    fake: FakeMedplum,
    sleeps: list[float],
    exporter: InMemorySpanExporter,
) -> None:
    fake.script("GET", PATIENT + "/p-123", httpx.Response(503), httpx.Response(502))
    traced().read_resource("Patient", "p-123")
    span = _only(exporter)
    attributes = dict(span.attributes or {})
    assert attributes["medplum.attempts"] == 3
    assert attributes["medplum.retries"] == 2
    assert attributes["medplum.retry.wait_seconds"] == pytest.approx(sum(sleeps))
    assert attributes["medplum.rate_limit.wait_seconds"] == 0.0
    attempts = _attempts(span)
    assert [a["medplum.attempt.number"] for a in attempts] == [1, 2, 3]
    assert [a["http.response.status_code"] for a in attempts] == [503, 502, 200]
    assert [a.get("medplum.retry.delay_seconds") for a in attempts] == [*sleeps, None]
    times = [e.timestamp for e in span.events]
    assert times == sorted(times) and span.start_time <= times[0]


def test_a_429_wait_is_the_rate_limit_wait(
    traced: Callable[..., Driver],
    fake: FakeMedplum,
    sleeps: list[float],
    exporter: InMemorySpanExporter,
) -> None:
    limited = r429(RateLimit='"requests";r=59920;t=60, "fhirInteractions";r=0;t=45')
    fake.script("GET", PATIENT + "/p-123", httpx.Response(503), limited)
    traced().read_resource("Patient", "p-123")
    attributes = dict(_only(exporter).attributes or {})
    assert sleeps[1] == 45.0
    assert attributes["medplum.rate_limit.wait_seconds"] == 45.0
    assert attributes["medplum.retry.wait_seconds"] == pytest.approx(sleeps[0] + 45.0)


def test_an_error_status_is_an_error_span_with_its_exception_type(
    traced: Callable[..., Driver], fake: FakeMedplum, exporter: InMemorySpanExporter
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Patient p-123"}],
    }
    fake.script("GET", PATIENT + "/p-123", httpx.Response(404, json=outcome))
    with pytest.raises(NotFoundError) as caught:
        traced().read_resource("Patient", "p-123")
    span = _only(exporter)
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "NotFoundError"
    assert attributes["http.response.status_code"] == 404
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "NotFoundError"
    (exception,) = [dict(e.attributes or {}) for e in span.events if e.name == "exception"]
    assert exception == {"exception.type": "NotFoundError", "exception.message": str(caught.value)}
    assert "p-123" not in str(caught.value)


def test_a_transport_failure_leaves_attempts_without_a_status(
    traced: Callable[..., Driver],
    fake: FakeMedplum,
    sleeps: list[float],
    exporter: InMemorySpanExporter,
) -> None:
    failures = [httpx.ConnectError("refused to http://medplum.test/?family=Smith")] * 4
    fake.script("GET", PATIENT + "/p-123", *failures)
    with pytest.raises(NetworkError):
        traced().read_resource("Patient", "p-123")
    span = _only(exporter)
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "NetworkError"
    assert "http.response.status_code" not in attributes
    assert attributes["medplum.attempts"] == 4
    assert all("http.response.status_code" not in a for a in _attempts(span))
    assert {a["error.type"] for a in _attempts(span)} == {"NetworkError"}
    assert "Smith" not in repr([e.attributes for e in span.events])


def test_a_failed_login_is_a_span_with_no_attempt(
    traced: Callable[..., Driver], fake: FakeMedplum, exporter: InMemorySpanExporter
) -> None:
    fake.token_replies.append(httpx.Response(400, json={"error": "invalid_request"}))
    with pytest.raises(AuthenticationError):
        traced().read_resource("Patient", "p-123")
    attributes = dict(_only(exporter).attributes or {})
    assert attributes["medplum.attempts"] == 0
    assert attributes["error.type"] == "AuthenticationError"


def test_the_span_is_current_while_each_request_is_sent_and_travels_as_traceparent(
    traced: Callable[..., Driver], fake: FakeMedplum, exporter: InMemorySpanExporter
) -> None:
    seen: list[tuple[str, int, str | None]] = []
    handle = fake.handle

    def capture(request: httpx.Request) -> httpx.Response:
        current = trace.get_current_span().get_span_context().span_id
        seen.append((request.url.path, current, request.headers.get("traceparent")))
        return handle(request)

    fake.script("GET", PATIENT + "/p-123", httpx.Response(503))
    driver = traced()
    driver.client._http._transport = httpx.MockTransport(capture)  # type: ignore[union-attr]
    driver.read_resource("Patient", "p-123")
    span = _only(exporter)
    context = span.get_span_context()
    assert context is not None
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-"
    # The login and both attempts ran with the call's span current (an instrumented httpx
    # would nest its spans there); each attempt carried the span as its parent.
    assert [(path, current) for path, current, _ in seen] == [
        ("/oauth2/token", context.span_id),
        (PATIENT + "/p-123", context.span_id),
        (PATIENT + "/p-123", context.span_id),
    ]
    assert [tp is not None and tp.startswith(expected) for _, _, tp in seen] == [
        False,
        True,
        True,
    ]


def test_no_traceparent_with_propagate_off_and_a_callers_own_is_kept(
    traced: Callable[..., Driver], fake: FakeMedplum
) -> None:
    traced(propagate=False).read_resource("Patient", "p-123")
    assert fake.api_requests[-1].headers.get("traceparent") is None
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced().read_resource("Patient", "p-123", headers={"traceparent": own})
    assert fake.api_requests[-1].headers["traceparent"] == own


def test_an_uninstrumented_client_makes_no_span_and_sends_no_traceparent(
    make: Callable[..., Driver], fake: FakeMedplum, exporter: InMemorySpanExporter
) -> None:
    make().read_resource("Patient", "p-123")
    assert exporter.get_finished_spans() == ()
    assert "traceparent" not in fake.api_requests[-1].headers


def test_instrumenting_every_client_and_undoing_it(
    make: Callable[..., Driver], provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    instrument(tracer_provider=provider)
    try:
        make().read_resource("Patient", "p-123")
        assert len(exporter.get_finished_spans()) == 1
    finally:
        uninstrument()
    assert BaseClient._tracer is None
    make().read_resource("Patient", "p-123")
    assert len(exporter.get_finished_spans()) == 1


def test_uninstrumenting_one_client(
    traced: Callable[..., Driver], exporter: InMemorySpanExporter
) -> None:
    driver = traced()
    uninstrument(driver.client)
    driver.read_resource("Patient", "p-123")
    assert exporter.get_finished_spans() == ()


def test_the_audit_hook_still_gets_its_event(
    traced: Callable[..., Driver], exporter: InMemorySpanExporter
) -> None:
    events: list[RequestEvent] = []
    traced(on_request_complete=events.append).read_resource("Patient", "p-123")
    assert len(events) == 1 and len(exporter.get_finished_spans()) == 1


def test_a_failing_tracer_never_fails_the_call(
    make: Callable[..., Driver], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def start(self, method: str, path_template: str) -> Any:
            raise RuntimeError("tracing backend down")

    driver = make()
    driver.client._tracer = Broken()
    with caplog.at_level(logging.WARNING, logger="pymedplum.otel"):
        assert driver.read_resource("Patient", "p-123")["id"] == "p-123"
    assert "starting the span raised RuntimeError" in caplog.text


def test_no_span_attribute_or_event_holds_phi_or_a_secret(
    traced: Callable[..., Driver],
    fake: FakeMedplum,
    sleeps: list[float],
    exporter: InMemorySpanExporter,
) -> None:
    """Every call shape with PHI in its path, query, body and on-behalf-of: none of it, nor
    the token or the secret, is in any attribute of any span or event."""
    secrets = ["p-123", "Smith", "Quorra", "1987-06-05", "MRN-77", MEMBERSHIP, "tok-1", "secret"]
    fake.script("GET", PATIENT + "/p-123", httpx.Response(503))
    fake.script("GET", PATIENT, r429(**{"Retry-After": "1"}))
    driver = traced()
    driver.read_resource("Patient", "p-123", on_behalf_of=MEMBERSHIP)
    driver.search_resources("Patient", {"family": "Smith", "birthdate": "1987-06-05"})
    driver.create_resource(
        {
            "resourceType": "Patient",
            "name": [{"family": "Smith", "given": ["Quorra"]}],
            "identifier": [{"value": "MRN-77"}],
        }
    )
    driver.patch_resource("Patient", "p-123", [{"op": "add", "path": "/active", "value": True}])
    fake.script("GET", PATIENT + "/p-123", httpx.Response(404))
    with pytest.raises(NotFoundError):
        driver.read_resource("Patient", "p-123")
    spans = exporter.get_finished_spans()
    assert len(spans) == 5
    values: list[str] = []
    for span in spans:
        values.append(span.name)
        values += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        values.append(span.status.description or "")
        for event in span.events:
            values.append(event.name)
            values += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    text = "\n".join(values)
    assert [s for s in secrets if s in text] == []
    assert "medplum.on_behalf_of=True" in text


def test_a_traced_sync_call_reads_the_same_as_an_untraced_one(
    provider: TracerProvider,
) -> None:
    """Tracing changes nothing a caller sees (a client built by hand, not through `make`)."""
    fake = FakeMedplum()
    plain = fake.sync_client()
    traced_client: MedplumClient = fake.sync_client()
    instrument(traced_client, tracer_provider=provider)
    assert plain.read_resource("Patient", "p-123") == traced_client.read_resource(
        "Patient", "p-123"
    )
