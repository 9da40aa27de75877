"""Access-token bookkeeping, without I/O: when to log in, what to send, what a reply means.

A client with credentials keeps its tokens in a `TokenCache` (the process-wide one unless it
was given another) shared with every client logging in with the same credentials, and
refreshes through their common single flight (pymedplum._token_cache). The client shells
drive it:

    token = state.fresh(now)                      # usable as is? (else None)
    step = state.join(ticket, force, now)         # a token, or a flight to lead or wait on
    ... the leader sends state.token_request(), waits out a 429 (state.retry_delay),
        then state.finish(flight, status, headers, body, now) -> token (or raises) ...
    ... a waiter: flight.wait() / await flight.wait_async() -> token, or None: join again

`ticket` is the `generation` the caller saw: after a 401, a caller whose ticket is stale takes
the newer token instead of starting another refresh. After a failed refresh, refreshes
within the cooldown raise TokenRefreshCooldownError instead of calling the token endpoint.
A token given to this client (`access_token=`, `set_access_token`) is its own: it is used
until it is due, or until the server refuses it and the client can log in instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from pymedplum import _json, _retry
from pymedplum._grants import ClientSecret, Grant
from pymedplum._security import RedactedBytes, RedactedStr
from pymedplum._token_cache import (
    CachedToken,
    Flight,
    Refreshes,
    SharedTokenCache,
    TokenCache,
    TokenKey,
    refreshes_for,
    shared_token_cache,
)
from pymedplum.exceptions import (
    AuthenticationError,
    ErrorResponse,
    MedplumError,
    OperationOutcomeError,
    RateLimitError,
    ServerError,
    TokenRefreshCooldownError,
)

__all__ = ["TokenState", "Join", "REFRESH_MARGIN_SECONDS"]

#: Refresh this long before expiry (or a tenth of the lifetime, if that is shorter).
REFRESH_MARGIN_SECONDS = 60.0
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


def _margin(lifetime: float) -> float:
    return min(REFRESH_MARGIN_SECONDS, max(lifetime, 0.0) / 10)


def _lifetime_token(token: str, lifetime: float | None, now: float) -> CachedToken:
    if lifetime is None:
        return CachedToken(token)
    return CachedToken(token, now + lifetime, now + lifetime - _margin(lifetime))


@dataclass(frozen=True, slots=True)
class Join:
    """What a caller needing a token does next: use `token`, or lead or wait on `flight`."""

    token: str | None = None
    flight: Flight | None = None
    lead: bool = False


class TokenState:
    """One client's view of its bearer token: its own, or the shared one of its credentials."""

    __slots__ = (
        "token_url",
        "client_id",
        "_client_secret",
        "_grant",
        "_own",
        "_key",
        "_cache",
        "_refreshes",
        "cooldown",
        "shared",
    )

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str | None,
        client_secret: str | None,
        access_token: str | None,
        cooldown: float,
        cache: TokenCache | None = None,
        grant: Grant | None = None,
    ) -> None:
        if cooldown < 0:
            raise ValueError("failed_refresh_cooldown must be >= 0")
        self.token_url = token_url
        self.client_id = client_id
        # Secrets are kept redacted from repr(), so that no traceback's locals show them.
        self._client_secret = RedactedStr.wrap(client_secret)
        # How this client logs in (pymedplum._grants): a secret, a signed assertion, a
        # token exchange; None without credentials.
        if grant is None and client_id and client_secret:
            grant = ClientSecret(client_secret)
        self._grant = grant if client_id else None
        # A caller-supplied token carries no expiry unless one is given (set_access_token):
        # it is used until the server refuses it.
        self._own = CachedToken(RedactedStr(access_token)) if access_token else None
        # The cache key: (token URL, client id, a digest of the credential, never itself).
        self._key = (
            (token_url, client_id, self._grant.digest) if self._grant and client_id else None
        )
        self._cache: TokenCache = shared_token_cache() if cache is None else cache
        #: The cache, when it also shares one login at a time across processes.
        self.shared = cache if isinstance(cache, SharedTokenCache) else None
        # Without credentials there is nothing to share: a private, never-used flight record.
        self._refreshes = refreshes_for(self._key) if self._key else Refreshes()
        self.cooldown = cooldown

    @property
    def can_refresh(self) -> bool:
        """Whether client credentials are configured (else the token is used as given)."""
        return self._key is not None

    @property
    def client_secret(self) -> str | None:
        """The client secret (never shown in a repr)."""
        return self._client_secret

    @property
    def key(self) -> TokenKey | None:
        """The cache key of the credentials (None without credentials)."""
        return self._key

    def cached(self) -> CachedToken | None:
        """The shared token of the credentials, as the cache holds it."""
        return self._cache.get(self._key) if self._key is not None else None

    @property
    def generation(self) -> int:
        """How many refreshes of these credentials have finished in this process."""
        return self._refreshes.generation

    def _current(self) -> CachedToken | None:
        if self._own is not None or self._key is None:
            return self._own
        return self._cache.get(self._key)

    @property
    def access_token(self) -> str | None:
        """The token the next request would send, without refreshing (None before login)."""
        current = self._current()
        return current.access_token if current else None

    @property
    def expires_at(self) -> datetime | None:
        """When the current token expires (UTC), or None when unknown or there is none."""
        current = self._current()
        if current is None or current.expires_at is None:
            return None
        return datetime.fromtimestamp(current.expires_at, UTC)

    def set_access_token(self, token: str, expires_at: datetime | None, now: float) -> None:
        """Use `token` from now on; with `expires_at`, refresh (with credentials) before it."""
        if not isinstance(token, str) or not token:
            raise ValueError("set_access_token: the token must be a non-empty str")
        if "\r" in token or "\n" in token:
            raise ValueError("set_access_token: the token must not contain line breaks")
        token = RedactedStr(token)
        if expires_at is None:
            self._own = CachedToken(token)
            return
        if expires_at.tzinfo is None:
            raise ValueError("set_access_token: expires_at needs a time zone (timezone.utc)")
        expiry = expires_at.timestamp()
        self._own = CachedToken(token, expiry, expiry - _margin(expiry - now))

    def fresh(self, now: float) -> str | None:
        """The token if it can be used without refreshing first, else None."""
        own = self._own
        if own is not None:
            if self._key is None or not own.due(now):
                return own.access_token
            self._own = None  # due: the shared token of the credentials takes over
        if self._key is None:
            return None
        cached = self._cache.get(self._key)
        return cached.access_token if cached is not None and not cached.due(now) else None

    def join(self, ticket: int, force: bool, now: float, blocking: bool = False) -> Join:
        """A token to use, or the flight to lead or to wait on.

        `force` (after a 401): a token from a refresh newer than `ticket` is taken; else
        a new refresh is needed. `blocking`: the caller waits by blocking its thread (the
        sync client); if the refresh in flight is led on this very thread (an async client
        on the event loop this sync call is blocking), waiting would never end, so the
        caller leads a refresh of its own. Raises TokenRefreshCooldownError inside the
        cooldown.
        """
        if self._key is None:
            return Join(token=self._own.access_token if self._own else None)
        if force:
            self._own = None  # the server refused it: log in instead
        refreshes = self._refreshes
        with refreshes.lock:
            if refreshes.flight is not None:
                if blocking and refreshes.flight.leader_thread == threading.get_ident():
                    return Join(flight=Flight(), lead=True)  # not shared: no deadlock
                return Join(flight=refreshes.flight)
            cached = self._cache.get(self._key)
            if (
                cached is not None
                and not cached.due(now)
                and (not force or refreshes.generation != ticket)
            ):
                return Join(token=cached.access_token)
            if refreshes.failed_at is not None:
                remaining = refreshes.failed_at + self.cooldown - now
                if remaining > 0:
                    raise TokenRefreshCooldownError(
                        f"token refresh failed {now - refreshes.failed_at:.2f}s ago; "
                        f"not retrying for another {remaining:.2f}s",
                        retry_after=remaining,
                    )
            refused = None
            if force and cached is not None:
                refused = cached.access_token
                self._cache.discard(self._key, refused)  # refused by the server
            flight = refreshes.flight = Flight(refused)
        return Join(flight=flight, lead=True)

    def token_request(self) -> tuple[str, dict[str, str], bytes]:
        """URL, headers and form body of the login (the body redacted from repr: it holds the
        secret, the signed assertion or the subject token)."""
        assert self._grant is not None and self.client_id  # only a client with credentials
        form = self._grant.form(self.token_url, self.client_id)
        return self.token_url, dict(_FORM), RedactedBytes(urlencode(form).encode())

    @staticmethod
    def retry_delay(status: int, headers: Mapping[str, str], retries_done: int) -> float | None:
        """Seconds to wait before asking the token endpoint again, or None to stop.

        Only a 429 is waited out, as a FHIR 429 is: Medplum's `RateLimit: "requests";r=0;
        t=55` (or `Retry-After`), capped by MAX_RETRY_DELAY_SECONDS, at most MAX_RETRIES times.
        """
        if status != 429:
            return None
        return _retry.delay_after_status(
            status, headers, replay_safe=True, retries_done=retries_done
        )

    def finish(
        self, flight: Flight, status: int, headers: Mapping[str, str], body: bytes, now: float
    ) -> str:
        """Take the token endpoint's final reply: share the new token, or raise (shared)."""
        if status != 200:
            error: MedplumError = _token_error(status, headers, body)
            self.fail(flight, error, now)
            raise error
        body = RedactedBytes(body)  # it holds the tokens: no traceback's locals show them
        try:
            data: Any = _json.loads(body)
            raw = data.pop("access_token")
            # Not kept: a token exchange also answers with a refresh token (and an id token).
            data.pop("refresh_token", None)
            data.pop("id_token", None)
            if not isinstance(raw, str) or not raw:
                raise TypeError
            token = RedactedStr(raw)
            del raw  # only the redacted copy stays in this frame
        except (ValueError, KeyError, TypeError):
            error = AuthenticationError(
                "token endpoint answered 200 without an access_token", status_code=status
            )
            self.fail(flight, error, now)
            raise error from None
        try:
            lifetime: float | None = float(data.get("expires_in"))
        except (TypeError, ValueError):
            lifetime = None
        return self.adopt(flight, _lifetime_token(token, lifetime, now))

    def adopt(self, flight: Flight, cached: CachedToken) -> str:
        """End `flight` with `cached` (from the token endpoint, or from another process
        through a shared cache): share it with every client of the credentials."""
        assert self._key is not None  # only a client with credentials leads a refresh
        token = RedactedStr(cached.access_token)
        refreshes = self._refreshes
        with refreshes.lock:
            self._cache.put(self._key, CachedToken(token, cached.expires_at, cached.refresh_at))
            refreshes.failed_at = refreshes.last_error = None
            refreshes.generation += 1
            if refreshes.flight is flight:
                refreshes.flight = None
        flight.finish(token, None)
        return token

    def fail(self, flight: Flight, error: BaseException, now: float) -> None:
        """End a flight without a token: a MedplumError is shared and starts the cooldown;
        anything else (the leader was cancelled) lets the waiters try again."""
        if flight.done:
            return
        refreshes = self._refreshes
        shared = error if isinstance(error, MedplumError) else None
        with refreshes.lock:
            if shared is not None:
                refreshes.failed_at, refreshes.last_error = now, shared
                refreshes.generation += 1
            if refreshes.flight is flight:
                refreshes.flight = None
        flight.finish(None, shared)

    def __repr__(self) -> str:
        has_token = self.access_token is not None
        return f"<TokenState has_token={has_token} client_id={self.client_id!r}>"


def _token_error(status: int, headers: Mapping[str, str], body: bytes) -> OperationOutcomeError:
    """Map a failed token reply to an exception naming the OAuth error code only.

    The reply itself (an OAuth error or an OperationOutcome, never a credential) stays on
    the exception as `response` / `response_data` / `outcome`.
    """
    code = None
    outcome = None
    try:
        data = _json.loads(body)
        if isinstance(data, dict):
            code = data.get("error") if isinstance(data.get("error"), str) else None
            outcome = data if data.get("resourceType") == "OperationOutcome" else None
    except ValueError:
        pass
    described = f"token request failed: HTTP {status}" + (f" ({code})" if code else "")
    kw: dict[str, Any] = {
        "status_code": status,
        "outcome": outcome,
        "response": ErrorResponse(status, headers, body),
        "method": "POST",
        "path_template": "/oauth2/token",
    }
    if status == 429:
        return RateLimitError(
            described, retry_after=_retry.server_delay(headers, time.time()), **kw
        )
    if status >= 500:
        return ServerError(described, **kw)
    if 300 <= status < 400:
        return AuthenticationError(
            f"{described}: the token endpoint redirected, and the client never follows a "
            "redirect on login (it would send the credentials on): check base_url",
            **kw,
        )
    return AuthenticationError(described, **kw)
