"""OpenTelemetry spans of both clients against the local Medplum server (pymedplum.otel):
one span per call with its route and status, the trace context reaching Medplum (its logs and
OperationOutcomes carry the traceparent as the trace id), and no PHI or secret anywhere."""

from __future__ import annotations

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

from pymedplum import NotFoundError  # noqa: E402
from pymedplum.otel import instrument  # noqa: E402
from pymedplum.testing.local_server import LocalMedplumServer  # noqa: E402
from tests.integration.conftest_clients import Driver  # noqa: E402

pytestmark = pytest.mark.usefixtures("medplum")

TRACING = "https://medplum.com/fhir/StructureDefinition/tracing"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def traced(
    make_client: Callable[..., Driver], exporter: InMemorySpanExporter
) -> Callable[..., Driver]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def factory(**kw: Any) -> Driver:
        driver = make_client(**kw)
        instrument(driver.client, tracer_provider=provider)
        return driver

    return factory


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_each_call_is_one_span_with_its_route_and_status(
    traced: Callable[..., Driver], exporter: InMemorySpanExporter
) -> None:
    client = traced()
    created = client.create_resource({"resourceType": "Patient", "name": [{"family": "Otel"}]})
    client.read_resource("Patient", created["id"])
    client.search_resources("Patient", {"family": "Otel"})
    with pytest.raises(NotFoundError):
        client.read_resource("Patient", "00000000-0000-4000-8000-000000000000")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "medplum POST /fhir/R4/Patient",
        "medplum GET /fhir/R4/Patient/{id}",
        "medplum GET /fhir/R4/Patient",
        "medplum GET /fhir/R4/Patient/{id}",
    ]
    statuses = [dict(s.attributes or {})["http.response.status_code"] for s in spans]
    assert statuses == [201, 200, 200, 404]
    actions = [dict(s.attributes or {})["medplum.action"] for s in spans]
    assert actions == ["create", "read", "search", "read"]
    assert spans[-1].status.status_code is trace.StatusCode.ERROR
    assert dict(spans[-1].attributes or {})["error.type"] == "NotFoundError"


def test_medplum_takes_the_traceparent_as_its_trace_id(
    traced: Callable[..., Driver], exporter: InMemorySpanExporter, medplum: LocalMedplumServer
) -> None:
    client = traced()
    with pytest.raises(NotFoundError) as caught:
        client.read_resource("Patient", "00000000-0000-4000-8000-000000000000")
    context = exporter.get_finished_spans()[0].get_span_context()
    assert context is not None
    (logged,) = medplum.fhir_requests()
    traceparent = logged["traceparent"]
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    outcome = caught.value.outcome
    assert outcome is not None
    (tracing,) = [e for e in outcome["extension"] if e["url"] == TRACING]
    trace_ids = [e["valueId"] for e in tracing["extension"] if e["url"] == "traceId"]
    assert trace_ids == [traceparent]


def test_an_instrumented_httpx_would_nest_under_the_call_span(
    traced: Callable[..., Driver], exporter: InMemorySpanExporter, flavour: str
) -> None:
    """httpx's own event hooks run where an httpx instrumentation opens its spans: inside
    send, with the call's span current."""
    current: list[int] = []

    def on_request(request: httpx.Request) -> None:
        current.append(trace.get_current_span().get_span_context().span_id)

    async def on_request_async(request: httpx.Request) -> None:
        on_request(request)

    hooks: Any = {"request": [on_request if flavour == "sync" else on_request_async]}
    http = (
        httpx.Client(event_hooks=hooks)
        if flavour == "sync"
        else httpx.AsyncClient(event_hooks=hooks)
    )
    client = traced(http_client=http)
    client.search_resources("Patient", {"_count": 1})
    (span,) = exporter.get_finished_spans()
    context = span.get_span_context()
    assert context is not None
    assert current == [context.span_id, context.span_id]  # the login, then the search


def test_a_429_from_medplum_is_the_rate_limit_wait(
    traced: Callable[..., Driver],
    exporter: InMemorySpanExporter,
    medplum: LocalMedplumServer,
    no_sleep: list[float],
) -> None:
    client = traced()
    client.search_resources("Patient", {"_count": 1})  # logged in
    medplum.rate_limit_next(path_prefix="/fhir/R4/Patient")
    client.search_resources("Patient", {"_count": 1})
    span = _by_name(exporter.get_finished_spans())["medplum GET /fhir/R4/Patient"]
    attributes = dict(span.attributes or {})
    assert no_sleep and attributes["medplum.rate_limit.wait_seconds"] == no_sleep[-1]
    assert attributes["medplum.attempts"] == 2
    statuses = [dict(e.attributes or {}).get("http.response.status_code") for e in span.events]
    assert statuses == [429, 200]


def test_no_span_holds_phi_a_token_a_secret_or_a_membership(
    traced: Callable[..., Driver], exporter: InMemorySpanExporter, medplum: LocalMedplumServer
) -> None:
    alice = medplum.practitioners["alice"].membership
    client = traced()
    created = client.create_resource(
        {
            "resourceType": "Patient",
            "name": [{"family": "Zyxwvut", "given": ["Quorrabelle"]}],
            "birthDate": "1987-06-05",
            "identifier": [{"system": "urn:mrn", "value": "MRN-4455"}],
        }
    )
    client.read_resource("Patient", created["id"], on_behalf_of=alice)
    client.search_resources("Patient", {"family": "Zyxwvut", "birthdate": "1987-06-05"})
    client.patch_resource(
        "Patient", created["id"], [{"op": "replace", "path": "/name/0/family", "value": "Q"}]
    )
    client.delete_resource("Patient", created["id"])
    secrets = [
        created["id"],
        "Zyxwvut",
        "Quorrabelle",
        "1987-06-05",
        "MRN-4455",
        alice,
        alice.split("/")[1],
        medplum.admin_client.client_secret,
        str(client.client.access_token),
    ]
    texts: list[str] = []
    for span in exporter.get_finished_spans():
        texts.append(span.name)
        texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            texts += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    text = "\n".join(texts)
    assert len(exporter.get_finished_spans()) == 5
    assert [s for s in secrets if s in text] == []
