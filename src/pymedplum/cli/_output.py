"""What the command line prints: JSON, NDJSON and tables on stdout; errors on stderr.

Errors name what failed and where (the SDK's exceptions carry no token and no resource);
exit codes say what kind of failure it was, so scripts can branch on them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from pydantic import ValidationError as PydanticValidationError

from pymedplum import _json
from pymedplum.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    InsecureTransportError,
    MedplumError,
    MissingVersionIdError,
    NotFoundError,
    OperationOutcomeError,
    PreconditionFailedError,
    TokenRefreshCooldownError,
    UnsafeRedirectError,
    ValidationError,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_CODES_HELP",
    "exit_code_for",
    "describe_error",
    "validation_messages",
    "write_json",
    "write_ndjson",
    "summary",
    "cell",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_INVALID = 5
EXIT_CONFLICT = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\b
Exit codes:
  0    success
  1    server or network error (5xx, 429 after retries, connection lost)
  2    usage error: bad arguments, missing settings, unreadable file or config
  3    not found (404), or deleted (410)
  4    authentication or authorization failed (401, 403, refused credentials
       or on-behalf-of)
  5    invalid resource: not JSON, refused by the server (400) or by `validate`
  6    conflict: the version changed (409, 412)
  130  interrupted"""


def _is_authentication_outcome(exc: OperationOutcomeError) -> bool:
    """Medplum 5 refuses an On-Behalf-Of header with a 400 "Authentication error"."""
    for issue in (exc.outcome or {}).get("issue") or ():
        if isinstance(issue, Mapping) and (issue.get("details") or {}).get("text") == (
            "Authentication error"
        ):
            return True
    return False


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an exception a command let through."""
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, AuthenticationError | AuthorizationError | TokenRefreshCooldownError):
        return EXIT_AUTH
    if isinstance(exc, ConflictError | PreconditionFailedError):
        return EXIT_CONFLICT
    if isinstance(exc, OperationOutcomeError) and exc.status_code == 400:
        return EXIT_AUTH if _is_authentication_outcome(exc) else EXIT_INVALID
    if isinstance(exc, ValidationError | PydanticValidationError):
        return EXIT_INVALID
    if isinstance(exc, InsecureTransportError | UnsafeRedirectError | MissingVersionIdError):
        return EXIT_USAGE
    return EXIT_ERROR


def describe_error(exc: BaseException) -> list[str]:
    """Lines for stderr: the SDK's safe message, then the server's issue texts.

    The issue texts (`details.text`) say what the server objected to; the diagnostics,
    which may echo submitted values, are left out.
    """
    if isinstance(exc, PydanticValidationError):
        return ["the resource is not valid FHIR:", *validation_messages(exc)]
    message = exc.message if isinstance(exc, MedplumError) else str(exc)
    lines = [message or type(exc).__name__]
    if isinstance(exc, OperationOutcomeError):
        for issue in (exc.outcome or {}).get("issue") or ():
            if not isinstance(issue, Mapping):
                continue
            text = (issue.get("details") or {}).get("text")
            where = ", ".join(str(e) for e in issue.get("expression") or ())
            if text or where:
                lines.append(f"  {issue.get('severity', 'error')}: {text or ''}".rstrip())
                if where:
                    lines[-1] += f" (at {where})"
    return lines


def validation_messages(exc: PydanticValidationError) -> list[str]:
    """One line per problem: the FHIR path and what is wrong, never the offending value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        location = ".".join(str(part) for part in error.get("loc", ())) or "(resource)"
        lines.append(f"  {location}: {error.get('msg', 'invalid')}")
    return lines


def write_json(value: Any, *, compact: bool = False, out: IO[bytes] | None = None) -> None:
    """JSON on stdout (decimals exact), indented unless `compact`."""
    stream = out or sys.stdout.buffer
    stream.write(_json.dumps(value, indent=not compact) + b"\n")
    stream.flush()


def write_ndjson(values: Iterable[Any], *, out: IO[bytes] | None = None) -> int:
    """One JSON document per line, flushed as they come; how many were written."""
    stream = out or sys.stdout.buffer
    count = 0
    for value in values:
        stream.write(_json.dumps(value) + b"\n")
        stream.flush()
        count += 1
    return count


def _human_name(names: Any) -> str | None:
    if isinstance(names, str):
        return names
    if not isinstance(names, Sequence) or not names or not isinstance(names[0], Mapping):
        return None
    name = names[0]
    if name.get("text"):
        return str(name["text"])
    parts = [*(name.get("given") or ()), name.get("family") or ""]
    return " ".join(str(p) for p in parts if p) or None


def _concept(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    if value.get("text"):
        return str(value["text"])
    for coding in value.get("coding") or ():
        if isinstance(coding, Mapping) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return None


def summary(resource: Mapping[str, Any]) -> str:
    """A short human label for a table: a name, title or code, and the status."""
    label = (
        _human_name(resource.get("name"))
        or (str(resource["title"]) if resource.get("title") else None)
        or _concept(resource.get("code"))
        or (str(resource["description"])[:60] if resource.get("description") else None)
        or ""
    )
    status = resource.get("status")
    return f"{label} ({status})" if status and label else str(status or label)


def cell(resource: Mapping[str, Any], path: str) -> str:
    """The value at a dotted path (`name.0.family`, `meta.lastUpdated`) as table text."""
    value: Any = resource
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, Sequence) and not isinstance(value, str) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else None
        else:
            value = None
        if value is None:
            return ""
    if isinstance(value, Mapping | list):
        return _json.dumps(value).decode()
    return str(value)
