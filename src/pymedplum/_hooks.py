"""Running hooks safely, without I/O of its own: sanitizing, isolation, dispatch.

Each dispatcher exists twice, `x` and `x_async`, differing only in awaiting: the async
client's source calls the `_async` one and the generated sync client the plain one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from pymedplum._security import Origin, origin_of
from pymedplum.hooks import PreparedRequest, RequestEvent

__all__ = [
    "ASYNC_HOOKS_ALLOWED",
    "SYNC_HOOKS_ONLY",
    "check_hook",
    "sanitize",
    "run_before_request",
    "run_before_request_async",
    "run_complete",
    "run_complete_async",
]

logger = logging.getLogger("pymedplum.hooks")

ASYNC_HOOKS_ALLOWED = True
SYNC_HOOKS_ONLY = False

# Headers only the SDK may set: credentials and the acting identity.
_RESERVED = frozenset({"authorization", "proxy-authorization", "x-medplum-on-behalf-of", "cookie"})


def _is_async(hook: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
        getattr(hook, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def check_hook(name: str, hook: Callable[..., Any] | None, async_allowed: bool) -> None:
    """Refuse a non-callable hook, and an async one on the sync client (TypeError)."""
    if hook is None:
        return
    if not callable(hook):
        raise TypeError(f"{name} must be callable, got {type(hook).__name__}")
    if _is_async(hook) and not async_allowed:
        raise TypeError(
            f"{name} is an async function, which MedplumClient cannot await: "
            "pass a plain function, or use AsyncMedplumClient"
        )


def prepared(method: str, url: str, headers: dict[str, str], json_body: Any) -> PreparedRequest:
    """The hook's view: headers read-only (the SDK never put credentials in them)."""
    return PreparedRequest(method, url, MappingProxyType(dict(headers)), json_body)


def sanitize(original: PreparedRequest, returned: object, origin: Origin) -> PreparedRequest | None:
    """What the SDK will send from a hook's return value; None to send the original.

    Reserved headers (Authorization, the OBO header, cookies) are stripped. A changed
    method, a URL on another origin, or something not a PreparedRequest is discarded.
    Every such repair is logged at WARNING, naming no URL path or query (PHI).
    """
    if returned is None or returned is original:
        return None
    if not isinstance(returned, PreparedRequest):
        logger.warning(
            "before_request returned %s, not a PreparedRequest or None: ignored",
            type(returned).__name__,
        )
        return None
    if returned.method != original.method:
        logger.warning("before_request changed the HTTP method: change discarded")
        return None
    if origin_of(returned.url) != origin:
        scheme, host, port = origin_of(returned.url)
        logger.warning(
            "before_request moved the request to another origin (%s://%s:%s): change discarded",
            scheme,
            host,
            port,
        )
        return None
    stripped = sorted(k for k in returned.headers if k.lower() in _RESERVED)
    if stripped:
        logger.warning("before_request set reserved header(s) %s: stripped", ", ".join(stripped))
        headers = {k: v for k, v in returned.headers.items() if k.lower() not in _RESERVED}
        returned = PreparedRequest(returned.method, returned.url, headers, returned.json_body)
    return returned


def _log_failure(name: str, exc: BaseException) -> None:
    # The type only: a hook's own message may quote PHI from the event.
    logger.warning("%s hook raised %s; the call goes on", name, type(exc).__name__)


def run_before_request(hook: Callable[[PreparedRequest], Any], request: PreparedRequest) -> object:
    """Call a before_request hook; its exceptions are logged, never raised."""
    try:
        result = hook(request)
    except Exception as exc:
        _log_failure("before_request", exc)
        return None
    if inspect.isawaitable(result):
        _discard_awaitable(result)
        logger.warning("before_request returned an awaitable in MedplumClient: ignored")
        return None
    return result


async def run_before_request_async(
    hook: Callable[[PreparedRequest], Any], request: PreparedRequest
) -> object:
    """As run_before_request, awaiting an async hook."""
    try:
        result = hook(request)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        _log_failure("before_request", exc)
        return None
    return result


def run_complete(hook: Callable[[RequestEvent], Any], event: RequestEvent) -> None:
    """Call an on_request_complete hook; its exceptions are logged, never raised."""
    try:
        result = hook(event)
    except Exception as exc:
        _log_failure("on_request_complete", exc)
        return
    if inspect.isawaitable(result):
        _discard_awaitable(result)
        logger.warning("on_request_complete returned an awaitable in MedplumClient: ignored")


async def run_complete_async(hook: Callable[[RequestEvent], Any], event: RequestEvent) -> None:
    """As run_complete, awaiting an async hook."""
    try:
        result = hook(event)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        _log_failure("on_request_complete", exc)


def _discard_awaitable(value: object) -> None:
    close = getattr(value, "close", None)
    if callable(close):  # a coroutine never awaited would warn at collection
        close()
