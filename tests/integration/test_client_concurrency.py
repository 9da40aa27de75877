"""Concurrency against the local Medplum server.

- 1,000 concurrent asyncio tasks on one AsyncMedplumClient, each acting as its own
  membership: every request the server logged carries exactly the OBO its task set.
- 100 concurrent callers on a fresh client cause exactly one token request (async tasks
  and threads), and a failed login reaches every waiting caller as the same exception.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from pymedplum import AsyncMedplumClient, MedplumClient, ServerError
from pymedplum.testing.local_server import LocalMedplumServer

TASKS = 1000
CALLERS = 100


def obo_targets(medplum: LocalMedplumServer) -> list[str]:
    """Six distinct OBO values the server accepts: each membership, and its profile."""
    seeded = medplum.practitioners.values()
    return [p.membership for p in seeded] + [p.practitioner for p in seeded]


def admin_kwargs(medplum: LocalMedplumServer) -> dict[str, Any]:
    creds = medplum.admin_client
    return {"client_id": creds.client_id, "client_secret": creds.client_secret}


def test_1000_concurrent_tasks_each_send_only_their_own_obo(medplum: LocalMedplumServer) -> None:
    targets = obo_targets(medplum)
    expected = {f"task-{i}": targets[i % len(targets)] for i in range(TASKS)}

    async def task(client: AsyncMedplumClient, i: int) -> None:
        name, membership = f"task-{i}", expected[f"task-{i}"]
        if i % 3 == 0:  # the per-call kwarg
            await client.search_resources("Patient", {"family": name}, on_behalf_of=membership)
            return
        async with client.on_behalf_of(membership):  # the context manager, across awaits
            await asyncio.sleep(0)
            if i % 3 == 1:  # a per-call clear inside the block, then the task's own value
                await client.search_resources(
                    "Patient", {"family": name + "-cleared"}, on_behalf_of=""
                )
                await asyncio.sleep(0)
            await client.search_resources("Patient", {"family": name})

    async def main() -> None:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            # The attempt timeout counts the wait for one of the 16 connections: as generous
            # as the pool's, so that a loaded machine causes no retries (they would be logged).
            client = AsyncMedplumClient(
                medplum.base_url + "/", http_client=http, timeout=60, **admin_kwargs(medplum)
            )
            async with client:
                await asyncio.gather(*(task(client, i) for i in range(TASKS)))

    asyncio.run(main())
    logged = medplum.fhir_requests()
    assert len(logged) == TASKS + len(range(1, TASKS, 3))
    assert all(r["status"] == 200 for r in logged)
    mismatched = []
    for request in logged:
        family = request["query"]["family"][0]
        want = None if family.endswith("-cleared") else expected[family]
        if request["on_behalf_of"] != want:
            mismatched.append((family, request["on_behalf_of"], want))
    assert mismatched == []
    assert medplum.token_stats()["token_requests"] == 1


def test_100_concurrent_async_callers_cause_one_token_request(
    medplum: LocalMedplumServer,
) -> None:
    medplum.delay_next(200, path_prefix="/oauth2/token")  # a slow login: everyone queues

    async def main() -> None:
        async with AsyncMedplumClient(medplum.base_url + "/", **admin_kwargs(medplum)) as client:
            await asyncio.gather(
                *(client.search_resources("Patient", {"family": "x"}) for _ in range(CALLERS))
            )

    asyncio.run(main())
    assert medplum.token_stats()["token_requests"] == 1
    assert len(medplum.fhir_requests()) == CALLERS


def test_100_concurrent_threads_cause_one_token_request(medplum: LocalMedplumServer) -> None:
    medplum.delay_next(200, path_prefix="/oauth2/token")
    start = threading.Barrier(CALLERS)
    with MedplumClient(medplum.base_url + "/", **admin_kwargs(medplum)) as client:

        def call(_: int) -> Any:
            start.wait(timeout=30)
            return client.search_resources("Patient", {"family": "x"})

        with ThreadPoolExecutor(CALLERS) as pool:
            results = list(pool.map(call, range(CALLERS)))
    assert len(results) == CALLERS
    assert medplum.token_stats()["token_requests"] == 1
    assert len(medplum.fhir_requests()) == CALLERS


def test_a_failed_login_reaches_every_waiting_caller_once(medplum: LocalMedplumServer) -> None:
    medplum.fail_next(503, delay_ms=200, path_prefix="/oauth2/token")

    async def main() -> list[BaseException | Any]:
        async with AsyncMedplumClient(medplum.base_url + "/", **admin_kwargs(medplum)) as client:
            return await asyncio.gather(
                *(client.search_resources("Patient", {"family": "x"}) for _ in range(CALLERS)),
                return_exceptions=True,
            )

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == CALLERS
    assert all(isinstance(e, ServerError) for e in errors)
    assert len({id(e) for e in errors}) == 1  # the very same exception, shared
    token_requests = [r for r in medplum.requests() if r["path"] == "/oauth2/token"]
    assert len(token_requests) == 1 and token_requests[0]["status"] == 503
    assert medplum.fhir_requests() == []


@pytest.mark.parametrize("n", [CALLERS])
def test_concurrent_callers_after_a_401_share_one_refresh(
    medplum: LocalMedplumServer, n: int
) -> None:
    async def main() -> None:
        async with AsyncMedplumClient(medplum.base_url + "/", **admin_kwargs(medplum)) as client:
            await client.search_resources("Patient", {"family": "warm-up"})
            medplum.expire_tokens()
            medplum.delay_next(100, path_prefix="/oauth2/token")
            await asyncio.gather(
                *(client.search_resources("Patient", {"family": "x"}) for _ in range(n))
            )

    asyncio.run(main())
    assert medplum.token_stats()["token_requests"] == 2
    statuses = [r["status"] for r in medplum.fhir_requests()[1:]]
    assert statuses.count(200) == n


# ---- one token cache per base URL and credentials --------------------------------------------


def test_1000_tasks_each_with_a_fresh_client_cause_one_token_request(
    medplum: LocalMedplumServer,
) -> None:
    # The worker pattern of on-behalf-of.md: a fresh client per task. Medplum would refuse
    # the 161st login of a minute; the shared token cache makes it one.
    medplum.delay_next(200, path_prefix="/oauth2/token")  # a slow login: many tasks queue
    targets = obo_targets(medplum)
    open_clients = asyncio.Semaphore(200)  # bounds sockets, not logins

    async def task(n: int) -> None:
        async with (
            open_clients,
            AsyncMedplumClient(
                medplum.base_url + "/",
                **admin_kwargs(medplum),
                default_on_behalf_of=targets[n % len(targets)],
            ) as client,
        ):
            await client.search_resources("Patient", {"family": f"task-{n}"})

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(TASKS)))

    asyncio.run(main())
    assert medplum.token_stats()["token_requests"] == 1
    logged = medplum.fhir_requests()
    assert len(logged) == TASKS and all(r["status"] == 200 for r in logged)


def test_threads_each_with_a_fresh_sync_client_cause_one_token_request(
    medplum: LocalMedplumServer,
) -> None:
    medplum.delay_next(200, path_prefix="/oauth2/token")
    start = threading.Barrier(CALLERS)

    def call(n: int) -> Any:
        start.wait(timeout=30)
        with MedplumClient(medplum.base_url + "/", **admin_kwargs(medplum)) as client:
            return client.search_resources("Patient", {"family": f"thread-{n}"})

    with ThreadPoolExecutor(CALLERS) as pool:
        results = list(pool.map(call, range(CALLERS)))
    assert len(results) == CALLERS
    assert medplum.token_stats()["token_requests"] == 1


def test_a_rate_limited_login_is_waited_out(
    medplum: LocalMedplumServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymedplum import _backend

    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(_backend, "async_sleep", record)
    medplum.rate_limit_next(path_prefix="/oauth2/token")  # as token-rate-limit.yaml

    async def main() -> None:
        async with AsyncMedplumClient(medplum.base_url + "/", **admin_kwargs(medplum)) as client:
            await asyncio.gather(
                *(client.search_resources("Patient", {"family": "x"}) for _ in range(CALLERS))
            )

    asyncio.run(main())
    assert waited == [55.0]  # RateLimit: "requests";r=0;t=55, no Retry-After
    logins = [r["status"] for r in medplum.requests() if r["path"] == "/oauth2/token"]
    assert logins == [429, 200]
    assert len(medplum.fhir_requests()) == CALLERS
