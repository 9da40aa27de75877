"""Tokens and a RateLimit budget shared through Redis by every worker process (`pymedplum[redis]`).

    from pymedplum.redis import RedisRateLimitBudget, RedisTokenCache

    tokens = RedisTokenCache("redis://localhost:6379/0")
    budget = RedisRateLimitBudget("redis://localhost:6379/0")
    client = AsyncMedplumClient(..., token_cache=tokens, rate_limit_budget=budget)

With the same credentials, N processes log in once per token lifetime: the process that needs
a token first takes a lock in Redis that expires by itself (`SET NX PX`), logs in and stores
the token until it expires; the others wait for it. When an answer says Medplum's quota is
spent, the reset time goes into Redis and every process waits for it before sending; each
process hears of it through a Redis channel, so checking the budget costs no round trip.

Each class takes a URL (the sync client uses `redis.Redis`, the async client the same in a
worker thread), a `redis.Redis`, or a `redis.asyncio.Redis` (async clients only, on the event
loop it belongs to). When Redis cannot be reached, every process goes on by itself (its own
login, its own budget), with one WARNING on the `pymedplum` logger: a call never fails
because of Redis. See docs/redis.md for what is stored and for how long.

The decisions live in no-I/O modules (pymedplum._token_cache, pymedplum._budget); this
module only moves data to and from Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

try:
    import redis
    import redis.asyncio
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("pymedplum.redis needs redis-py: pip install 'pymedplum[redis]'") from exc

import contextlib

from pymedplum import _retry
from pymedplum._budget import SpentView
from pymedplum._token_cache import (
    LOCK,
    READ,
    CachedToken,
    MemoryTokenCache,
    TokenKey,
    acquire_steps,
    encode_token,
    store_milliseconds,
)

__all__ = ["RedisRateLimitBudget", "RedisTokenCache"]

logger = logging.getLogger("pymedplum")
T = TypeVar("T")

#: After Redis failed, this process leaves it alone for this long (no I/O, no new warning).
OUTAGE_SECONDS = 1.0
_FAILURES = (redis.RedisError, OSError)

# Store the token and release the lock, if it is still ours (one round trip, atomic).
_PUBLISH = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Spent for ARGV[1] ms, unless a longer wait is recorded already; tell every process.
_RECORD = """
if tonumber(ARGV[1]) > redis.call('PTTL', KEYS[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. ARGV[1])
  return 1
end
return 0
"""


class _Connection:
    """The Redis client(s) of one shared object, and what it does while Redis is down."""

    def __init__(self, target: object, timeout: float, what: str) -> None:
        self.url: str | None = None
        self.sync: redis.Redis | None = None
        self.aio: redis.asyncio.Redis | None = None
        if isinstance(target, str):
            self.url = target
            self.sync = redis.Redis.from_url(
                target, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        elif isinstance(target, redis.asyncio.Redis):
            self.aio = target
        elif isinstance(target, redis.Redis):
            self.sync = target
        else:
            raise TypeError(
                f"{what}: give a Redis URL, a redis.Redis or a redis.asyncio.Redis, "
                f"not {type(target).__name__}"
            )
        self.timeout = timeout
        self.what = what
        self._down_until = 0.0
        self._warned = False

    def client(self) -> redis.Redis:
        """The sync client (a sync MedplumClient cannot use a redis.asyncio.Redis)."""
        if self.sync is None:
            raise TypeError(
                f"{self.what}: a MedplumClient needs a Redis URL or a redis.Redis; "
                "a redis.asyncio.Redis serves AsyncMedplumClient only"
            )
        return self.sync

    async def call(
        self, sync_op: Callable[[redis.Redis], T], async_op: Callable[[Any], Awaitable[T]]
    ) -> T:
        """Run one Redis operation without blocking the event loop."""
        if self.aio is not None:
            return await async_op(self.aio)
        return await asyncio.to_thread(sync_op, self.client())

    def usable(self) -> bool:
        """Whether to talk to Redis now (not within OUTAGE_SECONDS of a failure)."""
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + OUTAGE_SECONDS
        if not self._warned:
            self._warned = True
            logger.warning(
                "%s: Redis cannot be reached (%s); this process goes on by itself until it can",
                self.what,
                type(exc).__name__,
            )

    def worked(self) -> None:
        if self._warned:
            self._warned = False
            logger.info("%s: Redis can be reached again", self.what)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------ tokens


@dataclass(frozen=True, slots=True)
class _Lease:
    """This process holds the login lock of one token key."""

    token_key: str
    lock_key: str
    holder: str


class RedisTokenCache:
    """A `pymedplum.SharedTokenCache` in Redis: one login per token lifetime for all processes.

    Example:
        tokens = RedisTokenCache("redis://localhost:6379/0")
        client = MedplumClient(..., token_cache=tokens)

    Args:
        redis_client: a Redis URL, a `redis.Redis`, or a `redis.asyncio.Redis` (async
            clients only).
        prefix: the start of every key (`pymedplum:token:<digest>`, `...:lock`).
        lock_seconds: how long the login lock lives unless its holder releases or extends
            it: a process that dies while logging in delays the others this long at most.
        patience: how long a process waits for another one's login before logging in by
            itself (default: enough for a login that waits out three 429s).
        timeout: seconds for each Redis operation (URL only).

    Redis holds each token (the bearer token itself: protect Redis as you would the token)
    with its expiry, until it expires; the key is a SHA-256 digest of the token URL, the
    client id and the digest of the secret. The client secret is never stored.
    """

    def __init__(
        self,
        redis_client: str | Any,
        *,
        prefix: str = "pymedplum:",
        lock_seconds: float = 15.0,
        patience: float | None = None,
        timeout: float = 1.0,
    ) -> None:
        if not lock_seconds > 0:
            raise ValueError("lock_seconds must be > 0")
        self._redis = _Connection(redis_client, timeout, "RedisTokenCache")
        self._local = MemoryTokenCache()
        self.prefix = prefix
        self.lock_seconds = lock_seconds
        default = lock_seconds + _retry.MAX_RETRIES * _retry.MAX_RETRY_DELAY_SECONDS
        self.patience = default if patience is None else patience

    # -- this process's copy (every request reads it: no I/O)

    def get(self, key: TokenKey) -> CachedToken | None:
        """This process's copy of the token under `key`."""
        return self._local.get(key)

    def put(self, key: TokenKey, token: CachedToken) -> None:
        """Keep `token` in this process (Redis gets it through `publish`)."""
        self._local.put(key, token)

    def discard(self, key: TokenKey, access_token: str) -> None:
        """Forget this process's copy if it is `access_token` (refused by the server)."""
        self._local.discard(key, access_token)

    # -- one login at a time across processes

    def _keys(self, key: TokenKey) -> tuple[str, str]:
        digest = hashlib.sha256("\n".join(key).encode("utf-8")).hexdigest()
        name = f"{self.prefix}token:{digest}"
        return name, name + ":lock"

    def _lock_ms(self, seconds: float) -> int:
        return max(1, math.ceil(seconds * 1000))

    def _acquired(
        self, done: tuple[CachedToken | None, bool], lease: _Lease
    ) -> tuple[CachedToken | None, _Lease | None]:
        token, locked = done
        if token is not None:
            return token, None
        if locked:
            return None, lease
        logger.warning(
            "RedisTokenCache: another process has held the login lock for %.0f s; "
            "logging in without it",
            self.patience,
        )
        return None, None

    def acquire(self, key: TokenKey, refused: str | None) -> tuple[CachedToken | None, Any]:
        """A token another process logged in for, or the login lock (see SharedTokenCache)."""
        connection = self._redis
        if not connection.usable():
            return None, None
        client = connection.client()
        token_key, lock_key = self._keys(key)
        lease = _Lease(token_key, lock_key, secrets.token_hex(16))
        steps = acquire_steps(refused, time.time, self.patience)
        try:
            step = next(steps)
            while True:
                reply: Any = None
                if step == READ:
                    reply = client.get(token_key)
                elif step == LOCK:
                    reply = bool(
                        client.set(
                            lock_key, lease.holder, nx=True, px=self._lock_ms(self.lock_seconds)
                        )
                    )
                else:
                    time.sleep(float(step))
                step = steps.send(reply)
        except StopIteration as stop:
            connection.worked()
            return self._acquired(stop.value, lease)
        except _FAILURES as exc:
            connection.failed(exc)
            return None, None

    async def acquire_async(
        self, key: TokenKey, refused: str | None
    ) -> tuple[CachedToken | None, Any]:
        """`acquire`, without blocking the event loop."""
        connection = self._redis
        if not connection.usable():
            return None, None
        token_key, lock_key = self._keys(key)
        lease = _Lease(token_key, lock_key, secrets.token_hex(16))
        lock_ms = self._lock_ms(self.lock_seconds)
        steps = acquire_steps(refused, time.time, self.patience)
        try:
            step = next(steps)
            while True:
                reply: Any = None
                if step == READ:
                    reply = await connection.call(
                        lambda c: c.get(token_key), lambda a: a.get(token_key)
                    )
                elif step == LOCK:
                    reply = bool(
                        await connection.call(
                            lambda c: c.set(lock_key, lease.holder, nx=True, px=lock_ms),
                            lambda a: a.set(lock_key, lease.holder, nx=True, px=lock_ms),
                        )
                    )
                else:
                    await asyncio.sleep(float(step))
                step = steps.send(reply)
        except StopIteration as stop:
            connection.worked()
            return self._acquired(stop.value, lease)
        except _FAILURES as exc:
            connection.failed(exc)
            return None, None

    def extend(self, lease: Any, seconds: float) -> None:
        """Keep the lock `seconds` (plus `lock_seconds`) longer."""
        ms = self._lock_ms(seconds + self.lock_seconds)
        self._script(_EXTEND, [lease.lock_key], [lease.holder, ms])

    async def extend_async(self, lease: Any, seconds: float) -> None:
        """`extend`, without blocking the event loop."""
        ms = self._lock_ms(seconds + self.lock_seconds)
        await self._script_async(_EXTEND, [lease.lock_key], [lease.holder, ms])

    def publish(self, lease: Any, token: CachedToken, now: float) -> None:
        """Store `token` until it expires and release the lock."""
        args = [encode_token(token), store_milliseconds(token, now), lease.holder]
        self._script(_PUBLISH, [lease.token_key, lease.lock_key], args)

    async def publish_async(self, lease: Any, token: CachedToken, now: float) -> None:
        """`publish`, without blocking the event loop."""
        args = [encode_token(token), store_milliseconds(token, now), lease.holder]
        await self._script_async(_PUBLISH, [lease.token_key, lease.lock_key], args)

    def release(self, lease: Any) -> None:
        """Release the lock if it is still ours."""
        self._script(_RELEASE, [lease.lock_key], [lease.holder])

    async def release_async(self, lease: Any) -> None:
        """`release`, without blocking the event loop."""
        await self._script_async(_RELEASE, [lease.lock_key], [lease.holder])

    def _script(self, script: str, keys: list[str], args: list[Any]) -> None:
        try:
            self._redis.client().eval(script, len(keys), *keys, *args)
        except _FAILURES as exc:
            self._redis.failed(exc)

    async def _script_async(self, script: str, keys: list[str], args: list[Any]) -> None:
        try:
            await self._redis.call(
                lambda c: c.eval(script, len(keys), *keys, *args),
                lambda a: a.eval(script, len(keys), *keys, *args),
            )
        except _FAILURES as exc:
            self._redis.failed(exc)

    def __repr__(self) -> str:
        return f"<RedisTokenCache prefix={self.prefix!r}>"


# ------------------------------------------------------------------ the RateLimit budget


class RedisRateLimitBudget:
    """A `pymedplum.RateLimitBudget` in Redis: when one process learns that Medplum's quota
    is spent, every process waits for the reset instead of collecting its own 429.

    Example:
        budget = RedisRateLimitBudget("redis://localhost:6379/0")
        client = AsyncMedplumClient(..., rate_limit_budget=budget)

    Args:
        redis_client: a Redis URL, a `redis.Redis`, or a `redis.asyncio.Redis` (async
            clients only).
        prefix: the start of every key (`pymedplum:spent:<scope>`) and of the channel
            (`pymedplum:ratelimit`).
        reserve: units Medplum may still report (`r`) for the quota to count as spent
            already (see RateLimitBudget); 0 waits only once nothing is left.
        listen: hear of spent quotas through the channel, in a daemon thread per process
            (a URL or a redis.Redis only). Then checking the budget costs no round trip at
            all; without it, each scope is read from Redis at most every `max_age` seconds.
        max_age: see `listen`.
        timeout: seconds for each Redis operation (URL only).

    Redis holds one key per spent scope, with no value worth reading: it exists until the
    quota resets (`PX`), so the reset time means the same on every machine.
    """

    def __init__(
        self,
        redis_client: str | Any,
        *,
        prefix: str = "pymedplum:",
        reserve: int = 0,
        listen: bool = True,
        max_age: float = 0.1,
        timeout: float = 1.0,
    ) -> None:
        if isinstance(reserve, bool) or not isinstance(reserve, int) or reserve < 0:
            raise ValueError("reserve must be an int >= 0")
        self._redis = _Connection(redis_client, timeout, "RedisRateLimitBudget")
        self.reserve = reserve
        self.prefix = prefix
        self.channel = prefix + "ratelimit"
        self._view = SpentView(max_age)
        self._listen = listen and self._redis.sync is not None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(this))

    def _key(self, scope: str) -> str:
        return f"{self.prefix}spent:{scope}"

    # -- the check before each attempt (no I/O while the view is current)

    def spent_until(self, scope: str, now: float) -> float | None:
        """Until when the quota of `scope` is spent, or None."""
        if self._listen and self._listener is None:
            self._start_listener()
        until, current = self._view.known(scope, now)
        if current or not self._redis.usable():
            return until
        self._view.read(scope, None, now)  # meanwhile, others do not ask again
        key = self._key(scope)
        try:
            left = self._redis.client().pttl(key)
        except _FAILURES as exc:
            self._redis.failed(exc)
            return None
        self._redis.worked()
        return self._read(scope, left, now)

    async def spent_until_async(self, scope: str, now: float) -> float | None:
        """`spent_until`, without blocking the event loop."""
        if self._listen and self._listener is None:
            self._start_listener()
        until, current = self._view.known(scope, now)
        if current or not self._redis.usable():
            return until
        self._view.read(scope, None, now)
        key = self._key(scope)
        try:
            left = await self._redis.call(lambda c: c.pttl(key), lambda a: a.pttl(key))
        except _FAILURES as exc:
            self._redis.failed(exc)
            return None
        self._redis.worked()
        return self._read(scope, left, now)

    def _read(self, scope: str, left_ms: Any, now: float) -> float | None:
        left = int(left_ms)
        until = now + left / 1000 if left > 0 else None  # -2: no key, nothing is spent
        self._view.read(scope, until, now)
        return until

    # -- an answer said the quota is spent

    def record_spent(self, scope: str, until: float, now: float) -> None:
        """The quota of `scope` is spent until `until`: here at once, everywhere through Redis."""
        self._view.note(scope, until)
        ms = math.ceil((until - now) * 1000)
        if ms <= 0 or not self._redis.usable():
            return
        try:
            self._redis.client().eval(_RECORD, 1, self._key(scope), ms, self.channel, scope)
        except _FAILURES as exc:
            self._redis.failed(exc)

    async def record_spent_async(self, scope: str, until: float, now: float) -> None:
        """`record_spent`, without blocking the event loop."""
        self._view.note(scope, until)
        ms = math.ceil((until - now) * 1000)
        if ms <= 0 or not self._redis.usable():
            return
        key, channel = self._key(scope), self.channel
        try:
            await self._redis.call(
                lambda c: c.eval(_RECORD, 1, key, ms, channel, scope),
                lambda a: a.eval(_RECORD, 1, key, ms, channel, scope),
            )
        except _FAILURES as exc:
            self._redis.failed(exc)

    # -- hearing of spent quotas

    @property
    def listening(self) -> bool:
        """Whether this process hears of spent quotas as they are recorded."""
        return self._view.listening

    def _start_listener(self) -> None:
        with self._start_lock:
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._run_listener, name="pymedplum-ratelimit", daemon=True
                )
                self._listener.start()

    def _listener_client(self) -> redis.Redis:
        if self._redis.url is not None:
            # No read timeout: the listener waits for messages as long as there are none.
            return redis.Redis.from_url(self._redis.url, socket_connect_timeout=self._redis.timeout)
        return self._redis.client()

    def _run_listener(self) -> None:
        stop = self._stop
        view = self._view
        pause = 0.1
        client = self._listener_client()
        while not stop.is_set():
            pubsub = client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self.channel)
                confirmed = pubsub.get_message(timeout=self._redis.timeout)
                if not confirmed or confirmed.get("type") != "subscribe":
                    raise redis.ConnectionError("no confirmation of the subscription")
                view.forget_reads()  # what was recorded before now: read once per scope
                view.listening = True
                self._redis.worked()
                pause = 0.1
                while not stop.is_set():
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._announced(message["data"])
            except (*_FAILURES, ValueError) as exc:
                view.listening = False
                if stop.is_set():
                    break  # closed: whatever failed no longer matters
                self._redis.failed(exc)
                stop.wait(pause)
                pause = min(pause * 2, 5.0)
            finally:
                view.listening = False
                with contextlib.suppress(*_FAILURES):
                    pubsub.close()

    def _announced(self, data: Any) -> None:
        scope, _, ms = _text(data).rpartition(" ")
        self._view.note(scope, time.time() + int(ms) / 1000)

    def _forked(self) -> None:
        # A forked child has its parent's view but not its listener thread.
        self._view.reset()
        self._listener = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()

    def close(self) -> None:
        """Stop hearing of spent quotas (the daemon thread ends within a second)."""
        self._stop.set()

    def __repr__(self) -> str:
        return (
            f"<RedisRateLimitBudget prefix={self.prefix!r} reserve={self.reserve} "
            f"listening={self.listening}>"
        )


def _after_fork(ref: weakref.ref[RedisRateLimitBudget]) -> None:
    budget = ref()
    if budget is not None:
        budget._forked()
