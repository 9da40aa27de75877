"""The few primitives that differ between the async client and the generated sync one.

Each comes as a pair named so that codegen/unasync.py maps one to the other
(`AsyncLock` -> `SyncLock`, `async_sleep` -> `sync_sleep`, `AsyncPrefetch` ->
`SyncPrefetch`). Tests patch the sleeps.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["AsyncLock", "SyncLock", "async_sleep", "sync_sleep", "AsyncPrefetch", "SyncPrefetch"]

T = TypeVar("T")

AsyncLock = asyncio.Lock
SyncLock = threading.Lock


async def async_sleep(seconds: float) -> None:
    """Wait before a retry without blocking the event loop."""
    await asyncio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    """Wait before a retry."""
    time.sleep(seconds)


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
