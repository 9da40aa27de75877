"""Token: lazy login, proactive refresh, 401 replay, single flight, cooldown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from pymedplum import AuthenticationError, MedplumError, NetworkError, TokenRefreshCooldownError
from pymedplum._auth import TokenState

from .conftest import Driver, FakeMedplum, header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_construction_sends_nothing(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make()
    assert fake.requests == []


def test_first_request_logs_in_with_a_form_body(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make(client_id="my-id", client_secret="my-secret").read_resource("Patient", "1")
    login, read = fake.requests
    assert login.method == "POST" and str(login.url) == "https://medplum.test/oauth2/token"
    assert login.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(login.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": ["my-id"],
        "client_secret": ["my-secret"],
    }
    assert header(read, "authorization") == "Bearer tok-1"


def test_token_is_reused_while_fresh(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api = make()
    for _ in range(5):
        api.read_resource("Patient", "1")
    assert len(fake.token_requests) == 1


def test_proactive_refresh_before_expiry(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.token_lifetime = 100  # refresh margin: a tenth of the lifetime, 10 s
    api = make()
    clock = Clock()
    api.client._clock = clock
    api.read_resource("Patient", "1")
    clock.now += 89  # still fresh
    api.read_resource("Patient", "1")
    assert len(fake.token_requests) == 1
    clock.now += 2  # 91 s: inside the margin, before expiry
    api.read_resource("Patient", "1")
    assert len(fake.token_requests) == 2
    assert header(fake.api_requests[-1], "authorization") == "Bearer tok-2"


def test_401_forces_one_refresh_and_one_replay(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(401))
    assert make().read_resource("Patient", "1")["id"] == "1"
    assert len(fake.token_requests) == 2
    first, replay = fake.api_requests
    assert header(first, "authorization") == "Bearer tok-1"
    assert header(replay, "authorization") == "Bearer tok-2"


def test_second_401_is_raised_not_replayed_again(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(401), httpx.Response(401))
    with pytest.raises(AuthenticationError):
        make().read_resource("Patient", "1")
    assert len(fake.api_requests) == 2
    assert len(fake.token_requests) == 2


def test_static_access_token_is_sent_and_never_refreshed(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(401))
    api = make(client_id=None, client_secret=None, access_token="given")
    with pytest.raises(AuthenticationError):
        api.read_resource("Patient", "1")
    assert fake.token_requests == []
    assert header(fake.api_requests[0], "authorization") == "Bearer given"


def test_failed_login_raises_without_the_secret(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.token_replies.append(httpx.Response(400, json={"error": "invalid_client"}))
    with pytest.raises(AuthenticationError) as caught:
        make(client_secret="s3cr3t-value").read_resource("Patient", "1")
    assert "invalid_client" in str(caught.value)
    assert "s3cr3t-value" not in repr(caught.value) + str(caught.value.sanitize_for_logging())
    assert fake.api_requests == []


def test_cooldown_after_failed_refresh(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.token_replies.append(httpx.Response(503))
    api = make(failed_refresh_cooldown=5.0)
    clock = Clock()
    api.client._clock = clock
    with pytest.raises(MedplumError):
        api.read_resource("Patient", "1")
    clock.now += 2
    with pytest.raises(TokenRefreshCooldownError) as caught:
        api.read_resource("Patient", "1")
    assert caught.value.retry_after == pytest.approx(3.0)
    assert len(fake.token_requests) == 1  # the cooldown did not call the endpoint
    clock.now += 3.5
    assert api.read_resource("Patient", "1")["id"] == "1"
    assert len(fake.token_requests) == 2


def test_token_network_failure_enters_cooldown(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.token_replies.append(httpx.ConnectError("refused"))
    api = make()
    with pytest.raises(NetworkError):
        api.read_resource("Patient", "1")
    with pytest.raises(TokenRefreshCooldownError):
        api.read_resource("Patient", "1")


def _slow_token(fake: FakeMedplum, delay: float, fail: bool = False) -> None:
    async def reply(request: httpx.Request) -> httpx.Response:
        fake.requests.append(request)
        await asyncio.sleep(delay)
        if fail:
            return httpx.Response(401, json={"error": "invalid_client"})
        return fake.issue_token(request)

    original = fake.handle

    def handle(request: httpx.Request) -> object:
        if request.url.path == "/oauth2/token":
            return reply(request)
        return original(request)

    fake.handle = handle  # type: ignore[assignment]


def test_100_concurrent_async_callers_cause_one_token_request(fake: FakeMedplum) -> None:
    _slow_token(fake, 0.05)

    async def main() -> None:
        async with fake.async_client() as client:
            await asyncio.gather(*(client.read_resource("Patient", str(i)) for i in range(100)))

    asyncio.run(main())
    assert len(fake.token_requests) == 1
    assert len(fake.api_requests) == 100
    assert {header(r, "authorization") for r in fake.api_requests} == {"Bearer tok-1"}


def test_concurrent_async_callers_share_the_same_refresh_exception(fake: FakeMedplum) -> None:
    _slow_token(fake, 0.05, fail=True)

    async def main() -> list[BaseException]:
        async with fake.async_client() as client:
            calls = (client.read_resource("Patient", str(i)) for i in range(100))
            results = await asyncio.gather(*calls, return_exceptions=True)
        return [r for r in results if isinstance(r, BaseException)]

    errors = asyncio.run(main())
    assert len(errors) == 100
    assert len(fake.token_requests) == 1
    assert all(e is errors[0] for e in errors)
    assert isinstance(errors[0], AuthenticationError)


def test_100_concurrent_threads_cause_one_token_request(fake: FakeMedplum) -> None:
    original = fake.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            time.sleep(0.1)  # a slow login: every other thread arrives meanwhile
        return original(request)

    fake.handle = handle  # type: ignore[method-assign]
    client = fake.sync_client()
    barrier = threading.Barrier(100)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            client.read_resource("Patient", str(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(fake.token_requests) == 1
    assert len(fake.api_requests) == 100


def test_a_forced_refresh_takes_a_token_from_a_refresh_newer_than_its_ticket() -> None:
    state = TokenState(
        token_url="https://x/oauth2/token",
        client_id="a",
        client_secret="b",
        access_token=None,
        cooldown=1.0,
    )
    ticket = state.generation
    first = state.join(ticket, False, 0.0)
    assert first.lead and first.flight is not None  # the first caller must refresh
    assert state.join(ticket, False, 0.0).flight is first.flight  # others wait on it
    state.finish(first.flight, 200, {}, b'{"access_token": "t", "expires_in": 3600}', 0.0)
    assert state.join(ticket, True, 1.0).token == "t"  # a 401 waiter reuses the new token
    again = state.join(state.generation, True, 2.0)  # "t" itself was refused: refresh
    assert again.lead


def test_token_state_repr_hides_the_token() -> None:
    state = TokenState(
        token_url="https://x/oauth2/token",
        client_id="a",
        client_secret="b",
        access_token="very-secret-token",
        cooldown=1.0,
    )
    assert "very-secret-token" not in repr(state)
