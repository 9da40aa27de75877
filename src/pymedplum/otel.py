"""OpenTelemetry tracing for both clients: one span per logical call (``pymedplum[otel]``).

Example:
    from pymedplum.otel import instrument

    instrument(client)   # this client
    instrument()         # every client, made before or after

Each public call that reaches the network gets one span, kind CLIENT, named
``medplum {method} {route template}`` (``medplum GET /fhir/R4/Patient/{id}``), started when
the call begins and ended when it is over (retries, waits and the body included). It is the
current span while each attempt's token lookup and HTTP request run, so the spans of an
instrumented httpx (opentelemetry-instrumentation-httpx) nest under it, one per attempt.

Attributes, none of them PHI or a credential:

- ``http.request.method``, ``url.template`` (ids replaced; never the path or the query),
  ``server.address``, ``server.port``;
- ``medplum.resource_type``, ``medplum.operation``, ``medplum.action`` (when known);
- ``http.response.status_code`` (the last answer), ``error.type`` (the exception's class);
- ``medplum.attempts`` (wire attempts), ``medplum.retries`` (attempts after the first, a
  401 replay included), ``medplum.retry.wait_seconds`` (every wait between attempts),
  ``medplum.rate_limit.wait_seconds`` (the waits after a 429, plus any rate-limit budget
  wait the client reports);
- ``medplum.on_behalf_of``: whether the call acted on behalf of a membership (a bool: the
  membership identifies a person, and traces go to systems not cleared for that; the PHI
  audit hook, `on_request_complete`, records who).

One event per attempt (``medplum.attempt``, at the time it started): its number, status,
duration, the wait after it and its error type. A failed call's span has status ERROR and an
``exception`` event with the type, and for the SDK's own exceptions their message (which never
holds PHI, tokens or the query: docs/reliability.md). Nothing else is recorded: no URL, id,
query, header, body, membership, token or secret.

Trace context: each attempt carries a W3C ``traceparent`` (and ``tracestate``) header of the
call's span (``propagate=False`` turns it off). Medplum takes a valid ``traceparent`` as the
request's trace id: it is in Medplum's request logs and in the ``tracing`` extension of the
OperationOutcomes it returns, so a server-side error can be found from the client's trace.
Baggage is not sent (it may hold application data). A ``traceparent`` the request already has
(your ``headers=`` or ``before_request``) is kept.

Needs ``opentelemetry-api``; configure a tracer provider (the SDK, an exporter) as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("pymedplum.otel needs OpenTelemetry: pip install 'pymedplum[otel]'") from None

from pymedplum._core import USER_AGENT, BaseClient
from pymedplum.exceptions import MedplumError
from pymedplum.hooks import RequestEvent

__all__ = ["instrument", "uninstrument", "TRACER_NAME"]

#: The instrumentation scope of the spans.
TRACER_NAME = "pymedplum"
_VERSION = USER_AGENT.split("/", 1)[1]
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class _Scope:
    """The span current within a block. Not trace.use_span: that would record the exceptions
    passing through, whose messages (httpx's) may quote the URL."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: otel_context.Context) -> None:
        self._context = context

    def __enter__(self) -> None:
        self._token = otel_context.attach(self._context)

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self._token)


class _Span:
    """A logical call's span (pymedplum._telemetry.CallSpan)."""

    __slots__ = ("_span", "_context", "_propagate")

    def __init__(self, span: trace.Span, propagate: bool) -> None:
        self._span = span
        self._context = trace.set_span_in_context(span)
        self._propagate = propagate

    def activate(self) -> _Scope:
        return _Scope(self._context)

    def inject(self, headers: dict[str, str]) -> None:
        if not self._propagate or any(k.lower() in _TRACE_HEADERS for k in headers):
            return
        _PROPAGATOR.inject(headers, context=self._context)

    def end(self, event: RequestEvent) -> None:
        span = self._span
        if span.is_recording():
            span.set_attributes(_attributes(event))
            for attempt in event.attempts:
                attributes: dict[str, Any] = {
                    "medplum.attempt.number": attempt.attempt_number,
                    "medplum.attempt.duration_seconds": attempt.duration_seconds,
                }
                if attempt.status_code is not None:
                    attributes["http.response.status_code"] = attempt.status_code
                if attempt.retry_delay_seconds is not None:
                    attributes["medplum.retry.delay_seconds"] = attempt.retry_delay_seconds
                if attempt.exception is not None:
                    attributes["error.type"] = type(attempt.exception).__name__
                span.add_event("medplum.attempt", attributes, _ns(attempt.started_at.timestamp()))
            error = event.final_exception
            if error is not None:
                described: dict[str, Any] = {"exception.type": type(error).__name__}
                if isinstance(error, MedplumError):
                    described["exception.message"] = str(error)
                span.add_event("exception", described)
                span.set_status(trace.StatusCode.ERROR, type(error).__name__)
            elif event.outcome == "error":
                span.set_status(trace.StatusCode.ERROR)
        span.end()


def _attributes(event: RequestEvent) -> dict[str, Any]:
    """The span's attributes: the event's non-PHI fields only."""
    scheme, _, rest = event.origin.partition("://")
    host, _, port = rest.rpartition(":")
    attempts = event.attempts
    waits = [a.retry_delay_seconds or 0.0 for a in attempts]
    rate_limited = sum(
        a.retry_delay_seconds or 0.0 for a in attempts if a.status_code == 429
    ) + sum(float(getattr(a, "rate_limit_wait_seconds", None) or 0.0) for a in attempts)
    rate_limited += float(getattr(event, "rate_limit_wait_seconds", None) or 0.0)
    # http.request.method and url.template were set when the span started (for samplers).
    attributes: dict[str, Any] = {
        "url.scheme": scheme,
        "server.address": host,
        "server.port": int(port),
        "medplum.attempts": len(attempts),
        "medplum.retries": max(len(attempts) - 1, 0),
        "medplum.retry.wait_seconds": sum(waits),
        "medplum.rate_limit.wait_seconds": rate_limited,
        "medplum.on_behalf_of": any(a.on_behalf_of for a in attempts),
    }
    optional: Mapping[str, Any] = {
        "medplum.resource_type": event.resource_type,
        "medplum.operation": event.operation,
        "medplum.action": event.action,
        "http.response.status_code": event.final_status_code,
        "error.type": (
            type(event.final_exception).__name__ if event.final_exception is not None else None
        ),
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    return attributes


class _Tracer:
    """Opens a CLIENT span per logical call (pymedplum._telemetry.CallTracer)."""

    __slots__ = ("_tracer", "_propagate")

    def __init__(self, tracer: trace.Tracer, propagate: bool) -> None:
        self._tracer = tracer
        self._propagate = propagate

    def start(self, method: str, path_template: str) -> _Span | None:
        span = self._tracer.start_span(
            f"medplum {method} {path_template}",
            kind=trace.SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.template": path_template},
        )
        if not span.get_span_context().is_valid:
            return None  # the API without an SDK: nothing to record or propagate
        return _Span(span, self._propagate)


def instrument(
    client: BaseClient | None = None,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    propagate: bool = True,
) -> None:
    """Trace `client`'s calls, or with no client every client's (made before or after).

    Example:
        instrument(client, tracer_provider=provider)

    `tracer_provider`: where spans go (default: the global one, set with
    `opentelemetry.trace.set_tracer_provider`). `propagate`: send the W3C `traceparent`
    header of the call's span with each attempt. A client's own setting wins over the
    process-wide one; instrumenting again replaces the setting.
    """
    tracer = _Tracer(
        trace.get_tracer(TRACER_NAME, _VERSION, tracer_provider=tracer_provider), propagate
    )
    if client is None:
        BaseClient._tracer = tracer
    else:
        client._tracer = tracer


def uninstrument(client: BaseClient | None = None) -> None:
    """Stop tracing `client` (back to the process-wide setting), or with no client stop the
    process-wide tracing (clients instrumented one by one stay traced)."""
    if client is None:
        BaseClient._tracer = None
    else:
        client.__dict__.pop("_tracer", None)
