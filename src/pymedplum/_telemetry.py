"""The tracing seam of the send loop: no I/O, no OpenTelemetry.

A client whose `_tracer` is set (`pymedplum.otel.instrument`) opens one `CallSpan` per
logical call when the call begins. The span is made current around each attempt's token
lookup and HTTP request (`activate`), so that spans of an instrumented httpx nest under it;
it may add trace headers to each attempt (`inject`); and it is ended with the call's
`RequestEvent` (`end`), which holds everything it may record. Without a tracer the loop pays
one attribute check per call and a shared no-op context per attempt.

A tracer that raises never fails a call: `start` failing leaves the call untraced, the
other methods' errors are logged at WARNING on `pymedplum.otel` by type only.
"""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager
from typing import Protocol

from pymedplum.hooks import RequestEvent

__all__ = ["CallSpan", "CallTracer", "NO_SCOPE", "start_span", "end_span"]

logger = logging.getLogger("pymedplum.otel")

#: The scope of an untraced attempt (reusable: it holds no state).
NO_SCOPE: AbstractContextManager[object] = contextlib.nullcontext()


class CallSpan(Protocol):
    """The span of one logical call."""

    def activate(self) -> AbstractContextManager[object]:
        """A context in which the span is the current one (around each attempt)."""

    def inject(self, headers: dict[str, str]) -> None:
        """Add trace-context headers to an attempt's headers (before it is sent)."""

    def end(self, event: RequestEvent) -> None:
        """End the span with what the call did (never PHI: see pymedplum.otel)."""


class CallTracer(Protocol):
    """Opens the span of each logical call of the clients it is set on."""

    def start(self, method: str, path_template: str) -> CallSpan | None:
        """The span of a call to `method path_template` (ids already replaced), or None
        when there is nothing to trace (no SDK configured)."""


def _failed(step: str, exc: BaseException) -> None:
    # The type only: a message might quote a URL.
    logger.warning("tracing: %s raised %s; the call goes on", step, type(exc).__name__)


def start_span(tracer: CallTracer, method: str, path_template: str) -> CallSpan | None:
    """The call's span, or None when the tracer failed."""
    try:
        return tracer.start(method, path_template)
    except Exception as exc:
        _failed("starting the span", exc)
        return None


def inject(span: CallSpan, headers: dict[str, str]) -> None:
    """Add the span's trace headers, unless the request carries its own."""
    try:
        span.inject(headers)
    except Exception as exc:
        _failed("injecting trace headers", exc)


def end_span(span: CallSpan, event: RequestEvent) -> None:
    """End the span with the call's event."""
    try:
        span.end(event)
    except Exception as exc:
        _failed("ending the span", exc)
