"""The few primitives that differ between the async client and the generated sync one.

Each comes as a pair named so that codegen/unasync.py maps one to the other
(`async_sleep` -> `sync_sleep`, `async_wait` -> `sync_wait`, `ASYNC_WAIT_BLOCKS` ->
`SYNC_WAIT_BLOCKS`, `AsyncCloseName` -> `CloseName`, `AsyncDeadline` -> `Deadline`,
`new_async_http_client` -> `new_sync_http_client`, `AsyncPrefetch` -> `SyncPrefetch`).
Tests patch the sleeps.

The client's `timeout` bounds each attempt as a whole. The async client cancels the
attempt when it runs out (`asyncio.timeout`). The sync client cannot cancel a blocking
read, so every socket operation of an attempt waits at most for what remains of it: the
httpx client it creates uses a network backend that reads the attempt's deadline from a
ContextVar (`Deadline`). A server that sends one byte every 0.15 s cannot hold an attempt
past its timeout either way.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpcore
import httpx

from pymedplum._retry import AttemptTimeout
from pymedplum._token_cache import Flight

__all__ = [
    "ASYNC_WAIT_BLOCKS",
    "SYNC_WAIT_BLOCKS",
    "AsyncCloseName",
    "AsyncDeadline",
    "AsyncPrefetch",
    "CloseName",
    "Deadline",
    "async_sleep",
    "async_wait",
    "new_async_http_client",
    "new_sync_http_client",
    "SyncPrefetch",
    "sync_sleep",
    "sync_wait",
]

T = TypeVar("T")


async def async_sleep(seconds: float) -> None:
    """Wait before a retry without blocking the event loop."""
    await asyncio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    """Wait before a retry."""
    time.sleep(seconds)


#: Whether a caller waiting for another caller's token refresh blocks its thread.
ASYNC_WAIT_BLOCKS = False
SYNC_WAIT_BLOCKS = True


async def async_wait(flight: Flight) -> str | None:
    """Wait for another caller's token refresh without blocking the event loop."""
    return await flight.wait_async()


def sync_wait(flight: Flight) -> str | None:
    """Wait for another caller's token refresh (on any thread or event loop)."""
    return flight.wait()


class AsyncCloseName:
    """Gives the async client an awaitable `close()`: the name other SDKs document."""

    async def aclose(self) -> None:  # pragma: no cover - the client defines it
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection pool (not a caller-supplied http_client); same as `aclose()`."""
        await self.aclose()


class CloseName:
    """The sync client's `close()` is its own: nothing to add."""


def _expired(seconds: float) -> AttemptTimeout:
    return AttemptTimeout(f"the attempt took longer than the client's timeout ({seconds:g} s)")


class AsyncDeadline:
    """`async with AsyncDeadline(seconds)`: cancel the block after `seconds` (None: never),
    raising AttemptTimeout (an httpx.TimeoutException) in its place."""

    __slots__ = ("_seconds", "_timeout")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        if self._seconds is not None:
            self._timeout = asyncio.timeout(self._seconds)
            await self._timeout.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout = self._timeout
        if timeout is None:
            return
        try:
            await timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            if not timeout.expired():
                raise
            raise _expired(self._seconds or 0.0) from None


_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "pymedplum_attempt_deadline", default=None
)


class Deadline:
    """`with Deadline(seconds)`: every socket operation in the block, on an httpx client
    made by `new_sync_http_client`, waits at most for what remains of `seconds`."""

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._token: contextvars.Token[tuple[float, float] | None] | None = None

    def __enter__(self) -> None:
        if self._seconds is not None:
            self._token = _DEADLINE.set((time.monotonic() + self._seconds, self._seconds))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)
            self._token = None


def _remaining(timeout: float | None, *, connecting: bool = False) -> float | None:
    """The timeout for one socket operation: httpx's own, cut to what the attempt has left."""
    current = _DEADLINE.get()
    if current is None:
        return timeout
    deadline, seconds = current
    left = deadline - time.monotonic()
    if left <= 0:
        if connecting:  # nothing was sent yet: a plain connect timeout, retried as such
            raise httpcore.ConnectTimeout(str(_expired(seconds)))
        raise _expired(seconds)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    __slots__ = ("_stream",)

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _remaining(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(ssl_context, server_hostname, _remaining(timeout))
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with every operation bounded by the attempt's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _remaining(timeout, connecting=True)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _remaining(timeout, connecting=True)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def new_async_http_client(options: dict[str, Any]) -> httpx.AsyncClient:
    """The async client's own httpx client (AsyncDeadline bounds its attempts)."""
    return httpx.AsyncClient(**options)


def new_sync_http_client(options: dict[str, Any]) -> httpx.Client:
    """The sync client's own httpx client, its sockets bounded by `Deadline`.

    httpx offers no public way to pass httpcore a network backend, so it is set on the
    default transport's connection pool; should httpx change that layout, the client
    still works, with body reads checked against the deadline between chunks only.
    """
    client = httpx.Client(**options)
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    return client


class AsyncPrefetch(Generic[T]):
    """`fetch(*args)` started now in a task of the running loop; its result taken later.

    The task runs in a copy of the caller's context (asyncio copies it), so on-behalf-of
    scopes and the caller's own ContextVars are seen by hooks as in the caller.
    """

    __slots__ = ("_task",)

    def __init__(self, fetch: Callable[..., Awaitable[T]], *args: Any) -> None:
        self._task: asyncio.Future[T] = asyncio.ensure_future(fetch(*args))

    async def result(self) -> T:
        """The fetched value, or the exception the fetch raised."""
        return await self._task

    async def cancel(self) -> None:
        """Cancel the fetch and wait until it is over; its value or error is dropped."""
        self._task.cancel()  # on a finished task, this marks its exception as retrieved
        await asyncio.wait([self._task])  # never raises the task's own exception


class SyncPrefetch(Generic[T]):
    """`fetch(*args)` started now in a worker thread; its result taken later.

    The thread runs in a copy of the caller's context (`contextvars.copy_context()`),
    so ContextVars set by the caller are seen by hooks as in the caller. A thread cannot
    be interrupted: `cancel()` waits for the fetch in flight (at most one request) and
    drops its result.
    """

    __slots__ = ("_thread", "_value", "_error")

    def __init__(self, fetch: Callable[..., T], *args: Any) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run, fetch, args), name="pymedplum-prefetch"
        )
        self._thread.daemon = True  # never keeps the interpreter alive
        self._thread.start()

    def _run(self, fetch: Callable[..., T], args: tuple[Any, ...]) -> None:
        try:
            self._value = fetch(*args)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> T:
        """The fetched value, or the exception the fetch raised."""
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self._value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Wait for the fetch in flight to end; its value and error are dropped."""
        self._thread.join()
        self._value = self._error = None
