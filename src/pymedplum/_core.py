"""Everything both clients share that does no I/O.

`BaseClient` holds configuration and builds each logical call (`Call`) from the public
methods' arguments; `CallState` walks one call through its wire attempts, deciding
after each response or transport failure whether to return, raise, refresh the token
or wait and retry, and records what the audit event needs. The async client and the
sync client generated from it only send requests and sleep.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from pymedplum import _grants, _hooks, _json, _retry, _telemetry
from pymedplum._auth import TokenState
from pymedplum._budget import RateLimitBudget, budget_scope
from pymedplum._convert import dict_to_model, resource_to_dict
from pymedplum._obo import OBO_HEADER, OnBehalfOf
from pymedplum._security import RedactedStr, check_base_url, origin_of, require_same_origin
from pymedplum._token_cache import TokenCache
from pymedplum.bundle import FHIRBundle
from pymedplum.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BadRequestError,
    ConflictError,
    ErrorResponse,
    GoneError,
    InvalidResponseError,
    MedplumError,
    MissingVersionIdError,
    NetworkError,
    NotFoundError,
    OperationOutcomeError,
    PreconditionFailedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    ServerError,
    ValidationError,
)
from pymedplum.hooks import PreparedRequest, RequestAction, RequestAttempt, RequestEvent

__all__ = [
    "BaseClient",
    "Call",
    "CallState",
    "JsonReader",
    "UpdateResult",
    "encode_query",
    "describe_path",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "error_from_status",
    "make_event",
]

logger = logging.getLogger("pymedplum")

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
Query = Mapping[str, Any] | Sequence[tuple[str, Any]]
Resource = Mapping[str, Any] | BaseModel

USER_AGENT = "pymedplum/0.1.0"
FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
#: The largest response body the client reads by default (`max_response_bytes`): 64 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_BASE_HEADERS = {"Accept": FHIR_JSON}
# What a credential-less call never sends, whoever adds it (cookies: the httpx client's jar).
_CREDENTIAL_HEADERS = ("authorization", "cookie", OBO_HEADER)
# `\Z`, not `$`: `$` also matches before a final line break ("abc\n").
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}\Z")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}\Z")
_PLAIN_SEGMENT = re.compile(r"[A-Za-z_$][A-Za-z_\-$]*\Z")
_MUTATION = re.compile(r"^\s*mutation\b", re.MULTILINE)
_URL_SAFE_PART = re.compile(r"[A-Za-z0-9\-._$]+\Z")
_OBO_HEADER_LOWER = OBO_HEADER.lower()
# An absolute URL starts with a scheme; `identifier=http://x|1` is a query, not a URL.
_ABSOLUTE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What `update_with_retry` did.

    Attributes:
        wrote: whether a PUT was sent (False: the resource was already as desired).
        version_id: `meta.versionId` after the call.
        resource: the resource's final state.
    """

    wrote: bool
    version_id: str | None
    resource: dict[str, Any]


@dataclass(slots=True)
class Call:
    """One logical request, before credentials: what every wire attempt sends.

    `credentials=False` sends it with no bearer token, no on-behalf-of header, no cookies
    and no auth of the httpx client: a presigned storage URL, which may be on another
    origin (its builder checks it; see `_security.check_storage_url`).
    """

    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None
    json_body: Any = None
    replay_safe: bool = True
    credentials: bool = True


# ---------------------------------------------------------------- building requests


def _query_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _json.decimal_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"query parameter {key!r}: {value} is not a number FHIR can search")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def encode_query(query: Query | None) -> str:
    """A FHIR query string: lists repeat the parameter, None values are left out.

    `{"birthdate": ["ge1990", "le2000"]}` -> `birthdate=ge1990&birthdate=le2000`.
    """
    if not query:
        return ""
    items = query.items() if isinstance(query, Mapping) else query
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            pairs.extend((key, _query_value(key, v)) for v in value if v is not None)
        else:
            pairs.append((key, _query_value(key, value)))
    try:
        return urlencode(pairs, safe=",:|$")
    except UnicodeEncodeError as exc:  # a lone surrogate: not Unicode text
        bad = next(k for k, v in pairs if not _is_unicode(k) or not _is_unicode(v))
        raise ValueError(
            f"query parameter {bad if _is_unicode(bad) else '?'!r}: the text holds a lone "
            f"surrogate (U+{ord(exc.object[exc.start]):04X}), which is not valid Unicode"
        ) from None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_type(resource_type: str) -> str:
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.match(resource_type):
        raise ValueError(f"resource_type: {resource_type!r} is not a FHIR resource type")
    return resource_type


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _FHIR_ID.match(value) or value in (".", ".."):
        shown = value if isinstance(value, str) and len(value) <= 70 else type(value).__name__
        raise ValueError(f"{what}: {shown!r} is not a valid FHIR id")
    return value


def _merge_headers(extra: Mapping[str, str] | None, **sdk: str | None) -> dict[str, str]:
    """SDK headers, then the caller's, which win (case-insensitively).

    The caller's `Authorization` is refused (the client owns the credentials); an
    `X-Medplum-On-Behalf-Of` is kept under that exact name, for `split_obo_header`.
    """
    headers = dict(_BASE_HEADERS)
    for name, value in sdk.items():
        if value is not None:
            headers[name.replace("_", "-")] = value
    if extra:
        lowered = {k.lower(): k for k in headers}
        for name, value in extra.items():
            key = _check_header(name, value)
            existing = lowered.get(key)
            if existing is not None:
                del headers[existing]
            if key == _OBO_HEADER_LOWER:
                name = OBO_HEADER
            headers[name] = value
            lowered[key] = name
    return headers


def _check_header(name: object, value: object) -> str:
    """The lowercased name of a caller's header; ValueError when it cannot be sent."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError("headers: names and values must be strings")
    shown = name if name.isascii() and name.isprintable() else ascii(name)
    if not name or not name.isascii() or not name.isprintable() or ":" in name or " " in name:
        raise ValueError(f"headers: {shown!r} is not a valid header name")
    key = name.lower()
    if key in ("authorization", "proxy-authorization"):
        raise ValueError(
            f"headers: {name} is set by the client from its credentials (access_token=, or "
            "client_id and client_secret); it cannot be given per call"
        )
    if not value.isascii() or not value.isprintable():
        raise ValueError(
            f"headers: the value of {shown!r} must be printable ASCII (no line breaks)"
        )
    return key


def split_obo_header(headers: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The headers without `X-Medplum-On-Behalf-Of` (any case), and its value if present."""
    value = None
    rest = headers
    for name in headers:
        if name.lower() == _OBO_HEADER_LOWER:
            rest = {k: v for k, v in headers.items() if k.lower() != _OBO_HEADER_LOWER}
            value = headers[name]
            break
    return rest, value


def _stamp_accounts(resource: dict[str, Any], accounts: str | Sequence[str] | None) -> None:
    """Set `meta.accounts` without touching the caller's nested `meta` dict."""
    if accounts is None:
        return
    refs = [accounts] if isinstance(accounts, str) else list(accounts)
    meta = {**(resource.get("meta") or {})}
    meta["accounts"] = [{"reference": r} for r in refs]
    resource["meta"] = meta


def _version_id(resource: Mapping[str, Any]) -> str | None:
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, Mapping) else None
    return version if isinstance(version, str) and version else None


def if_match_value(
    resource: Mapping[str, Any], if_match: bool | str, headers: Mapping[str, str] | None
) -> str | None:
    """The If-Match header `update_resource` sends, per its `if_match` argument."""
    if headers and any(k.lower() == "if-match" for k in headers):
        return None  # the caller's explicit header wins
    if isinstance(if_match, bool):
        if not if_match:
            return None
        version = _version_id(resource)
        return f'W/"{version}"' if version else None
    if not isinstance(if_match, str):
        raise TypeError(f"if_match must be a bool or a str, got {type(if_match).__name__}")
    if if_match == "required":
        version = _version_id(resource)
        if version is None:
            raise MissingVersionIdError(
                f"{resource.get('resourceType')}.meta.versionId is missing and "
                "if_match='required': refusing an unguarded write"
            )
        return f'W/"{version}"'
    return if_match


def as_result(data: Any, as_fhir: type[M] | None) -> Any:
    """A response resource as a dict, or validated into `as_fhir`."""
    if as_fhir is None or data is None:
        return data
    return dict_to_model(as_fhir, data)


def apply_mutator(
    current: dict[str, Any],
    mutator: Callable[[dict[str, Any]], dict[str, Any] | None],
    resource_type: str,
    resource_id: str,
) -> dict[str, Any]:
    """Run `mutator` on a copy of `current`; refuse a change of resourceType or id."""
    working = copy.deepcopy(current)
    returned = mutator(working)
    desired = working if returned is None else resource_to_dict(returned)
    if desired.get("resourceType") != resource_type or desired.get("id") != resource_id:
        raise ValueError("update_with_retry: the mutator must not change resourceType or id")
    return desired


def send_auth(call: Call) -> httpx.Auth | httpx._client.UseClientDefault | None:
    """The `auth` of `httpx` send(): none at all for a credential-less call."""
    return httpx.USE_CLIENT_DEFAULT if call.credentials else None


def page_resources(bundle: Any, as_fhir: type[M] | None) -> list[Any]:
    """The resources of one search page: dicts, or `as_fhir` models of its type only."""
    if not isinstance(bundle, Mapping):
        return []
    return FHIRBundle(bundle, as_fhir).get_resources()


def first_match(bundle: Any) -> dict[str, Any] | None:
    """The first `match` resource of a search page (included resources skipped)."""
    for entry in (bundle or {}).get("entry") or ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("resource"), dict):
            continue
        mode = (entry.get("search") or {}).get("mode")
        if mode in (None, "match"):
            resource: dict[str, Any] = entry["resource"]
            return resource
    return None


def query_pairs(query: Query | None) -> list[tuple[str, Any]]:
    """A query as (name, value) pairs, in order."""
    if not query:
        return []
    return list(query.items() if isinstance(query, Mapping) else query)


def search_one_query(query: Query | None) -> list[tuple[str, Any]]:
    """The query with `_count=1` (replacing any `_count` given)."""
    return [(k, v) for k, v in query_pairs(query) if k != "_count"] + [("_count", 1)]


def _join(values: str | Sequence[str]) -> str:
    return values if isinstance(values, str) else ",".join(values)


def search_options(
    query: Query | None,
    *,
    summary: str | None,
    elements: Sequence[str] | None,
    total: str | None,
    at: str | None,
    count: int | None,
    offset: int | None,
    sort: str | Sequence[str] | None,
    include: str | Sequence[str] | None,
    include_iterate: str | Sequence[str] | None,
    revinclude: str | Sequence[str] | None,
    revinclude_iterate: str | Sequence[str] | None,
) -> list[tuple[str, Any]]:
    """The search parameters `search_with_options` sends, the named ones after `query`."""
    pairs = query_pairs(query)

    def many(name: str, values: str | Sequence[str] | None) -> None:
        if values is not None:
            pairs.extend((name, v) for v in ([values] if isinstance(values, str) else values))

    named: list[tuple[str, Any]] = [
        ("_summary", summary),
        ("_elements", _join(elements) if elements is not None else None),
        ("_total", total),
        ("_at", at),
        ("_count", count),
        ("_offset", offset),
        ("_sort", _join(sort) if sort is not None else None),
    ]
    pairs.extend((k, v) for k, v in named if v is not None)
    many("_include", include)
    many("_include:iterate", include_iterate)
    many("_revinclude", revinclude)
    many("_revinclude:iterate", revinclude_iterate)
    return pairs


# ---------------------------------------------------------------- describing paths


@dataclass(frozen=True, slots=True)
class Route:
    """A request path as FHIR sees it; `template` has every id replaced."""

    template: str
    resource_type: str | None = None
    resource_id: str | None = None
    operation: str | None = None
    action: RequestAction | None = None


def describe_path(method: str, path: str, fhir_prefix: str) -> Route:
    """Classify a URL path for audit events and error messages.

    `fhir_prefix` is the FHIR base path (`/fhir/R4/`). Outside it, segments that could
    be ids (anything not a plain word) are replaced by `{id}`.
    """
    if not path.startswith(fhir_prefix) and path + "/" != fhir_prefix:
        parts = [p if _PLAIN_SEGMENT.match(p) or not p else "{id}" for p in path.split("/")]
        return Route(template="/".join(parts))
    rest = [p for p in path[len(fhir_prefix) :].split("/") if p]
    head = fhir_prefix.rstrip("/")
    if not rest:
        action: RequestAction = "batch_or_transaction" if method == "POST" else "search"
        return Route(template=head + "/", action=action)
    if rest[0].startswith("$"):
        return Route(template=f"{head}/{rest[0]}", operation=rest[0], action="operation")
    if rest[0].startswith("_"):  # system-level _history and the like
        return Route(template=f"{head}/{rest[0]}", action="search")
    rtype = rest[0]
    if not rtype[:1].isupper():  # not a resource: job/{id}/status, bulkdata/export/{id}
        parts = [p if _PLAIN_SEGMENT.match(p) else "{id}" for p in rest]
        return Route(template=f"{head}/" + "/".join(parts))
    if len(rest) == 1:
        return Route(f"{head}/{rtype}", rtype, action="create" if method == "POST" else "search")
    second = rest[1]
    if second.startswith("$"):
        return Route(f"{head}/{rtype}/{second}", rtype, operation=second, action="operation")
    if second.startswith("_"):  # _search, _history
        return Route(f"{head}/{rtype}/{second}", rtype, action="search")
    rid = second
    template = f"{head}/{rtype}/{{id}}"
    if len(rest) == 2:
        actions: dict[str, RequestAction] = {
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }
        return Route(template, rtype, rid, action=actions.get(method, "read"))
    third = rest[2]
    if third.startswith("$"):
        return Route(f"{template}/{third}", rtype, rid, third, "operation")
    if third == "_history":
        suffix = "/_history/{version_id}" if len(rest) > 3 else "/_history"
        return Route(template + suffix, rtype, rid, action="read")
    return Route(f"{template}/{third}", rtype, rid, action="search")  # compartment search


# ---------------------------------------------------------------- responses


def parse_json(response: httpx.Response) -> Any:
    """The response body as JSON (decimals exact), or None when it is empty."""
    content = response.content
    if not content:
        return None
    return _json.loads(content)


class EmptyBodyError(ValueError):
    """A response had no body where JSON was expected (turned into InvalidResponseError)."""


#: `JsonReader(empty=REFUSE_EMPTY)`: an empty body is an error.
REFUSE_EMPTY: Any = object()


@dataclass(frozen=True, slots=True)
class JsonReader:
    """How a JSON response becomes a call's result: parsed, optionally narrowed by
    `select`, validated into `as_fhir`. It runs inside the call (`_send(decode=...)`), so a
    body that cannot be used fails the call and its audit event.

    `empty` is what an empty body stands for (`None` for the low-level methods, documented
    to return None then); by default an empty body is an error.
    """

    as_fhir: type[BaseModel] | None = None
    empty: Any = REFUSE_EMPTY
    select: Callable[[Any], Any] | None = None

    def __call__(self, response: httpx.Response) -> Any:
        content = response.content
        if content:
            data = _json.loads(content)
        elif self.empty is REFUSE_EMPTY:
            raise EmptyBodyError("the response body is empty, where JSON was expected")
        else:
            data = self.empty
        if self.select is not None:
            data = self.select(data)
        return as_result(data, self.as_fhir)


#: The reader of a plain JSON call (no model, empty body refused).
JSON = JsonReader()


@dataclass(frozen=True, slots=True)
class PageReader:
    """A search or history page: (the Bundle, its resources as dicts or `as_fhir` models)."""

    as_fhir: type[BaseModel] | None = None

    def __call__(self, response: httpx.Response) -> tuple[Any, list[Any]]:
        bundle = JSON(response)
        return bundle, page_resources(bundle, self.as_fhir)


def _outcome_of(content: bytes) -> dict[str, Any] | None:
    try:
        data = _json.loads(content) if content else None
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        return data
    return None


_READS = frozenset({"GET", "HEAD"})


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def _error_path(error: Any) -> str:
    """A validation error's location as a FHIR path (the errors of our models carry one)."""
    loc: tuple[Any, ...] = tuple(error.get("loc") or ())
    if len(loc) == 1 and isinstance(loc[0], str) and "." in loc[0]:
        return loc[0]
    return ".".join(str(part) for part in loc) or "(root)"


_STATUS_ERRORS: dict[int, type[OperationOutcomeError]] = {
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    412: PreconditionFailedError,
}


def error_from_response(
    response: httpx.Response, method: str, path_template: str, *, replay_refused: bool
) -> OperationOutcomeError:
    """The exception for an error response; `replay_refused` marks a write not replayed."""
    return error_from_status(
        response.status_code,
        response.headers,
        response.content,
        method,
        path_template,
        replay_refused=replay_refused,
    )


def error_from_status(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    method: str,
    path_template: str,
    *,
    replay_refused: bool = False,
) -> OperationOutcomeError:
    """The exception for an error status and body (an HTTP answer, or a batch entry's
    `response.status` with its `outcome`): the same class for the same status."""
    outcome = _outcome_of(content)
    kw: dict[str, Any] = {
        "status_code": status,
        "outcome": outcome,
        "response": ErrorResponse(status, headers, content),
        "method": method,
        "path_template": path_template,
    }
    if status == 400:
        return (ValidationError if outcome is not None else BadRequestError)(**kw)
    if status == 429:
        return RateLimitError(retry_after=_retry.server_delay(headers), **kw)
    if status >= 500:
        if replay_refused:
            message = (
                f"HTTP {status} | {method} {path_template} | the write may have been "
                "committed, so it was not replayed: read the resource before retrying"
            )
            return ServerError(message, possibly_committed=True, **kw)
        return ServerError(possibly_committed=status in _retry.AMBIGUOUS_STATUSES, **kw)
    if 300 <= status < 400:
        return OperationOutcomeError(
            f"HTTP {status} | {method} {path_template} | the server redirected; "
            "the client never follows redirects",
            **kw,
        )
    return _STATUS_ERRORS.get(status, OperationOutcomeError)(**kw)


# ---------------------------------------------------------------- the client core


class BaseClient:
    """Configuration and request building shared by both clients."""

    _http: httpx.Client | httpx.AsyncClient
    #: The clock of token expiry, cooldown and job deadlines: Unix time, so that token
    #: expiry means the same in every client sharing a token cache; tests replace it.
    _clock: Callable[[], float] = staticmethod(time.time)
    #: The last `RateLimit` response header and when it arrived, in seconds since the epoch
    #: (see `rate_limit_status()`).
    _last_rate_limit: tuple[str, float] | None = None
    #: Opens a span per logical call (pymedplum.otel.instrument sets it on a client, or on
    #: this class for every client); None: no tracing.
    _tracer: _telemetry.CallTracer | None = None

    def _configure(
        self,
        *,
        base_url: str,
        client_id: str | None,
        client_secret: str | None,
        access_token: str | None,
        project_id: str | None,
        fhir_url_path: str,
        before_request: Callable[..., Any] | None,
        on_request_complete: Callable[..., Any] | None,
        allow_insecure_http: bool,
        failed_refresh_cooldown: float,
        default_on_behalf_of: str | None,
        async_hooks: bool,
        timeout: float | None = 30.0,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
        token_cache: TokenCache | None = None,
        rate_limit_budget: RateLimitBudget | None = None,
        private_key: Any = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        subject_token: str | None = None,
    ) -> None:
        grant = _grants.build_grant(
            client_id, client_secret, private_key, key_id, algorithm, subject_token
        )
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if max_response_bytes is not None and (
            isinstance(max_response_bytes, bool) or max_response_bytes < 1
        ):
            raise ValueError("max_response_bytes must be a positive int, or None for no cap")
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        _hooks.check_hook("before_request", before_request, async_hooks)
        _hooks.check_hook("on_request_complete", on_request_complete, async_hooks)
        self.base_url = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.fhir_base_url = self.base_url + fhir_url_path.strip("/") + "/"
        self.project_id = project_id
        self._origin = origin_of(self.base_url)
        self._allow_insecure_http = allow_insecure_http
        self._fhir_prefix = urlsplit(self.fhir_base_url).path
        self._token = TokenState(
            token_url=self.base_url + "oauth2/token",
            client_id=client_id,
            client_secret=RedactedStr.wrap(client_secret),
            access_token=RedactedStr.wrap(access_token),
            cooldown=failed_refresh_cooldown,
            cache=token_cache,
            grant=grant,
        )
        self._obo = OnBehalfOf(default_on_behalf_of)
        if rate_limit_budget is not None and not isinstance(rate_limit_budget, RateLimitBudget):
            raise TypeError("rate_limit_budget must be a pymedplum.RateLimitBudget")
        self._budget = rate_limit_budget
        self._fhir_scope = budget_scope("fhir", self.base_url, client_id)
        self._auth_scope = budget_scope("auth", self.base_url, None)
        self._before_request = before_request
        self._on_request_complete = on_request_complete

    @staticmethod
    def _default_http_options(timeout: float | None) -> dict[str, Any]:
        return {
            "timeout": timeout,
            "follow_redirects": False,
            "headers": {"User-Agent": USER_AGENT},
        }

    def __repr__(self) -> str:
        # Safe on a client whose construction failed half way (tracebacks show it).
        return f"<{type(self).__name__} base_url={getattr(self, 'base_url', None)!r}>"

    @property
    def default_on_behalf_of(self) -> str | None:
        """The membership every request acts as when nothing else is set."""
        return self._obo.default

    # -- URLs

    def _url(self, path: str, query: Query | None = None) -> str:
        """An absolute URL for a path relative to base_url (or a same-origin absolute URL)."""
        if not isinstance(path, str) or not _is_unicode(path):
            raise ValueError("path: not a valid URL path (it holds a lone surrogate)")
        if _ABSOLUTE_URL.match(path):
            require_same_origin(path, self._origin, "request URL")
            url = path
        else:
            url = self.base_url + path.lstrip("/")
        encoded = encode_query(query)
        if encoded:
            url += ("&" if "?" in url else "?") + encoded
        return url

    def _resource_url(self, resource_type: str, *parts: str) -> str:
        url = self.fhir_base_url + _check_type(resource_type)
        for part in parts:
            # Ids and operation names are URL-safe already: quote only what is not.
            url += "/" + (part if _URL_SAFE_PART.match(part) else quote(part, safe="$_"))
        return url

    # -- builders: one Call per public operation

    def _build_create(
        self,
        resource: Resource,
        headers: Mapping[str, str] | None,
        accounts: str | Sequence[str] | None,
        if_none_exist: str | None = None,
    ) -> Call:
        body = resource_to_dict(resource)
        rtype = body.get("resourceType")
        if not isinstance(rtype, str):
            raise ValueError("create_resource: the resource has no resourceType")
        _stamp_accounts(body, accounts)
        sdk_headers = _merge_headers(headers, Content_Type=FHIR_JSON, If_None_Exist=if_none_exist)
        return self._call("POST", self._resource_url(rtype), sdk_headers, body)

    def _if_none_exist_query(self, if_none_exist: str) -> str:
        """The search query of If-None-Exist: `?` stripped, a same-origin URL's query."""
        value = if_none_exist.strip()
        if _ABSOLUTE_URL.match(value):
            require_same_origin(value, self._origin, "if_none_exist URL")
            logger.warning("if_none_exist was a full URL: only its query string is sent")
            value = urlsplit(value).query
        value = value.lstrip("?")
        if not value:
            raise ValueError("if_none_exist must be a non-empty search query")
        return value

    def _build_read(
        self, resource_type: str, parts: Sequence[str], headers: Mapping[str, str] | None
    ) -> Call:
        return Call("GET", self._resource_url(resource_type, *parts), _merge_headers(headers))

    def _build_update(
        self,
        resource: Resource,
        headers: Mapping[str, str] | None,
        accounts: str | Sequence[str] | None,
        if_match: bool | str,
    ) -> Call:
        body = resource_to_dict(resource)
        rtype, rid = body.get("resourceType"), body.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str) or not rid:
            raise ValueError("update_resource: the resource needs a resourceType and an id")
        _stamp_accounts(body, accounts)
        sdk_headers = _merge_headers(
            headers, Content_Type=FHIR_JSON, If_Match=if_match_value(body, if_match, headers)
        )
        url = self._resource_url(rtype, _check_id(rid, f"{rtype}.id"))
        return self._call("PUT", url, sdk_headers, body)

    def _build_patch(
        self,
        resource_type: str,
        resource_id: str,
        operations: Sequence[Mapping[str, Any]],
        headers: Mapping[str, str] | None,
        if_match: str | None,
    ) -> Call:
        if isinstance(operations, Mapping | str | bytes):
            raise TypeError("patch_resource expects a list of JSON Patch operations")
        ops = [resource_to_dict(op) for op in operations]
        sdk_headers = _merge_headers(headers, Content_Type=JSON_PATCH, If_Match=if_match)
        url = self._resource_url(resource_type, _check_id(resource_id, "resource_id"))
        return self._call("PATCH", url, sdk_headers, ops)

    def _build_delete(
        self, resource_type: str, resource_id: str, headers: Mapping[str, str] | None
    ) -> Call:
        url = self._resource_url(resource_type, _check_id(resource_id, "resource_id"))
        return Call("DELETE", url, _merge_headers(headers))

    def _build_search(self, resource_type: str, query: Query | None) -> Call:
        url = self._resource_url(resource_type)
        encoded = encode_query(query)
        return Call("GET", url + "?" + encoded if encoded else url, _merge_headers(None))

    def _build_next_page(self, bundle: Any, read: set[str]) -> Call | None:
        """The call for a page's `next` link; refuses another origin and a page in `read`
        (the URLs already read), which would page forever."""
        next_url = FHIRBundle(bundle).next_url if isinstance(bundle, Mapping) else None
        if not next_url:
            return None
        require_same_origin(next_url, self._origin, "the next-page link")
        if next_url in read:
            route = describe_path("GET", urlsplit(next_url).path, self._fhir_prefix)
            pages = f"{len(read)} page" + ("s" if len(read) != 1 else "")
            raise InvalidResponseError(
                f"GET {route.template} | the next-page link leads back to a page already "
                f"read: the server's paging loops, so paging stopped after {pages}",
                status_code=200,
                method="GET",
                path_template=route.template,
            )
        return Call("GET", next_url, _merge_headers(None))

    def _build_bundle(
        self,
        bundle: Resource,
        bundle_type: Literal["batch", "transaction"],
        accounts: str | Sequence[str] | None,
    ) -> Call:
        body = resource_to_dict(bundle)
        body["resourceType"] = "Bundle"
        body["type"] = bundle_type
        if accounts is not None:
            entries = []
            for entry in body.get("entry") or ():
                entry = dict(entry)
                if isinstance(entry.get("resource"), Mapping):
                    entry["resource"] = dict(entry["resource"])
                    _stamp_accounts(entry["resource"], accounts)
                entries.append(entry)
            body["entry"] = entries
        headers = _merge_headers(None, Content_Type=FHIR_JSON)
        return self._call("POST", self.fhir_base_url, headers, body, replay_safe=False)

    def _build_graphql(self, query: str, variables: Mapping[str, Any] | None) -> Call:
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = dict(variables)
        headers = _merge_headers(None, Content_Type="application/json")
        # A query document can be replayed safely; a mutation cannot.
        safe = not _MUTATION.search(query)
        return self._call("POST", self.fhir_base_url + "$graphql", headers, body, replay_safe=safe)

    def _build_raw(
        self,
        method: str,
        path: str,
        params: Query | None,
        headers: Mapping[str, str] | None,
        json_body: Any = None,
        content: bytes | None = None,
    ) -> Call:
        url = self._url(path, params)
        if json_body is not None:
            merged = _merge_headers(headers, Content_Type=FHIR_JSON)
            return self._call(method, url, merged, json_body)
        merged = _merge_headers(headers)
        return Call(method, url, merged, content, None, _retry.is_replay_safe(method, merged))

    def _call(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any,
        *,
        replay_safe: bool | None = None,
    ) -> Call:
        if replay_safe is None:
            replay_safe = _retry.is_replay_safe(method, headers)
        return Call(method, url, headers, _json.dumps(body), body, replay_safe)

    # -- running a call

    def _acting(self, call: Call, on_behalf_of: str | None) -> tuple[Call, str | None]:
        """The call without an `X-Medplum-On-Behalf-Of` in its headers, and the membership
        it acts as. Such a header is a per-call `on_behalf_of` (the same rules apply, and
        the header sent is the resolved one); with the kwarg too, both must agree."""
        headers, from_header = split_obo_header(call.headers)
        if from_header is not None:
            if on_behalf_of is not None and (
                self._obo.resolve(on_behalf_of) != self._obo.resolve(from_header)
            ):
                raise ValueError(
                    "on_behalf_of and headers['X-Medplum-On-Behalf-Of'] name different "
                    "memberships: give one of them"
                )
            on_behalf_of = from_header
            call = replace(call, headers=headers)
        return call, self._obo.resolve(on_behalf_of)

    def _begin(self, call: Call, on_behalf_of: str | None) -> CallState:
        if not call.credentials:  # a presigned URL: no identity at all
            return CallState(self, call, None)
        call, acting = self._acting(call, on_behalf_of)
        return CallState(self, call, acting)

    def _prepared(self, call: Call) -> PreparedRequest:
        return _hooks.prepared(call.method, call.url, call.headers, call.json_body)

    def _apply_hook_result(self, call: Call, original: PreparedRequest, returned: object) -> Call:
        """The call to send after a before_request hook (the original when it was refused)."""
        # A credential-less call may leave the client's origin, never the one it was built for.
        origin = self._origin if call.credentials else origin_of(call.url)
        request = _hooks.sanitize(original, returned, origin)
        if request is None:
            return call
        content = call.content
        if request.json_body is not call.json_body:
            content = None if request.json_body is None else _json.dumps(request.json_body)
        return Call(
            call.method,
            request.url,
            dict(request.headers),
            content,
            request.json_body,
            call.replay_safe,
            call.credentials,
        )

    def _token_transport_error(self, exc: httpx.RequestError) -> NetworkError:
        """The error of a token request that never got an answer (the flight shares it)."""
        return NetworkError(
            f"token request failed: {type(exc).__name__}",
            possibly_committed=False,
            method="POST",
            path_template="/oauth2/token",
        )


class CallState:
    """One logical call on its way through attempts, retries and a token refresh."""

    __slots__ = (
        "core",
        "call",
        "obo",
        "retries",
        "refreshed",
        "force_refresh",
        "ticket",
        "attempt_call",
        "response",
        "error",
        "final_exception",
        "attempts",
        "started_at",
        "attempt_started",
        "attempt_started_at",
        "body_bytes",
        "attempt_seconds",
        "rate_limit_wait",
        "rate_limit_header",
        "span",
    )

    def __init__(self, core: BaseClient, call: Call, obo: str | None) -> None:
        self.core = core
        self.call = call
        self.obo = obo
        self.retries = 0
        self.refreshed = False
        self.force_refresh = False
        self.ticket = 0
        self.attempt_call = call
        self.response: httpx.Response | None = None
        self.error: MedplumError | None = None
        self.final_exception: BaseException | None = None
        tracer = core._tracer
        self.span = (
            None
            if tracer is None
            else _telemetry.start_span(tracer, call.method, self.route.template)
        )
        # Audit data is gathered only when someone will read it (the hook, or the span).
        self.attempts: list[RequestAttempt] | None = (
            [] if core._on_request_complete is not None or self.span is not None else None
        )
        self.started_at = datetime.now(UTC) if self.attempts is not None else None
        self.attempt_started = 0.0
        self.attempt_started_at: datetime | None = None
        self.body_bytes = 0
        self.attempt_seconds: float | None = None
        #: Seconds the next attempt waited on the rate-limit budget (for its audit record).
        self.rate_limit_wait: float | None = None
        #: The last answer's `RateLimit` header (for the rate-limit budget).
        self.rate_limit_header: str | None = None

    @property
    def route(self) -> Route:
        """The call's path described (computed on demand: only errors and events need it)."""
        call = self.attempt_call
        return describe_path(call.method, urlsplit(call.url).path, self.core._fhir_prefix)

    def request(self, http: httpx.Client | httpx.AsyncClient, token: str | None) -> httpx.Request:
        """The wire request of the next attempt, with credentials and OBO added last."""
        call = self.attempt_call
        headers = call.headers.copy()
        if token:
            headers["Authorization"] = RedactedStr("Bearer " + token)
        if self.obo:
            headers[OBO_HEADER] = self.obo
        if self.span is not None:
            _telemetry.inject(self.span, headers)
        if self.attempts is not None:
            self.attempt_started_at = datetime.now(UTC)
        self.attempt_started = time.perf_counter()
        self.body_bytes = 0
        request = http.build_request(call.method, call.url, headers=headers, content=call.content)
        if not call.credentials:  # nothing the httpx client adds on its own either
            for name in _CREDENTIAL_HEADERS:
                request.headers.pop(name, None)
        return request

    def traced(self) -> AbstractContextManager[object]:
        """The context of an attempt's token lookup and request: the call's span current in
        it (so that an instrumented httpx nests its spans under it), or nothing."""
        span = self.span
        return _telemetry.NO_SCOPE if span is None else span.activate()

    def finish(self, event: RequestEvent) -> None:
        """End the call's span, if traced, with its event."""
        if self.span is not None:
            _telemetry.end_span(self.span, event)

    def attempt_timeout(self, streamed: bool) -> float | None:
        """Seconds the next attempt may take in all (None: no bound). A streamed upload or
        download is bounded per network read only: its size, not the server, sets its time."""
        self.attempt_seconds = None if streamed else self.core._timeout
        return self.attempt_seconds

    def received(self, response: httpx.Response, size: int) -> None:
        """After each chunk of a response body: refuse a body past `max_response_bytes` and
        an attempt past its timeout (checked here too, for http clients the SDK did not make)."""
        self.body_bytes += size
        limit = self.core._max_response_bytes
        if limit is not None and self.body_bytes > limit:
            call = self.attempt_call
            template = self.route.template
            error = ResponseTooLargeError(
                f"{call.method} {template} | the response body is larger than "
                f"max_response_bytes ({limit} bytes): refused",
                limit=limit,
                status_code=response.status_code,
                method=call.method,
                path_template=template,
                possibly_committed=call.method not in _READS,
            )
            self.error = error
            self._record(response.status_code, error, None)
            raise error
        timeout = self.attempt_seconds
        if timeout is not None and time.perf_counter() - self.attempt_started > timeout:
            raise _retry.AttemptTimeout(
                f"the attempt took longer than the client's timeout ({timeout:g} s)"
            )

    def decode(self, response: httpx.Response, read: Callable[[httpx.Response], R]) -> R:
        """`read(response)`, the call's result; a body it cannot use fails the call (and its
        audit event) with InvalidResponseError."""
        try:
            return read(response)
        except MedplumError:
            raise
        except (ValueError, RecursionError) as exc:
            error = self._unusable(response, exc)
        if self.attempts:  # the attempt got its answer; the call failed on it
            self.attempts[-1] = replace(self.attempts[-1], exception=error)
        self.error = error
        raise error

    def _unusable(self, response: httpx.Response, exc: BaseException) -> InvalidResponseError:
        call = self.attempt_call
        template = self.route.template
        status = response.status_code
        kw: dict[str, Any] = {
            "status_code": status,
            "method": call.method,
            "path_template": template,
            "possibly_committed": call.method not in _READS,
            "response": ErrorResponse(status, response.headers, response.content),
        }
        head = f"HTTP {status} | {call.method} {template} | "
        tail = (
            "; the write was applied: read the resource before retrying"
            if kw["possibly_committed"]
            else ""
        )
        if isinstance(exc, PydanticValidationError):
            paths = sorted({_error_path(e) for e in exc.errors(include_url=False)})
            listed = ", ".join(paths[:5]) + (", ..." if len(paths) > 5 else "")
            model = exc.title
            return ResponseValidationError(
                f"{head}the response does not validate as {model} "
                f"({exc.error_count()} errors at {listed}){tail}",
                validation_error=exc,
                **kw,
            )
        if isinstance(exc, EmptyBodyError):
            reason = "the response body is empty, where JSON was expected"
        elif isinstance(exc, RecursionError):
            reason = "the response body is nested too deeply to read"
        else:
            reason = f"the response body is not valid JSON ({_first_line(exc)})"
        content_type = response.headers.get("content-type")
        if content_type and "json" not in content_type:
            reason += f" but {content_type.split(';', 1)[0]}"
        return InvalidResponseError(head + reason + tail, **kw)

    def _record(self, status: int | None, error: MedplumError | None, delay: float | None) -> None:
        if self.attempts is None:
            return
        self.attempts.append(
            RequestAttempt(
                attempt_number=len(self.attempts) + 1,
                status_code=status,
                duration_seconds=time.perf_counter() - self.attempt_started,
                started_at=self.attempt_started_at or datetime.now(UTC),
                on_behalf_of=self.obo,
                exception=error,
                retry_delay_seconds=delay,
                rate_limit_wait_seconds=self.rate_limit_wait,
            )
        )
        self.rate_limit_wait = None

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before the next attempt, or None when the call is over."""
        rate_limit = self.rate_limit_header = response.headers.get("ratelimit")
        if rate_limit is not None:  # Medplum's quota report, kept for rate_limit_status()
            self.core._last_rate_limit = (rate_limit, time.time())
        status = response.status_code
        if status < 300 or status == 304:
            self.response = response
            self._record(status, None, None)
            return None
        if (
            status == 401
            and self.call.credentials
            and self.core._token.can_refresh
            and not self.refreshed
        ):
            self.refreshed = self.force_refresh = True  # one forced refresh, one replay
            self._record(status, None, 0.0)
            return 0.0
        call = self.call
        delay = _retry.delay_after_status(
            status, response.headers, replay_safe=call.replay_safe, retries_done=self.retries
        )
        if delay is not None:
            self.retries += 1
            self._record(status, None, delay)
            return delay
        refused = status in _retry.AMBIGUOUS_STATUSES and not call.replay_safe
        self.error = error_from_response(
            response, call.method, self.route.template, replay_refused=refused
        )
        self._record(status, self.error, None)
        return None

    def after_transport_error(self, exc: httpx.RequestError) -> float | None:
        """As after_response, for a request that got no response."""
        call = self.call
        transport = isinstance(exc, httpx.TransportError)
        sent = _retry.was_sent(exc)
        delay = None
        if transport:
            delay = _retry.delay_after_transport_error(
                exc,  # type: ignore[arg-type]
                replay_safe=call.replay_safe,
                retries_done=self.retries,
            )
        template = self.route.template
        if isinstance(exc, _retry.AttemptTimeout):
            sent = True  # it may have been: a replay is for replay-safe requests only
        if sent and not call.replay_safe:
            detail = "after the request was sent: the write may have been committed, so it was not replayed; read before retrying"  # noqa: E501
        elif sent:
            detail = "after the request was sent"
        else:
            detail = "before the request was sent"
        error = NetworkError(
            f"{type(exc).__name__} {detail} | {call.method} {template}",
            possibly_committed=sent,
            method=call.method,
            path_template=template,
        )
        if delay is not None:
            self.retries += 1
            self._record(None, error, delay)
            return delay
        self.error = error
        self._record(None, error, None)
        return None

    def result(self) -> httpx.Response:
        """The final response, or raise the call's error."""
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response

    def event(self) -> RequestEvent | None:
        """The audit event of the finished call, or None when no hook wants one."""
        if self.attempts is None or self.started_at is None:
            return None
        return make_event(
            self.core,
            self.call,
            self.started_at,
            tuple(self.attempts),
            self.attempts[-1].status_code if self.attempts else None,
            self.final_exception,
        )


def make_event(
    core: BaseClient,
    call: Call,
    started_at: datetime,
    attempts: tuple[RequestAttempt, ...],
    final_status_code: int | None,
    final_exception: BaseException | None,
    batch_size: int | None = None,
) -> RequestEvent:
    """The audit event of one logical call (`batch_size`: an auto-batched read's batch)."""
    parts = urlsplit(call.url)
    route = describe_path(call.method, parts.path, core._fhir_prefix)
    # A credential-less call (a presigned URL) may be on another origin, and its query
    # is a credential: the event names that origin and leaves the query out.
    scheme, host, port = core._origin if call.credentials else origin_of(call.url)
    query = parts.query if call.credentials else ""
    return RequestEvent(
        method=call.method,
        origin=f"{scheme}://{host}:{port}",
        path=parts.path,
        path_template=route.template,
        query_params=parse_qs(query, keep_blank_values=True) if query else None,
        resource_type=route.resource_type,
        resource_id=route.resource_id,
        operation=route.operation,
        action=route.action,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        attempts=attempts,
        final_status_code=final_status_code,
        final_exception=final_exception,
        batch_size=batch_size,
    )
