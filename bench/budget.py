"""The shared RateLimit budget's cost per request, against the same client without a budget.

While nothing is spent, checking the budget must cost no Redis round trip: each process keeps
a view of the shared budget, kept current by a Redis channel (pymedplum.redis). Measured here,
CPU time of this process per read (`time.process_time()`: the server's and Redis's work are
not counted; best of several rounds of many calls, variants alternating):

- MockTransport (no network): the purest view of what the check adds to a call;
- loopback: the local Medplum server;
- for scale, the same budget reading Redis on every request (`listen=False, max_age=0`):
  what the local view saves;
- a fresh client per task (the worker pattern) with the Redis token cache and budget, against
  the process-wide defaults.

Needs `redis-server` (make install) and redis-py; without them the rows say so.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench._timing import us
from pymedplum import AsyncMedplumClient, MedplumClient, MemoryRateLimitBudget
from pymedplum.testing.local_server import LocalMedplumServer

Row = tuple[str, str, str, str]

CALLS = 300
ROUNDS = 9
MOCK_BASE = "https://medplum.bench/"
PATIENT = b'{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"}}'
RATELIMIT = '"requests";r=59999;t=60, "fhirInteractions";r=49999;t=60'


def _mock(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/oauth2/token":
        return httpx.Response(200, json={"access_token": "bench-token", "expires_in": 3600})
    return httpx.Response(
        200,
        content=PATIENT,
        headers={"Content-Type": "application/fhir+json", "RateLimit": RATELIMIT},
    )


def _per_call(fn: Callable[[], object]) -> float:
    start = time.process_time()
    for _ in range(CALLS):
        fn()
    return (time.process_time() - start) / CALLS


def _best(variants: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best seconds per call of each variant, rounds alternating so drift hits all alike."""
    for fn in variants.values():
        for _ in range(30):
            fn()
    best = dict.fromkeys(variants, float("inf"))
    gc.collect()
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            best[name] = min(best[name], _per_call(fn))
    return best


def _sync_reads(clients: dict[str, MedplumClient]) -> dict[str, Callable[[], object]]:
    return {name: (lambda c=c: c.read_resource("Patient", "p1")) for name, c in clients.items()}


def _async_reads(
    loop: asyncio.AbstractEventLoop, clients: dict[str, AsyncMedplumClient]
) -> dict[str, Callable[[], object]]:
    return {
        name: (lambda c=c: loop.run_until_complete(c.read_resource("Patient", "p1")))
        for name, c in clients.items()
    }


def _rows(label: str, best: dict[str, float]) -> list[Row]:
    base = best["none"]
    names = {
        "memory": "MemoryRateLimitBudget",
        "redis": "RedisRateLimitBudget (listening; nothing spent)",
        "redis-read": "RedisRateLimitBudget reading Redis per request (listen=False, max_age=0)",
    }
    return [
        (
            f"{label} + {names[name]}",
            us(best[name]),
            f"{best[name] / base:.3f}x the same client without a budget ({us(base)})",
            "",
        )
        for name in names
        if name in best
    ]


def _check_alone(budget: Any, read_seconds: float) -> Row:
    """What the client runs per attempt with a budget, alone: the check before sending and
    the look at the answer's RateLimit header after it."""
    from pymedplum._budget import pause_seconds, spent_after

    headers = httpx.Headers({"ratelimit": RATELIMIT})
    scope = "fhir:bench"

    def check() -> None:
        now = time.time()
        pause_seconds(budget.spent_until(scope, now), now)
        spent_after(200, RATELIMIT, headers, now, budget.reserve)

    n = 20000
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(n):
            check()
        best = min(best, (time.process_time() - start) / n)
    return (
        f"the budget's work per request alone ({type(budget).__name__}, nothing spent)",
        f"{best * 1e9:.0f} ns",
        f"{best / read_seconds:.2%} of a MockTransport read without a budget ({us(read_seconds)})",
        "",
    )


def _wait_listening(budget: Any) -> None:
    deadline = time.monotonic() + 30
    while not budget.listening and time.monotonic() < deadline:
        budget.spent_until("bench:warm-up", time.time())
        time.sleep(0.01)


def rows() -> list[Row]:
    try:
        from pymedplum.redis import RedisRateLimitBudget, RedisTokenCache
        from tests.support.redis_server import MISSING_REASON, LocalRedisServer, redis_server_binary
    except ImportError as exc:
        return [("shared budget", "not measured", f"redis-py is missing ({exc})", "")]
    if redis_server_binary() is None:
        return [("shared budget", "not measured", MISSING_REASON, "")]
    out: list[Row] = []
    with LocalRedisServer() as redis_server:
        url = redis_server.url
        budgets: dict[str, Any] = {
            "none": None,
            "memory": MemoryRateLimitBudget(),
            "redis": RedisRateLimitBudget(url),
            "redis-read": RedisRateLimitBudget(url, listen=False, max_age=0.0),
        }
        _wait_listening(budgets["redis"])

        def sync_client(budget: Any, base: str, **kw: Any) -> MedplumClient:
            return MedplumClient(base, rate_limit_budget=budget, **kw)

        # -- MockTransport
        kw = {"client_id": "bench", "client_secret": "bench-secret"}
        sync_clients = {
            name: sync_client(
                b, MOCK_BASE, http_client=httpx.Client(transport=httpx.MockTransport(_mock)), **kw
            )
            for name, b in budgets.items()
        }
        best = _best(_sync_reads(sync_clients))
        out += _rows("read, MockTransport, MedplumClient", best)
        out.append(_check_alone(budgets["redis"], best["none"]))
        out.append(_check_alone(budgets["memory"], best["none"]))
        loop = asyncio.new_event_loop()
        async_clients = {
            name: AsyncMedplumClient(
                MOCK_BASE,
                rate_limit_budget=b,
                http_client=httpx.AsyncClient(transport=httpx.MockTransport(_mock)),
                **kw,
            )
            for name, b in budgets.items()
        }
        best = _best(_async_reads(loop, async_clients))
        out += _rows("read, MockTransport, AsyncMedplumClient", best)

        # -- loopback: the local Medplum server
        with LocalMedplumServer() as medplum:
            creds = medplum.admin_client
            lkw = {"client_id": creds.client_id, "client_secret": creds.client_secret}
            with MedplumClient(medplum.base_url, **lkw) as admin:
                pid = admin.create_resource({"resourceType": "Patient"})["id"]
            local = {
                name: MedplumClient(medplum.base_url, rate_limit_budget=b, **lkw)
                for name, b in budgets.items()
            }
            reads = {n: (lambda c=c: c.read_resource("Patient", pid)) for n, c in local.items()}
            out += _rows("read, loopback, MedplumClient", _best(reads))

            # -- a fresh client per task, with the Redis token cache and budget
            tokens = RedisTokenCache(url)

            def fresh(**extra: Any) -> Callable[[], object]:
                def task() -> object:
                    with MedplumClient(medplum.base_url, **lkw, **extra) as client:
                        return client.read_resource("Patient", pid)

                return task

            fresh_best = _best(
                {
                    "none": fresh(),
                    "redis": fresh(token_cache=tokens, rate_limit_budget=budgets["redis"]),
                }
            )
            base = fresh_best["none"]
            out.append(
                (
                    "fresh MedplumClient per task + RedisTokenCache + RedisRateLimitBudget, "
                    "loopback read",
                    us(fresh_best["redis"]),
                    f"{fresh_best['redis'] / base:.3f}x the process-wide token cache and no "
                    f"budget ({us(base)})",
                    "",
                )
            )
            for client in local.values():
                client.close()
        for client in sync_clients.values():
            client.close()
        for aclient in async_clients.values():
            loop.run_until_complete(aclient.aclose())
        loop.close()
        for budget in budgets.values():
            if isinstance(budget, RedisRateLimitBudget):
                budget.close()
    return out


if __name__ == "__main__":
    for row in rows():
        print(" | ".join(row))
