"""The two hook points and what they receive.

`before_request(PreparedRequest) -> PreparedRequest | None` runs before every wire
attempt. It sees the request without its bearer token or on-behalf-of header and may
return a changed copy (`request.replace(headers=...)`). The SDK strips any
`Authorization` or `X-Medplum-On-Behalf-Of` header from what it returns, and discards a
returned request whose URL leaves the client's origin; both are logged at WARNING under
the `pymedplum.hooks` logger.

`on_request_complete(RequestEvent) -> None` runs once per logical call (retries are in
`event.attempts`), after it succeeded or failed: the place for a PHI-access audit log.
`AsyncMedplumClient` also accepts an `async def` hook; `MedplumClient` refuses one at
construction with TypeError. A hook that raises is logged at WARNING under
`pymedplum.hooks` and never fails the call.

An event never holds a token, a request or response body, or the raw query string.
It has two views: `to_phi_audit_dict()` for sinks cleared for PHI, `to_non_phi_dict()`
for metrics and general logs.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "PreparedRequest",
    "RequestAttempt",
    "AttemptRecord",
    "RequestEvent",
    "RequestAction",
    "RequestOutcome",
    "BeforeRequestHook",
    "OnRequestCompleteHook",
    "AsyncOnRequestCompleteHook",
    "serialize_exception",
]

RequestAction = Literal[
    "read", "search", "create", "update", "patch", "delete", "operation", "batch_or_transaction"
]
RequestOutcome = Literal["success", "error"]


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request as a `before_request` hook sees it: no bearer token, no OBO header.

    Attributes:
        method: the HTTP method. Read-only: a returned copy with another method is
            discarded whole (logged at WARNING) and the original request is sent.
        url: the full URL, query string included. Changes must stay on the same origin.
        headers: the headers to send, read-only.
        json_body: the JSON body (dict or list), or None. Treat it as read-only; return
            a copy with a new body to change it.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    json_body: Any = None

    def replace(self, **changes: Any) -> PreparedRequest:
        """A copy with some fields changed, e.g. `request.replace(headers={...})`."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        # The URL's query string and the body may carry PHI.
        return f"<PreparedRequest {self.method} {self.url.split('?', 1)[0]}>"


@dataclass(frozen=True, slots=True)
class RequestAttempt:
    """One wire attempt of a logical call.

    Attributes:
        attempt_number: 1-based.
        status_code: the HTTP status, or None when no response came back.
        duration_seconds: wall-clock time of this attempt (send to last byte).
        started_at: when this attempt started (UTC).
        on_behalf_of: the `X-Medplum-On-Behalf-Of` value sent on this attempt, or None.
        exception: the SDK exception this attempt ended in, or None.
        retry_delay_seconds: how long the client waited after this attempt before the
            next one (None when there was no next attempt).
        rate_limit_wait_seconds: how long the client waited before this attempt because its
            `rate_limit_budget` said the quota was spent (None when it did not wait).
    """

    attempt_number: int
    status_code: int | None
    duration_seconds: float
    started_at: datetime
    on_behalf_of: str | None
    exception: BaseException | None = None
    retry_delay_seconds: float | None = None
    rate_limit_wait_seconds: float | None = None

    def _as_dict(self, *, phi: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "attempt_number": self.attempt_number,
            "status_code": self.status_code,
            "duration_seconds": self.duration_seconds,
            "started_at": self.started_at.isoformat(),
            "retry_delay_seconds": self.retry_delay_seconds,
            "rate_limit_wait_seconds": self.rate_limit_wait_seconds,
            "exception": serialize_exception(self.exception) if self.exception else None,
        }
        if phi:
            data["on_behalf_of"] = self.on_behalf_of
        else:
            data["on_behalf_of_set"] = self.on_behalf_of is not None
        return data


#: Another name for RequestAttempt.
AttemptRecord = RequestAttempt


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One logical SDK call, for a PHI-access audit log. Fired once, success or failure.

    PHI-bearing fields: `path`, `resource_id`, `query_params`, the attempts'
    `on_behalf_of`. Route the whole event only to a sink cleared for PHI, or use
    `to_non_phi_dict()`.

    Attributes:
        event_id: a unique id (UUID4 hex), for de-duplicating in the audit store.
        method: the HTTP method.
        origin: `scheme://host:port` of the server (the port always written).
        path: the URL path, ids included (PHI).
        path_template: `path` with ids replaced: `/fhir/R4/Patient/{id}` (no PHI).
        query_params: the parsed query (PHI), or None when there was none.
        resource_type: the FHIR resource type, or None for non-FHIR paths.
        resource_id: the resource id from the path (PHI), or None.
        operation: the FHIR operation (`$everything`), or None.
        action: what the call did to FHIR data (`read`, `search`, ...), None outside FHIR.
        started_at, ended_at: UTC times the logical call began and finished.
        attempts: one RequestAttempt per wire attempt, in order.
        final_status_code: the last attempt's status, or None. For an auto-batched read,
            its own status: its batch entry's `response.status`.
        final_exception: the exception the caller received, or None.
        batch_size: for a read that `AsyncMedplumClient(auto_batch_ms=...)` sent inside a
            batch Bundle, how many reads that batch held (its `attempts` are the batch
            request's); None for a call that went out on its own.
    """

    method: str
    origin: str
    path: str
    path_template: str
    query_params: dict[str, list[str]] | None
    resource_type: str | None
    resource_id: str | None
    operation: str | None
    action: RequestAction | None
    started_at: datetime
    ended_at: datetime
    attempts: tuple[RequestAttempt, ...]
    final_status_code: int | None
    final_exception: BaseException | None = None
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    batch_size: int | None = None

    @property
    def outcome(self) -> RequestOutcome:
        """`success` when the call returned normally with a status below 400."""
        if self.final_exception is None and (
            self.final_status_code is None or self.final_status_code < 400
        ):
            return "success"
        return "error"

    @property
    def duration_seconds(self) -> float:
        """Wall-clock time of the whole call, backoff waits included."""
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def on_behalf_of(self) -> str | None:
        """The membership sent on the last attempt (None without attempts or OBO)."""
        return self.attempts[-1].on_behalf_of if self.attempts else None

    def _common(self, *, phi: bool) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "method": self.method,
            "origin": self.origin,
            "path_template": self.path_template,
            "resource_type": self.resource_type,
            "operation": self.operation,
            "action": self.action,
            "outcome": self.outcome,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_seconds": self.duration_seconds,
            "attempt_count": len(self.attempts),
            "attempts": [a._as_dict(phi=phi) for a in self.attempts],
            "final_status_code": self.final_status_code,
            "final_exception": (
                serialize_exception(self.final_exception) if self.final_exception else None
            ),
            "batch_size": self.batch_size,
        }

    def to_phi_audit_dict(self, *, include_query_params: bool = False) -> dict[str, Any]:
        """Everything an audit log needs, for a sink cleared to store PHI.

        Includes `path`, `resource_id` and each attempt's `on_behalf_of`. The parsed query
        is included only with `include_query_params=True` (search values name people).
        JSON-serializable: strings, numbers, booleans, None, lists, dicts, ISO-8601 times.
        """
        data = self._common(phi=True)
        data["path"] = self.path
        data["resource_id"] = self.resource_id
        data["on_behalf_of"] = self.on_behalf_of
        if include_query_params:
            data["query_params"] = self.query_params
        return data

    def to_non_phi_dict(self) -> dict[str, Any]:
        """Shape and timing only, for metrics, APM and general logs.

        No path, resource id, query or membership: only the path template, resource
        type, operation, statuses, durations and exception types.
        """
        return self._common(phi=False)

    def __repr__(self) -> str:
        return (
            f"<RequestEvent {self.method} {self.path_template} {self.outcome} "
            f"status={self.final_status_code} attempts={len(self.attempts)}>"
        )


BeforeRequestHook = Callable[[PreparedRequest], "PreparedRequest | None"]
OnRequestCompleteHook = Callable[[RequestEvent], None]
AsyncOnRequestCompleteHook = Callable[[RequestEvent], Awaitable[None]]


def serialize_exception(exc: BaseException) -> dict[str, Any]:
    """An exception as a log-safe dict.

    Uses `exc.sanitize_for_logging()` when the exception has one (all SDK exceptions);
    otherwise only the type name, because a foreign exception's message may carry PHI.
    """
    sanitize = getattr(exc, "sanitize_for_logging", None)
    if callable(sanitize):
        data = sanitize()
        if isinstance(data, dict):
            return data
    return {"type": type(exc).__name__}
