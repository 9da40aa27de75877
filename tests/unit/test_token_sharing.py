"""The token endpoint: a 429 is waited out, and clients with the same credentials share tokens.

Medplum limits /oauth2/token to 160 requests a minute per IP and answers a 429 with
`RateLimit: "requests";r=0;t=55` and no Retry-After (cassette token-rate-limit). Clients of
one process with the same base URL and credentials share one token cache and one refresh at
a time, sync and async alike, so a fresh client per task logs in once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from pymedplum import (
    AsyncMedplumClient,
    AuthenticationError,
    CachedToken,
    MedplumClient,
    MemoryTokenCache,
    RateLimitError,
    TokenCache,
)
from pymedplum._retry import MAX_RETRIES, MAX_RETRY_DELAY_SECONDS
from pymedplum._token_cache import shared_token_cache, token_key
from tests.shared_data import CASSETTES

from .conftest import BASE, Driver, FakeMedplum, header


def recorded_token_429() -> httpx.Response:
    [interaction] = yaml.safe_load((CASSETTES / "token-rate-limit.yaml").read_text())[
        "interactions"
    ]
    response = interaction["response"]
    headers = [(k, v) for k, values in response["headers"].items() for v in values]
    return httpx.Response(
        response["status"]["code"], headers=headers, content=response["body"]["string"].encode()
    )


# ---- a 429 from /oauth2/token -----------------------------------------------------------------


def test_a_recorded_token_429_is_waited_out_then_the_login_repeated(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.token_replies.append(recorded_token_429())
    assert make().read_resource("Patient", "1")["id"] == "1"
    assert sleeps == [55.0]  # `RateLimit: "requests";r=0;t=55`, no Retry-After
    assert len(fake.token_requests) == 2
    assert header(fake.api_requests[0], "authorization") == "Bearer tok-1"


def test_a_token_429_wait_is_capped_like_any_other(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.token_replies.append(httpx.Response(429, headers={"RateLimit": '"requests";r=0;t=900'}))
    fake.token_replies.append(httpx.Response(429, headers={"Retry-After": "7"}))
    make().read_resource("Patient", "1")
    assert sleeps == [MAX_RETRY_DELAY_SECONDS, 7.0]


def test_token_429s_are_bounded_then_raised_with_the_server_delay(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.token_replies.extend(recorded_token_429() for _ in range(MAX_RETRIES + 2))
    with pytest.raises(RateLimitError) as caught:
        make().read_resource("Patient", "1")
    assert len(fake.token_requests) == MAX_RETRIES + 1
    assert sleeps == [55.0] * MAX_RETRIES
    assert caught.value.retry_after == 55.0
    assert fake.api_requests == []


def test_other_token_failures_are_not_retried(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.token_replies.append(httpx.Response(400, json={"error": "invalid_client"}))
    with pytest.raises(AuthenticationError):
        make().read_resource("Patient", "1")
    assert len(fake.token_requests) == 1 and sleeps == []


def test_callers_waiting_on_a_rate_limited_login_do_not_call_the_endpoint(
    fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.token_replies.append(recorded_token_429())

    async def main() -> None:
        async with fake.async_client() as client:
            await asyncio.gather(*(client.read_resource("Patient", str(i)) for i in range(50)))

    asyncio.run(main())
    assert len(fake.token_requests) == 2  # the 429, then the one repeat after the wait
    assert sleeps == [55.0]


# ---- one cache per base URL and credentials --------------------------------------------------


def test_two_clients_with_the_same_credentials_log_in_once(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().read_resource("Patient", "1")
    make().read_resource("Patient", "2")
    assert len(fake.token_requests) == 1
    assert {header(r, "authorization") for r in fake.api_requests} == {"Bearer tok-1"}


def test_sync_and_async_clients_share_the_token(fake: FakeMedplum) -> None:
    fake.sync_client().read_resource("Patient", "1")

    async def main() -> None:
        async with fake.async_client() as client:
            await client.read_resource("Patient", "2")

    asyncio.run(main())
    assert len(fake.token_requests) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"client_secret": "another-secret"},
        {"client_id": "another-id"},
        {"base_url": "https://other.medplum.test/"},
    ],
    ids=["secret", "client id", "base URL"],
)
def test_other_credentials_or_servers_get_their_own_token(
    fake: FakeMedplum, other: dict[str, str]
) -> None:
    fake.sync_client().read_resource("Patient", "1")
    fake.sync_client(**other).read_resource("Patient", "2")
    assert len(fake.token_requests) == 2


def test_the_cache_key_holds_a_digest_never_the_secret() -> None:
    key = token_key("https://x/oauth2/token", "id", "the-secret")
    assert "the-secret" not in repr(key)
    assert key == token_key("https://x/oauth2/token", "id", "the-secret")
    assert key != token_key("https://x/oauth2/token", "id", "the-secret2")


def test_a_fresh_client_per_task_logs_in_once_for_1000_tasks(fake: FakeMedplum) -> None:
    async def task(n: int) -> None:
        async with fake.async_client() as client:
            await client.read_resource("Patient", str(n))

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(1000)))

    asyncio.run(main())
    assert len(fake.token_requests) == 1
    assert len(fake.api_requests) == 1000


def _slow_logins(fake: FakeMedplum, seconds: float) -> None:
    original = fake.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            time.sleep(seconds)  # every other caller arrives while the login is in flight
        return original(request)

    fake.handle = handle  # type: ignore[method-assign]


def test_threads_and_event_loops_share_one_login_in_flight(fake: FakeMedplum) -> None:
    _slow_logins(fake, 0.2)
    start = threading.Barrier(20)
    errors: list[BaseException] = []

    def sync_worker(n: int) -> None:
        start.wait()
        try:
            fake.sync_client().read_resource("Patient", f"s{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def loop_worker(n: int) -> None:
        async def main() -> None:
            start.wait()
            async with fake.async_client() as client:
                await asyncio.gather(
                    *(client.read_resource("Patient", f"a{n}-{i}") for i in range(5))
                )

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sync_worker, args=(n,)) for n in range(10)]
    threads += [threading.Thread(target=loop_worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(fake.token_requests) == 1
    assert len(fake.api_requests) == 10 + 50


def test_a_401_on_one_client_refreshes_the_token_for_all(fake: FakeMedplum) -> None:
    first, second = fake.sync_client(), fake.sync_client()
    first.read_resource("Patient", "1")
    fake.script("GET", "/fhir/R4/Patient/2", httpx.Response(401))
    first.read_resource("Patient", "2")  # 401, refresh, replay
    second.read_resource("Patient", "3")
    assert len(fake.token_requests) == 2
    assert header(fake.api_requests[-1], "authorization") == "Bearer tok-2"


def test_a_failed_login_puts_every_client_of_the_credentials_in_the_cooldown(
    fake: FakeMedplum,
) -> None:
    from pymedplum import ServerError, TokenRefreshCooldownError

    fake.token_replies.append(httpx.Response(503))
    with pytest.raises(ServerError):
        fake.sync_client(failed_refresh_cooldown=60).read_resource("Patient", "1")
    with pytest.raises(TokenRefreshCooldownError):
        fake.sync_client(failed_refresh_cooldown=60).read_resource("Patient", "1")
    assert len(fake.token_requests) == 1


def test_a_cancelled_login_lets_the_waiting_callers_log_in(fake: FakeMedplum) -> None:
    release = asyncio.Event()
    calls = 0
    original = fake.handle

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.path == "/oauth2/token":
            calls += 1
            if calls == 1:
                await release.wait()  # the first login hangs until its task is cancelled
        return original(request)

    fake.handle = handle  # type: ignore[assignment]

    async def main() -> list[Any]:
        async with fake.async_client() as client:
            leader = asyncio.ensure_future(client.read_resource("Patient", "lead"))
            await asyncio.sleep(0.05)
            waiters = [
                asyncio.ensure_future(client.read_resource("Patient", str(i))) for i in range(5)
            ]
            await asyncio.sleep(0.05)
            leader.cancel()
            return await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)

    results = asyncio.run(main())
    assert [r["id"] for r in results] == ["0", "1", "2", "3", "4"]
    assert calls == 2


# ---- the cache seam ---------------------------------------------------------------------------


class RecordingCache:
    """A TokenCache of its own (what a store shared across processes would plug into)."""

    def __init__(self) -> None:
        self.store: dict[Any, CachedToken] = {}
        self.calls: list[str] = []

    def get(self, key: Any) -> CachedToken | None:
        self.calls.append("get")
        return self.store.get(key)

    def put(self, key: Any, token: CachedToken) -> None:
        self.calls.append("put")
        self.store[key] = token

    def discard(self, key: Any, access_token: str) -> None:
        self.calls.append("discard")
        if key in self.store and self.store[key].access_token == access_token:
            del self.store[key]


def test_a_client_uses_the_token_cache_it_is_given(fake: FakeMedplum) -> None:
    cache = RecordingCache()
    assert isinstance(cache, TokenCache)
    client = fake.sync_client(token_cache=cache)
    client.read_resource("Patient", "1")
    assert "put" in cache.calls
    [stored] = cache.store.values()
    assert stored.access_token == "tok-1" and stored.expires_at is not None
    assert len(shared_token_cache()) == 0  # the process-wide cache was not used
    # A token put there by someone else (another process, say) is used without logging in.
    other = RecordingCache()
    key = token_key(BASE + "oauth2/token", "cid", "secret")
    other.put(key, CachedToken("from-elsewhere", time.time() + 3600, time.time() + 3000))
    fake.sync_client(token_cache=other).read_resource("Patient", "2")
    assert header(fake.api_requests[-1], "authorization") == "Bearer from-elsewhere"
    assert len(fake.token_requests) == 1


def test_cached_token_repr_hides_the_token() -> None:
    token = CachedToken("secret-token-value", 1.0, 0.5)
    assert "secret-token-value" not in repr(token)
    cache = MemoryTokenCache()
    cache.put(("u", "i", "d"), token)
    assert "secret-token-value" not in repr(cache)


def test_expiry_is_stored_as_unix_time(fake: FakeMedplum) -> None:
    before = time.time()
    fake.sync_client().read_resource("Patient", "1")
    [stored] = [shared_token_cache().get(token_key(BASE + "oauth2/token", "cid", "secret"))]
    assert stored is not None and stored.expires_at is not None
    assert before + 3600 <= stored.expires_at <= time.time() + 3600
    assert json.dumps(stored.expires_at)  # a plain number another process can read


def test_sync_client_shares_with_async_client_while_threads_run(fake: FakeMedplum) -> None:
    sync = fake.sync_client()
    sync.read_resource("Patient", "1")

    async def main() -> str:
        async with AsyncMedplumClient(
            BASE,
            client_id="cid",
            client_secret="secret",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)),
        ) as client:
            await client.read_resource("Patient", "2")
            return client.access_token or ""

    assert asyncio.run(main()) == sync.access_token == "tok-1"
    assert isinstance(sync, MedplumClient)


def test_a_sync_call_on_the_loop_leading_a_login_does_not_wait_for_itself(
    fake: FakeMedplum,
) -> None:
    # An async client's login is in flight on this event loop when code on the same loop
    # calls a sync client (blocking the loop). Waiting for that login would never end: the
    # sync call logs in by itself instead.
    async def slow_token(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            fake.requests.append(request)
            await asyncio.sleep(0.3)
            return fake.issue_token(request)
        return fake.handle(request)

    async def main() -> list[str]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(slow_token))
        async with AsyncMedplumClient(
            BASE, client_id="cid", client_secret="secret", http_client=http
        ) as client:
            leader = asyncio.ensure_future(client.read_resource("Patient", "a"))
            await asyncio.sleep(0.05)  # the async login is now in flight
            sync = fake.sync_client()
            sync.read_resource("Patient", "s")  # blocks this loop's thread
            await leader
        return [header(r, "authorization") or "" for r in fake.api_requests]

    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.append(asyncio.run(main())), daemon=True)
    runner.start()
    runner.join(timeout=20)
    assert not runner.is_alive(), "deadlock: the sync call waited for a login on its own thread"
    assert len(fake.token_requests) == 2
    assert len(outcome[0]) == 2
