"""Access-token bookkeeping, without I/O: when to log in, what to send, what a reply means.

The client shells drive it under one lock (a threading.Lock in the sync client, an
asyncio.Lock in the async one):

    ticket = state.ticket                      # before waiting for the lock
    with lock:
        token = state.settle(ticket, force, now)   # token, or None: "you refresh"
        if token is None:
            ... send state.token_request() ...
            token = state.accept(status, headers, body, now)  # or state.reject(exc, now)

`ticket` counts refresh attempts. A caller that finds the count moved while it waited
takes that refresh's result, success or the very same exception, instead of starting
another: one refresh serves every concurrent caller. After a failure, refreshes within
the cooldown raise TokenRefreshCooldownError instead of calling the token endpoint.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from pymedplum import _json
from pymedplum._security import RedactedBytes, RedactedStr
from pymedplum.exceptions import (
    AuthenticationError,
    MedplumError,
    OperationOutcomeError,
    RateLimitError,
    ServerError,
    TokenRefreshCooldownError,
)

__all__ = ["TokenState", "REFRESH_MARGIN_SECONDS"]

#: Refresh this long before expiry (or a tenth of the lifetime, if that is shorter).
REFRESH_MARGIN_SECONDS = 60.0
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


def _jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (Unix time), read without verifying: only a refresh hint."""
    try:
        payload = token.split(".")[1]
        claims = _json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if exp is not None else None
    except (IndexError, ValueError, TypeError, AttributeError):
        return None


class TokenState:
    """The current bearer token, its expiry, and the refresh bookkeeping."""

    __slots__ = (
        "token_url",
        "_client_id",
        "_client_secret",
        "_token",
        "_refresh_at",
        "ticket",
        "_last_error",
        "_failed_at",
        "cooldown",
    )

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str | None,
        client_secret: str | None,
        access_token: str | None,
        cooldown: float,
    ) -> None:
        if cooldown < 0:
            raise ValueError("failed_refresh_cooldown must be >= 0")
        self.token_url = token_url
        self._client_id = client_id
        # Secrets are kept redacted from repr(), so that no traceback's locals show them.
        self._client_secret = RedactedStr.wrap(client_secret)
        self._token = RedactedStr.wrap(access_token)
        self._refresh_at: float | None = None
        if access_token:
            expiry = _jwt_expiry(access_token)
            if expiry is not None:
                lifetime = expiry - time.time()
                self._refresh_at = time.monotonic() + lifetime - self._margin(lifetime)
        #: Number of refresh attempts so far (success or failure).
        self.ticket = 0
        self._last_error: MedplumError | None = None
        self._failed_at: float | None = None
        self.cooldown = cooldown

    @property
    def can_refresh(self) -> bool:
        """Whether client credentials are configured (else the token is used as given)."""
        return bool(self._client_id and self._client_secret)

    @staticmethod
    def _margin(lifetime: float) -> float:
        return min(REFRESH_MARGIN_SECONDS, max(lifetime, 0.0) / 10)

    def fresh(self, now: float) -> str | None:
        """The token if it can be used without refreshing first, else None."""
        token = self._token
        if token is None and self.can_refresh:
            return None
        if self._refresh_at is not None and now >= self._refresh_at and self.can_refresh:
            return None
        return token

    def settle(self, ticket: int, force: bool, now: float) -> str | None:
        """Under the refresh lock: the token to use, or None when the caller must refresh.

        Raises the shared exception when the refresh this caller waited on failed, and
        TokenRefreshCooldownError inside the cooldown window.
        """
        if self.ticket != ticket:  # someone refreshed while we waited: share the result
            if self._last_error is not None:
                raise self._last_error
            if self._token is not None:
                return self._token
        if not force:
            token = self.fresh(now)
            if token is not None or not self.can_refresh:
                return token
        if not self.can_refresh:
            return None
        if self._failed_at is not None:
            remaining = self._failed_at + self.cooldown - now
            if remaining > 0:
                raise TokenRefreshCooldownError(
                    f"token refresh failed {now - self._failed_at:.2f}s ago; "
                    f"not retrying for another {remaining:.2f}s",
                    retry_after=remaining,
                )
        return None

    def token_request(self) -> tuple[str, dict[str, str], bytes]:
        """URL, headers and form body of the client-credentials login (the body redacted
        from repr: it holds the secret)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id or "",
            "client_secret": str(self._client_secret or ""),
        }
        return self.token_url, dict(_FORM), RedactedBytes(urlencode(form).encode())

    def accept(self, status: int, headers: Mapping[str, str], body: bytes, now: float) -> str:
        """Take the token endpoint's reply: the new token, or raise (after `reject`)."""
        if status != 200:
            error = _token_error(status, headers, body)
            self.reject(error, now)
            raise error
        try:
            data: Any = _json.loads(body)
            raw = data.pop("access_token")
            if not isinstance(raw, str) or not raw:
                raise TypeError
            token = RedactedStr(raw)
        except (ValueError, KeyError, TypeError):
            error = AuthenticationError(
                "token endpoint answered 200 without an access_token", status_code=status
            )
            self.reject(error, now)
            raise error from None
        lifetime: float | None
        try:
            lifetime = float(data.get("expires_in"))
        except (TypeError, ValueError):
            expiry = _jwt_expiry(token)
            lifetime = None if expiry is None else expiry - time.time()
        self._token = token
        self._refresh_at = None if lifetime is None else now + lifetime - self._margin(lifetime)
        self._last_error = None
        self._failed_at = None
        self.ticket += 1
        return token

    def reject(self, error: MedplumError, now: float) -> None:
        """Record a failed refresh: waiters get `error`, later callers the cooldown."""
        self._token = None
        self._last_error = error
        self._failed_at = now
        self.ticket += 1

    def __repr__(self) -> str:
        return f"<TokenState has_token={self._token is not None} ticket={self.ticket}>"


def _token_error(status: int, headers: Mapping[str, str], body: bytes) -> OperationOutcomeError:
    """Map a failed token reply to an exception naming the OAuth error code only."""
    code = None
    try:
        data = _json.loads(body)
        if isinstance(data, dict):
            code = data.get("error")
    except ValueError:
        pass
    described = f"token request failed: HTTP {status}" + (f" ({code})" if code else "")
    if status == 429:
        from pymedplum._retry import server_delay

        return RateLimitError(described, status_code=status, retry_after=server_delay(headers))
    if status >= 500:
        return ServerError(described, status_code=status)
    return AuthenticationError(described, status_code=status)
