"""The few primitives that differ between the async client and the generated sync one.

Each comes as a pair named so that codegen/unasync.py maps one to the other
(`AsyncLock` -> `SyncLock`, `async_sleep` -> `sync_sleep`). Tests patch the sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["AsyncLock", "SyncLock", "async_sleep", "sync_sleep"]

AsyncLock = asyncio.Lock
SyncLock = threading.Lock


async def async_sleep(seconds: float) -> None:
    """Wait before a retry without blocking the event loop."""
    await asyncio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    """Wait before a retry."""
    time.sleep(seconds)
