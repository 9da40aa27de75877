"""Access tokens shared by the clients of one process, and one refresh at a time (no I/O).

Clients that log in at the same token URL with the same client id and secret hold the same
identity, so they share tokens: one `TokenCache` entry, keyed by (token URL, client id,
SHA-256 of the secret), and one refresh in flight at a time. A worker that builds a fresh
client per task therefore logs in once, not once per task (Medplum allows 160 requests a
minute per IP on /oauth2/token).

The single flight works for sync clients on any thread and async clients on any event
loop at once: a `Flight` is led by the first caller that finds a refresh due; every other
caller waits on it (a thread on a `threading.Event`, a task on a future of its own loop) and
gets the very same token, or the very same exception.

`TokenCache` is the seam for a store shared across processes: the default keeps tokens in a
dict. Expiry times are Unix times, so they mean the same thing in any process. A cache that is
also a `SharedTokenCache` (`pymedplum.redis.RedisTokenCache`) extends the single flight across
processes: the process leading a refresh first asks the shared store, through the steps of
`acquire_steps`, for a token another process logged in for, or for the store's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "LOCK",
    "READ",
    "CachedToken",
    "Flight",
    "MemoryTokenCache",
    "Refreshes",
    "SharedTokenCache",
    "TokenCache",
    "TokenKey",
    "acquire_steps",
    "decode_token",
    "encode_token",
    "store_milliseconds",
    "forget_shared_tokens",
    "refreshes_for",
    "shared_token_cache",
    "token_key",
]

#: (token URL, client id, SHA-256 hex digest of the client secret): the secret itself is
#: never a key.
TokenKey = tuple[str, str, str]


def token_key(token_url: str, client_id: str, client_secret: str) -> TokenKey:
    """The cache key of a client's credentials."""
    digest = hashlib.sha256(client_secret.encode("utf-8")).hexdigest()
    return (token_url, client_id, digest)


@dataclass(frozen=True, slots=True)
class CachedToken:
    """A bearer token and when to stop using it.

    Attributes:
        access_token: the token (left out of repr).
        expires_at: Unix time the token expires, or None when unknown.
        refresh_at: Unix time from which a refresh is due (a margin before `expires_at`),
            or None: use the token until the server rejects it.
    """

    access_token: str = field(repr=False)
    expires_at: float | None = None
    refresh_at: float | None = None

    def due(self, now: float) -> bool:
        """Whether a refresh is due at Unix time `now`."""
        return self.refresh_at is not None and now >= self.refresh_at


@runtime_checkable
class TokenCache(Protocol):
    """Where clients keep their tokens. Implementations must be safe across threads."""

    def get(self, key: TokenKey) -> CachedToken | None:
        """The token stored under `key`, or None."""

    def put(self, key: TokenKey, token: CachedToken) -> None:
        """Store `token` under `key`, replacing what was there."""

    def discard(self, key: TokenKey, access_token: str) -> None:
        """Forget the token under `key` if it is still `access_token` (the server refused it)."""


class MemoryTokenCache:
    """The default TokenCache: a dict in this process, guarded by a lock."""

    __slots__ = ("_tokens", "_lock")

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, CachedToken] = {}
        self._lock = threading.Lock()

    def get(self, key: TokenKey) -> CachedToken | None:
        """The token stored under `key`, or None."""
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: TokenKey, token: CachedToken) -> None:
        """Store `token` under `key`."""
        with self._lock:
            self._tokens[key] = token

    def discard(self, key: TokenKey, access_token: str) -> None:
        """Forget the token under `key` if it is still `access_token`."""
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and current.access_token == access_token:
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._tokens.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def __repr__(self) -> str:
        return f"<MemoryTokenCache entries={len(self)}>"


@runtime_checkable
class SharedTokenCache(TokenCache, Protocol):
    """A TokenCache shared by processes, with one login at a time across all of them.

    `get`/`put`/`discard` keep this process's copy (no I/O: they run on every request). The
    process leading a refresh calls `acquire` first: it returns a token another process
    logged in for, or a lease on the store's lock (this process logs in, then `publish`es
    the token, which releases the lock), or neither when the store cannot be reached (this
    process logs in for itself). The lock expires by itself, so a process that dies holding
    it delays the others by at most its lifetime. Each step has a variant for the async
    client that does not block its event loop.
    """

    def acquire(self, key: TokenKey, refused: str | None) -> tuple[CachedToken | None, Any]:
        """`(token, None)`, `(None, lease)` or `(None, None)`: see the class."""

    async def acquire_async(
        self, key: TokenKey, refused: str | None
    ) -> tuple[CachedToken | None, Any]:
        """`acquire`, without blocking the event loop."""

    def extend(self, lease: Any, seconds: float) -> None:
        """Keep the lock `seconds` longer (the leader waits out a 429 meanwhile)."""

    async def extend_async(self, lease: Any, seconds: float) -> None:
        """`extend`, without blocking the event loop."""

    def publish(self, lease: Any, token: CachedToken, now: float) -> None:
        """Store `token` for every process until it expires, and release the lock."""

    async def publish_async(self, lease: Any, token: CachedToken, now: float) -> None:
        """`publish`, without blocking the event loop."""

    def release(self, lease: Any) -> None:
        """Release the lock without a token (the login failed); harmless once released."""

    async def release_async(self, lease: Any) -> None:
        """`release`, without blocking the event loop."""


def encode_token(token: CachedToken) -> bytes:
    """A token as stored in a shared store: the token and its Unix times, nothing else."""
    return json.dumps(
        {
            "access_token": str(token.access_token),
            "expires_at": token.expires_at,
            "refresh_at": token.refresh_at,
        },
        separators=(",", ":"),
    ).encode()


def decode_token(raw: bytes | str | None) -> CachedToken | None:
    """A stored token, or None when there is none or it cannot be read."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        token = data["access_token"]
        expires_at, refresh_at = data.get("expires_at"), data.get("refresh_at")
        if not isinstance(token, str) or not token:
            return None
        for value in (expires_at, refresh_at):
            if value is not None and not isinstance(value, int | float):
                return None
    except (ValueError, TypeError, KeyError):
        return None
    return CachedToken(token, expires_at, refresh_at)


#: How long a shared store keeps a token whose lifetime is unknown.
UNKNOWN_LIFETIME_SECONDS = 3600.0


def store_milliseconds(token: CachedToken, now: float) -> int:
    """How long a shared store keeps `token`: until it expires (at least 1 ms)."""
    lifetime = UNKNOWN_LIFETIME_SECONDS if token.expires_at is None else token.expires_at - now
    return max(1, int(lifetime * 1000))


#: The steps `acquire_steps` asks its driver to take (anything else it yields is a number of
#: seconds to sleep).
READ = "read"  # send back the stored token's raw value (or None)
LOCK = "lock"  # send back whether the store's lock was taken

#: Pauses between looks at the store while another process logs in.
_POLL_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)


def acquire_steps(
    refused: str | None, clock: Callable[[], float], patience: float
) -> Generator[str | float, Any, tuple[CachedToken | None, bool]]:
    """The decisions of `SharedTokenCache.acquire`, for a sync or an async driver.

    Look for a usable token (not the refused one, not due); else take the lock; else wait a
    little and look again, while another process logs in. Returns `(token, False)`,
    `(None, True)` when the lock was taken, or `(None, False)` after `patience` seconds
    (the caller then logs in by itself).
    """
    started = clock()
    polls = 0
    while True:
        token = decode_token((yield READ))
        if token is not None and token.access_token != refused and not token.due(clock()):
            return token, False
        if (yield LOCK):
            return None, True
        if clock() - started >= patience:
            return None, False
        yield _POLL_SECONDS[min(polls, len(_POLL_SECONDS) - 1)]
        polls += 1


class Flight:
    """One refresh in progress: its leader sends the token request, the others wait.

    The outcome is a token, an exception (every waiter raises the same object), or neither
    when the leader gave up (it was cancelled): waiters then try again.
    """

    __slots__ = ("_lock", "_done", "_waiters", "token", "error", "leader_thread", "refused")

    def __init__(self, refused: str | None = None) -> None:
        #: The thread the leader runs on: a blocking wait there would never end.
        self.leader_thread = threading.get_ident()
        #: The token the server refused (401) that made this refresh necessary, if any: a
        #: shared store holding that very token has nothing better to offer.
        self.refused = refused
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.token: str | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether the leader has finished (or given up)."""
        return self._done.is_set()

    def finish(self, token: str | None, error: BaseException | None) -> None:
        """Record the outcome once and wake every waiter, on every thread and loop."""
        with self._lock:
            if self._done.is_set():
                return
            self.token, self.error = token, error
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def outcome(self) -> str | None:
        """The token, None when the leader gave up; raises the shared exception."""
        if self.error is not None:
            raise self.error
        return self.token

    def wait(self) -> str | None:
        """Block this thread until the flight is over; its outcome."""
        self._done.wait()
        return self.outcome()

    async def wait_async(self) -> str | None:
        """Wait in this task until the flight is over, without blocking the loop."""
        future: asyncio.Future[None] | None = None
        with self._lock:
            if not self._done.is_set():
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                self._waiters.append((loop, future))
        if future is not None:
            await future
        return self.outcome()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Refreshes:
    """The single flight of one token key, and its last failure (for the cooldown).

    `generation` counts finished refreshes: a caller that remembers it can tell whether a
    refresh ended since it last looked.
    """

    __slots__ = ("lock", "flight", "generation", "failed_at", "last_error")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flight: Flight | None = None
        self.generation = 0
        self.failed_at: float | None = None
        self.last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Refreshes generation={self.generation} in_flight={self.flight is not None}>"


_SHARED_CACHE = MemoryTokenCache()
_REFRESHES: dict[TokenKey, Refreshes] = {}
_REFRESHES_LOCK = threading.Lock()


def shared_token_cache() -> MemoryTokenCache:
    """The process-wide cache clients use unless given another `token_cache`."""
    return _SHARED_CACHE


def refreshes_for(key: TokenKey) -> Refreshes:
    """The process-wide single flight of `key`."""
    with _REFRESHES_LOCK:
        refreshes = _REFRESHES.get(key)
        if refreshes is None:
            refreshes = _REFRESHES[key] = Refreshes()
        return refreshes


def forget_shared_tokens() -> None:
    """Empty the shared cache and forget every refresh record (tests start from nothing)."""
    _SHARED_CACHE.clear()
    with _REFRESHES_LOCK:
        _REFRESHES.clear()
