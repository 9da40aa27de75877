"""Transport security rules, without I/O: https by default, no redirects, same-origin follow-ups."""

from __future__ import annotations

import functools
import ipaddress
import logging
import ssl
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import httpx

from pymedplum._obo import OBO_HEADER
from pymedplum.exceptions import InsecureTransportError, UnsafeRedirectError

__all__ = [
    "LOOPBACK_HOSTS",
    "Origin",
    "RedactedBytes",
    "RedactedStr",
    "check_base_url",
    "default_ssl_context",
    "origin_of",
    "require_same_origin",
    "check_storage_url",
]

logger = logging.getLogger("pymedplum")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


class RedactedStr(str):
    """A str whose `repr()` hides it. The client secret, access tokens and the
    Authorization header value are kept in these, so that a traceback printed with its
    frames' locals (`capture_locals=True`, Sentry, pytest's `--showlocals`), a debugger's
    variable view or a logged dict never shows them. It is still a str: `str()`,
    f-strings and comparisons see the value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"

    @classmethod
    def wrap(cls, value: str | None) -> RedactedStr | None:
        """`value` as a RedactedStr (None stays None)."""
        return None if value is None else cls(value)


class RedactedBytes(bytes):
    """Bytes whose `repr()` hides them (a token request's body, which holds the secret)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "b'<redacted>'"


if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    #: A private key object for `private_key=` (its repr holds no key material).
    PrivateKey: TypeAlias = RSAPrivateKey | EllipticCurvePrivateKey
else:
    PrivateKey = Any


def redact_key(value: Any) -> Any:
    """A `private_key=` argument with PEM text hidden from repr (key objects show none)."""
    if isinstance(value, str):
        return RedactedStr(value)
    if isinstance(value, bytes):
        return RedactedBytes(value)
    return value


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> Origin:
    """(scheme, host, port) with the default port filled in; host lowercased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    return scheme, host, port


def _origin_text(origin: Origin) -> str:
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}"


def check_base_url(base_url: str, *, allow_insecure_http: bool) -> str:
    """Validate `base_url` and return it with exactly one trailing slash.

    https is always accepted; http only for a loopback host or with
    `allow_insecure_http=True` (which logs a WARNING). Credentials in the URL are refused
    because URLs end up in logs.
    """
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise InsecureTransportError(
            f"base_url must be an absolute https:// URL, got scheme {scheme or 'none'!r}"
        )
    if parts.username or parts.password:
        raise ValueError("base_url must not contain credentials; pass client_id/client_secret")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not contain a query string or fragment")
    if scheme == "http" and not _is_loopback(parts.hostname.lower()):
        if not allow_insecure_http:
            raise InsecureTransportError(
                f"refusing plain http to {parts.hostname}: use https, a loopback host, "
                "or pass allow_insecure_http=True"
            )
        logger.warning(
            "pymedplum: allow_insecure_http=True: bearer tokens and PHI to %s travel unencrypted",
            parts.hostname,
        )
    return base_url.rstrip("/") + "/"


def require_same_origin(url: str, expected: Origin, what: str) -> None:
    """Raise UnsafeRedirectError unless `url` is on `expected`'s origin.

    The message names the foreign origin only: the path and query may carry PHI.
    """
    found = origin_of(url)
    if found != expected:
        raise UnsafeRedirectError(
            f"{what} points at {_origin_text(found)}, not the client's origin "
            f"{_origin_text(expected)}; refusing to send credentials there"
        )


def check_storage_url(url: str, *, allow_insecure_http: bool, what: str) -> None:
    """Refuse a URL the client may fetch WITHOUT credentials (a presigned storage URL, on
    any origin) unless it is https, or http to a loopback host or with
    `allow_insecure_http`; and unless it carries no user info (httpx would send it as
    Basic auth). The message names the scheme and host only: the URL's query is a
    credential.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        raise InsecureTransportError(f"{what} is not an absolute http(s) URL")
    if parts.username or parts.password:
        raise InsecureTransportError(f"{what} carries user credentials; refusing it")
    if scheme == "http" and not _is_loopback(host) and not allow_insecure_http:
        raise InsecureTransportError(
            f"{what} is plain http to {host}: refusing it (https, a loopback host, or "
            "allow_insecure_http=True)"
        )


def check_http_client(client: httpx.Client | httpx.AsyncClient, expected: type[object]) -> None:
    """Refuse a caller's httpx client of the wrong kind, one that follows redirects, or one
    that sends an on-behalf-of header of its own.

    A followed redirect would carry the Authorization header to wherever it points.
    """
    if not isinstance(client, expected):
        raise TypeError(
            f"http_client must be an {expected.__module__}.{expected.__qualname__}, "
            f"got {type(client).__name__}"
        )
    if client.follow_redirects:
        raise ValueError(
            "http_client follows redirects, which would forward the bearer token to other "
            "origins: construct it with follow_redirects=False"
        )
    if OBO_HEADER in client.headers:
        # Sent on every request, it would bypass on_behalf_of: the per-call override, the
        # per-call clear ("") and the project-admin calls that act as the client itself.
        raise ValueError(
            f"http_client sends a default {OBO_HEADER} header; pass on_behalf_of= to the "
            "client (or to a call, or use client.on_behalf_of(...)) instead"
        )


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The TLS settings (httpx's defaults) of every connection pool the SDK builds itself.

    Made once per process: building them loads the CA bundle, about 0.2 s, which a fresh
    client per task (the worker pattern) would otherwise pay every time. An SSLContext is
    safe to share between threads and event loops.
    """
    return httpx.create_ssl_context()
