"""The exceptions the client raises, all safe to log.

Every exception's `str()` and `repr()` carry only what cannot hold PHI or a credential:
the status code, the request's method and path template (`/fhir/R4/Patient/{id}`),
and the OperationOutcome's issue codes and FHIRPath expressions. The outcome itself
(whose `diagnostics` and `details.text` can echo submitted values) stays available as
`exc.outcome` for code that needs it. No exception keeps a request, a bearer token or
an httpx object, so nothing reachable from an exception holds a credential.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "MedplumError",
    "OperationOutcomeError",
    "BadRequestError",
    "ValidationError",
    "AuthenticationError",
    "AuthorizationError",
    "NotFoundError",
    "GoneError",
    "ConflictError",
    "PreconditionFailedError",
    "RateLimitError",
    "ServerError",
    "NetworkError",
    "InsecureTransportError",
    "UnsafeRedirectError",
    "TokenRefreshCooldownError",
    "MissingVersionIdError",
    "BundleEntryError",
    "InvalidResponseError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "ErrorResponse",
]


class ErrorResponse:
    """What the server answered, without the request that carried the bearer token.

    `content` and `text` may hold PHI (a server can echo submitted values): read them
    in code, never log them. `repr()` shows the status only.
    """

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        # Cookies could be session credentials: never kept.
        self.headers: dict[str, str] = {
            k.lower(): v for k, v in headers.items() if k.lower() != "set-cookie"
        }
        self.content = content

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (decimals exact)."""
        from pymedplum._json import loads

        return loads(self.content)

    def __repr__(self) -> str:
        return f"<ErrorResponse [{self.status_code}]>"


class MedplumError(Exception):
    """Base class of every exception the SDK raises.

    `status_code` is the HTTP status behind the error, or None when there was none (a
    network failure, a refused URL). `response_data` is the server's parsed error body (an
    OperationOutcome, an OAuth error), or None; it can echo submitted values, so it is never
    in `str()`, `repr()` or `sanitize_for_logging()`.
    """

    status_code: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def response_data(self) -> dict[str, Any] | None:
        """The server's parsed error body, when there was one (may hold PHI: don't log it)."""
        return None

    def sanitize_for_logging(self) -> dict[str, Any]:
        """A JSON-safe dict for any log sink: no body, no diagnostics, no token."""
        return {"type": type(self).__name__, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


def _issues(outcome: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Issue severity, code and expressions: the parts of an outcome that hold no PHI."""
    if not outcome:
        return []
    raw = outcome.get("issue")
    if not isinstance(raw, Sequence):
        return []
    issues: list[dict[str, Any]] = []
    for issue in raw:
        if not isinstance(issue, Mapping):
            continue
        summary: dict[str, Any] = {
            "severity": issue.get("severity"),
            "code": issue.get("code"),
        }
        expression = issue.get("expression")
        if isinstance(expression, Sequence) and not isinstance(expression, str):
            summary["expression"] = [str(e) for e in expression]
        issues.append(summary)
    return issues


class OperationOutcomeError(MedplumError):
    """The server answered with an error status, usually carrying an OperationOutcome.

    Attributes:
        status_code: the HTTP status.
        outcome: the OperationOutcome as a dict, or None when the body was not one.
            Its `diagnostics` and `details.text` can echo submitted values (PHI).
        response: the status, headers and body (`ErrorResponse`), for code that needs them.
        method: the HTTP method of the failed request.
        path_template: the request path with ids replaced (`/fhir/R4/Patient/{id}`).
    """

    default_status: int | None = None

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = None,
        outcome: Mapping[str, Any] | None = None,
        response: ErrorResponse | None = None,
        method: str | None = None,
        path_template: str | None = None,
    ) -> None:
        self.status_code = status_code if status_code is not None else self.default_status
        self.outcome: dict[str, Any] | None = dict(outcome) if outcome is not None else None
        self.response = response
        self.method = method
        self.path_template = path_template
        super().__init__(message or self._summary())

    @property
    def issues(self) -> list[dict[str, Any]]:
        """Severity, code and FHIRPath expressions of each issue (no free text)."""
        return _issues(self.outcome)

    @property
    def response_data(self) -> dict[str, Any] | None:
        """The error body parsed as a JSON object (usually the OperationOutcome), or None.

        It can echo submitted values (PHI): read it in code, never log it.
        """
        if self.response is not None:
            try:
                data = self.response.json()
            except ValueError:
                return self.outcome
            return data if isinstance(data, dict) else self.outcome
        return self.outcome

    @property
    def detail(self) -> str | None:
        """The server's own words: each issue's `diagnostics` and `details.text`, joined.

        For reading while debugging; like `response_data` it can hold PHI and is never in
        `str()`, `repr()` or `sanitize_for_logging()`.
        """
        parts: list[str] = []
        for issue in (self.outcome or {}).get("issue") or ():
            if not isinstance(issue, Mapping):
                continue
            details = issue.get("details")
            texts = [
                issue.get("diagnostics"),
                details.get("text") if isinstance(details, Mapping) else None,
            ]
            words = " | ".join(t for t in texts if isinstance(t, str) and t)
            if words:
                parts.append(words)
        return "; ".join(parts) or None

    def _summary(self) -> str:
        parts = [f"HTTP {self.status_code}" if self.status_code else type(self).__name__]
        if self.method and self.path_template:
            parts.append(f"{self.method} {self.path_template}")
        described = []
        for issue in self.issues:
            text = str(issue.get("code"))
            if issue.get("expression"):
                text += " at " + ", ".join(issue["expression"])
            described.append(text)
        if described:
            parts.append("issues: " + "; ".join(described))
        return " | ".join(parts)

    def sanitize_for_logging(self) -> dict[str, Any]:
        """A JSON-safe dict without the body, `diagnostics` or `details.text`."""
        return {
            "type": type(self).__name__,
            "status_code": self.status_code,
            "method": self.method,
            "path_template": self.path_template,
            "issues": self.issues,
        }


class BadRequestError(OperationOutcomeError):
    """400 Bad Request."""

    default_status = 400


class ValidationError(BadRequestError):
    """400 carrying an OperationOutcome: the server rejected the resource or the query."""


class AuthenticationError(OperationOutcomeError):
    """401 Unauthorized, or the client-credentials login failed."""

    default_status = 401


class AuthorizationError(OperationOutcomeError):
    """403 Forbidden (for example an access policy of the on-behalf-of membership)."""

    default_status = 403


class NotFoundError(OperationOutcomeError):
    """404 Not Found."""

    default_status = 404


class GoneError(NotFoundError):
    """410 Gone: the resource was deleted. A NotFoundError, so old handlers still catch it."""

    default_status = 410


class ConflictError(OperationOutcomeError):
    """409 Conflict: the request lost a race; re-read and retry against fresh state."""

    default_status = 409


class PreconditionFailedError(OperationOutcomeError):
    """412 Precondition Failed: an If-Match version is stale or If-None-Exist matched several."""

    default_status = 412


class RateLimitError(OperationOutcomeError):
    """429 Too Many Requests, after the client's own retries.

    `retry_after` is the server's requested delay in seconds (from `Retry-After` or
    Medplum's `RateLimit` header), uncapped, or None when it gave none.
    """

    default_status = 429

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)

    def sanitize_for_logging(self) -> dict[str, Any]:
        """As for OperationOutcomeError, plus `retry_after`."""
        return {**super().sanitize_for_logging(), "retry_after": self.retry_after}


class ServerError(OperationOutcomeError):
    """5xx. `possibly_committed` is True when the request reached the server and its
    outcome is unknown (502/503/504): a write may have been applied anyway. It is also True
    for reads, where it is harmless."""

    def __init__(self, message: str = "", *, possibly_committed: bool = False, **kw: Any) -> None:
        self.possibly_committed = possibly_committed
        super().__init__(message, **kw)

    def sanitize_for_logging(self) -> dict[str, Any]:
        """As for OperationOutcomeError, plus `possibly_committed`."""
        return {**super().sanitize_for_logging(), "possibly_committed": self.possibly_committed}


class NetworkError(MedplumError):
    """The connection failed, timed out or was dropped.

    `possibly_committed` is True when the request had been sent before the failure:
    the server may have applied a write, so re-read before retrying it. False means
    the request provably never left (a connect-phase failure).
    """

    def __init__(
        self,
        message: str,
        *,
        possibly_committed: bool,
        method: str | None = None,
        path_template: str | None = None,
    ) -> None:
        self.possibly_committed = possibly_committed
        self.method = method
        self.path_template = path_template
        super().__init__(message)

    def sanitize_for_logging(self) -> dict[str, Any]:
        """Type, message (no URL query), method, path template, `possibly_committed`."""
        return {
            **super().sanitize_for_logging(),
            "method": self.method,
            "path_template": self.path_template,
            "possibly_committed": self.possibly_committed,
        }


class InsecureTransportError(MedplumError):
    """The base URL is not https, is not loopback, and `allow_insecure_http` was not set."""


class UnsafeRedirectError(MedplumError):
    """A follow-up URL (paging link, async job, absolute `if_none_exist`) is cross-origin."""


class TokenRefreshCooldownError(MedplumError):
    """A token refresh was needed during the cooldown after a failed refresh.

    `retry_after` is how many seconds remain before the client will try again.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)

    def sanitize_for_logging(self) -> dict[str, Any]:
        """Type, message and `retry_after`."""
        return {**super().sanitize_for_logging(), "retry_after": self.retry_after}


class MissingVersionIdError(MedplumError, ValueError):
    """A guarded write needs `meta.versionId` and the resource has none."""


class BundleEntryError(MedplumError):
    """A batch or transaction response has failed entries.

    `entries` holds the failed `BundleEntryResult`s; the message has only their
    indices and status codes, never outcome text.
    """

    def __init__(self, entries: Sequence[Any]) -> None:
        self.entries = list(entries)
        listed = ", ".join(f"#{e.index}: {e.status_code}" for e in self.entries)
        super().__init__(f"{len(self.entries)} bundle entries failed ({listed})")

    def sanitize_for_logging(self) -> dict[str, Any]:
        """Type and the failed entries' indices and status codes."""
        return {
            "type": type(self).__name__,
            "entries": [{"index": e.index, "status_code": e.status_code} for e in self.entries],
        }


class InvalidResponseError(MedplumError, ValueError):
    """The server answered, but not with anything the client can use: a success status
    whose body is not JSON, is empty where a resource was expected, is larger than the
    client's `max_response_bytes`, or does not validate as the `as_fhir` model; or paging
    whose `next` link leads back to a page already read.

    A ValueError too, as a body that does not parse always was. The audit event of the
    call records it as the call's failure.

    Attributes:
        status_code: the HTTP status of the answer.
        method: the HTTP method of the request.
        path_template: the request path with ids replaced (`/fhir/R4/Patient/{id}`).
        possibly_committed: True when the request was a write (any method but GET and
            HEAD): the server answered after acting on it, so read before retrying.
        response: the status, headers and body (`ErrorResponse`), or None when the body
            was not kept (too large). The body may hold PHI: never log it.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        path_template: str | None = None,
        possibly_committed: bool = False,
        response: ErrorResponse | None = None,
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.path_template = path_template
        self.possibly_committed = possibly_committed
        self.response = response
        super().__init__(message)

    def sanitize_for_logging(self) -> dict[str, Any]:
        """Type, message, status, method, path template and `possibly_committed`."""
        return {
            **super().sanitize_for_logging(),
            "status_code": self.status_code,
            "method": self.method,
            "path_template": self.path_template,
            "possibly_committed": self.possibly_committed,
        }


class ResponseTooLargeError(InvalidResponseError):
    """The response body grew past the client's `max_response_bytes` and was abandoned.

    `limit` is that cap in bytes. Raise it (`max_response_bytes=None` removes the cap) or
    page the request (`_count`) to read more.
    """

    def __init__(self, message: str, *, limit: int, **kw: Any) -> None:
        self.limit = limit
        super().__init__(message, **kw)


class ResponseValidationError(InvalidResponseError):
    """The response does not validate as the `as_fhir` model.

    `validation_error` is the model's own error (a `FHIRValidationError` for our models),
    whose messages may quote values from the response (PHI): the message of this
    exception names only the failing element paths.
    """

    def __init__(self, message: str, *, validation_error: Exception, **kw: Any) -> None:
        self.validation_error = validation_error
        super().__init__(message, **kw)
