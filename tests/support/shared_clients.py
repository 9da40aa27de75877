"""Work run in other processes by the tests of pymedplum.redis (spawned: a fresh interpreter,
as a worker process is).

Each function builds a fresh client per task, as the worker pattern of docs/on_behalf_of.md
does, with a Redis token cache and budget, and returns what its calls saw.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.hooks import RequestEvent
from pymedplum.redis import RedisRateLimitBudget, RedisTokenCache


def _attempts(events: list[RequestEvent]) -> list[dict[str, Any]]:
    return [
        {
            "status": a.status_code,
            "on_behalf_of": a.on_behalf_of,
            "rate_limit_wait": a.rate_limit_wait_seconds,
        }
        for event in events
        for a in event.attempts
    ]


def read_patients(
    base_url: str,
    client_id: str,
    client_secret: str,
    redis_url: str,
    patient_ids: list[str],
    start_at: float,
    flavour: str,
) -> dict[str, Any]:
    """Read each Patient with a fresh client (acting as itself), all sharing one Redis token
    cache and budget; starts at Unix time `start_at` so that the processes meet."""
    tokens = RedisTokenCache(redis_url)
    budget = RedisRateLimitBudget(redis_url)
    events: list[RequestEvent] = []
    kw: dict[str, Any] = {
        "base_url": base_url,
        "client_id": client_id,
        "client_secret": client_secret,
        "token_cache": tokens,
        "rate_limit_budget": budget,
        "on_request_complete": events.append,
    }
    time.sleep(max(0.0, start_at - time.time()))
    ids: list[str] = []
    if flavour == "sync":
        for patient_id in patient_ids:
            with MedplumClient(**kw) as client:
                ids.append(client.read_resource("Patient", patient_id)["id"])
    else:

        async def main() -> None:
            for patient_id in patient_ids:
                async with AsyncMedplumClient(**kw) as client:
                    ids.append((await client.read_resource("Patient", patient_id))["id"])

        asyncio.run(main())
    budget.close()
    return {"pid": os.getpid(), "ids": ids, "attempts": _attempts(events)}


def die_holding_the_login_lock(
    base_url: str, client_id: str, client_secret: str, redis_url: str, lock_seconds: float
) -> None:
    """Take the login lock as a process about to log in would, then die without releasing it."""
    tokens = RedisTokenCache(redis_url, lock_seconds=lock_seconds)
    client = MedplumClient(base_url, client_id=client_id, client_secret=client_secret)
    key = client._token.key
    assert key is not None
    token, lease = tokens.acquire(key, None)
    assert token is None and lease is not None, "expected to take the lock"
    os.kill(os.getpid(), signal.SIGKILL)
