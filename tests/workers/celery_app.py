"""A Celery application as a worker fleet runs it (tests/integration/test_redis_worker_pool.py).

    celery -A tests.workers.celery_app worker --pool prefork --concurrency 4

Configured from the environment (the test sets it): PYMEDPLUM_TEST_REDIS_URL (broker, result
backend, token cache and budget), PYMEDPLUM_TEST_BASE_URL, PYMEDPLUM_TEST_CLIENT_ID,
PYMEDPLUM_TEST_CLIENT_SECRET, PYMEDPLUM_TEST_QUEUE, PYMEDPLUM_TEST_RESERVE (the budget's
`reserve`), PYMEDPLUM_TEST_BUDGET (`redis`; `memory` or `none` to compare).

Each task follows the worker pattern of docs/on_behalf_of.md: a fresh client per task, built
with `default_on_behalf_of=` the task's membership; every client of every worker process
shares one Redis token cache and one Redis RateLimit budget, made once per process (here at
import, before the pool forks: the budget starts afresh in each child).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from celery import Celery

from pymedplum import AsyncMedplumClient, MedplumClient, MemoryRateLimitBudget, RateLimitBudget
from pymedplum.hooks import RequestEvent
from pymedplum.redis import RedisRateLimitBudget, RedisTokenCache

REDIS_URL = os.environ.get("PYMEDPLUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BASE_URL = os.environ.get("PYMEDPLUM_TEST_BASE_URL", "http://127.0.0.1:8103/")
CLIENT_ID = os.environ.get("PYMEDPLUM_TEST_CLIENT_ID", "")
CLIENT_SECRET = os.environ.get("PYMEDPLUM_TEST_CLIENT_SECRET", "")
QUEUE = os.environ.get("PYMEDPLUM_TEST_QUEUE", "pymedplum-test")

app = Celery("pymedplum_test", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)

RESERVE = int(os.environ.get("PYMEDPLUM_TEST_RESERVE", "0"))

TOKENS = RedisTokenCache(REDIS_URL)
BUDGET: RateLimitBudget | None = {
    "redis": lambda: RedisRateLimitBudget(REDIS_URL, reserve=RESERVE),
    "memory": lambda: MemoryRateLimitBudget(reserve=RESERVE),
    "none": lambda: None,
}[os.environ.get("PYMEDPLUM_TEST_BUDGET", "redis")]()


def _client_kw(membership_id: str, events: list[RequestEvent]) -> dict[str, Any]:
    return {
        "base_url": BASE_URL,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "default_on_behalf_of": membership_id,
        "token_cache": TOKENS,
        "rate_limit_budget": BUDGET,
        "on_request_complete": events.append,
    }


async def handle_patient_task(
    membership_id: str, patient_id: str, events: list[RequestEvent]
) -> dict[str, Any]:
    async with AsyncMedplumClient(**_client_kw(membership_id, events)) as client:
        return await client.read_resource("Patient", patient_id)


@app.task(name="pymedplum_test.read_patient")
def read_patient(index: int, membership_id: str, patient_id: str) -> dict[str, Any]:
    """Read one Patient as `membership_id`: the async client on even tasks, the sync one on
    odd tasks (both share the process's Redis cache and budget)."""
    events: list[RequestEvent] = []
    if index % 2 == 0:
        patient = asyncio.run(handle_patient_task(membership_id, patient_id, events))
    else:
        with MedplumClient(**_client_kw(membership_id, events)) as client:
            patient = client.read_resource("Patient", patient_id)
    return {
        "pid": os.getpid(),
        "id": patient["id"],
        "attempts": [
            {
                "status": a.status_code,
                "on_behalf_of": a.on_behalf_of,
                "rate_limit_wait": a.rate_limit_wait_seconds,
                "retry_delay": a.retry_delay_seconds,
            }
            for event in events
            for a in event.attempts
        ],
    }
