"""The few primitives that differ between the async client and the generated sync one.

Each comes as a pair named so that codegen/unasync.py maps one to the other
(`async_sleep` -> `sync_sleep`, `async_wait` -> `sync_wait`, `ASYNC_WAIT_BLOCKS` ->
`SYNC_WAIT_BLOCKS`, `AsyncCloseName` -> `CloseName`). Tests patch the sleeps.
"""

from __future__ import annotations

import asyncio
import time

from pymedplum._token_cache import Flight

__all__ = [
    "ASYNC_WAIT_BLOCKS",
    "SYNC_WAIT_BLOCKS",
    "AsyncCloseName",
    "CloseName",
    "async_sleep",
    "async_wait",
    "sync_sleep",
    "sync_wait",
]


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
