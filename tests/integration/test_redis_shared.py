"""pymedplum.redis against a real redis-server and the local Medplum server.

Tokens: processes with the same credentials log in once per token lifetime (a Redis lock
that expires; a holder that dies releases it by expiry); Redis holds the token with its
expiry, under a digest, never the secret. Budget: when an answer says the quota is spent,
another process waits for the reset instead of collecting its own 429; checking the budget
costs no round trip while nothing is spent. Redis down: each process goes on by itself, with
a WARNING, and no call fails. The async client never blocks its event loop on Redis.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

pytest.importorskip("redis", reason="redis-py is not installed: pip install -e '.[dev]'")
import redis  # noqa: E402
import redis.asyncio  # noqa: E402

from pymedplum import AsyncMedplumClient, MedplumClient, MemoryRateLimitBudget  # noqa: E402
from pymedplum._token_cache import forget_shared_tokens, token_key  # noqa: E402
from pymedplum.hooks import RequestEvent  # noqa: E402
from pymedplum.redis import RedisRateLimitBudget, RedisTokenCache  # noqa: E402
from pymedplum.testing.local_server import LocalMedplumServer  # noqa: E402
from tests.support import shared_clients  # noqa: E402
from tests.support.redis_server import LocalRedisServer, unreachable_redis_url  # noqa: E402

pytestmark = pytest.mark.usefixtures("medplum")


def patients(fhir: Any, count: int) -> list[str]:
    ids = []
    for i in range(count):
        body = {"resourceType": "Patient", "name": [{"family": f"R{i}"}]}
        response = fhir.post("Patient", json=body)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def admin_kw(medplum: LocalMedplumServer, **extra: Any) -> dict[str, Any]:
    creds = medplum.admin_client
    return {
        "base_url": medplum.base_url,
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        **extra,
    }


def fresh_token_count(medplum: LocalMedplumServer) -> None:
    """Forget the test's own logins (the `fhir` fixture's token) in the server's counter."""
    medplum._call("POST", "/__test__/tokens", {"reset_counters": True})


def run_processes(fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(calls), mp_context=spawn) as pool:
        futures = [pool.submit(fn, *args) for args in calls]
        return [f.result(timeout=120) for f in futures]


# ---- tokens -------------------------------------------------------------------------------------


def test_four_processes_with_the_same_credentials_log_in_once(
    medplum: LocalMedplumServer, fhir: Any, redis_url: str
) -> None:
    ids = patients(fhir, 8)
    fresh_token_count(medplum)
    # A slow login: every process asks for a token while the first one is logging in.
    medplum.delay_next(400, count=None, path_prefix="/oauth2/token")
    creds = medplum.admin_client
    start = time.time() + 3.0  # once every process has started
    calls = [
        (medplum.base_url, creds.client_id, creds.client_secret, redis_url, ids[i::4], start,
         "sync" if i % 2 else "async")
        for i in range(4)
    ]  # fmt: skip
    results = run_processes(shared_clients.read_patients, calls)
    assert sorted(i for r in results for i in r["ids"]) == sorted(ids)
    assert len({r["pid"] for r in results}) == 4
    assert medplum.token_requests == 1


def test_without_redis_each_process_logs_in(medplum: LocalMedplumServer, fhir: Any) -> None:
    """The control: the same work without a shared cache makes one login per process."""
    ids = patients(fhir, 4)
    fresh_token_count(medplum)
    creds = medplum.admin_client
    script = (
        "import sys; from pymedplum import MedplumClient\n"
        "with MedplumClient(sys.argv[1], client_id=sys.argv[2], client_secret=sys.argv[3]) as c:\n"
        "    c.read_resource('Patient', sys.argv[4])\n"
    )
    import subprocess
    import sys

    for patient_id in ids[:2]:
        subprocess.run(
            [sys.executable, "-c", script, medplum.base_url, creds.client_id,
             creds.client_secret, patient_id],
            check=True, timeout=120,
        )  # fmt: skip
    assert medplum.token_requests == 2


def test_a_process_that_dies_holding_the_lock_releases_it_by_expiry(
    medplum: LocalMedplumServer, fhir: Any, redis_url: str
) -> None:
    [patient_id] = patients(fhir, 1)
    fresh_token_count(medplum)
    creds = medplum.admin_client
    spawn = multiprocessing.get_context("spawn")
    dying = spawn.Process(
        target=shared_clients.die_holding_the_login_lock,
        args=(medplum.base_url, creds.client_id, creds.client_secret, redis_url, 1.5),
    )
    dying.start()
    dying.join(120)
    assert dying.exitcode == -9  # killed while holding the lock
    tokens = RedisTokenCache(redis_url)
    lock = [k for k in redis.Redis.from_url(redis_url).keys("pymedplum:token:*:lock")]
    assert len(lock) == 1  # still held by the dead process
    with MedplumClient(**admin_kw(medplum, token_cache=tokens)) as client:
        assert client.read_resource("Patient", patient_id)["id"] == patient_id
    assert medplum.token_requests == 1
    assert redis.Redis.from_url(redis_url).keys("pymedplum:token:*:lock") == []


def test_redis_holds_the_token_until_it_expires_under_a_digest_never_the_secret(
    medplum: LocalMedplumServer, fhir: Any, redis_url: str
) -> None:
    [patient_id] = patients(fhir, 1)
    medplum.set_token_lifetime(600)
    creds = medplum.admin_client
    with MedplumClient(**admin_kw(medplum, token_cache=RedisTokenCache(redis_url))) as client:
        client.read_resource("Patient", patient_id)
        token = client.access_token
    store = redis.Redis.from_url(redis_url)
    keys = store.keys("*")
    assert len(keys) == 1
    [key] = keys
    value = store.get(key)
    assert value is not None and token is not None
    everything = key + value
    assert creds.client_secret.encode() not in everything
    assert creds.client_id.encode() not in key and medplum.base_url.encode() not in key
    assert token.encode() in value  # the token itself is what is shared
    assert 590_000 < store.pttl(key) <= 600_000  # kept until it expires


def test_a_token_the_server_refused_is_replaced_by_one_login(
    medplum: LocalMedplumServer, fhir: Any, redis_url: str
) -> None:
    [patient_id] = patients(fhir, 1)
    fresh_token_count(medplum)
    with MedplumClient(**admin_kw(medplum, token_cache=RedisTokenCache(redis_url))) as client:
        client.read_resource("Patient", patient_id)
    medplum.expire_tokens()
    # A new process: the token in Redis is the refused one; it logs in once and shares it.
    forget_shared_tokens()
    with MedplumClient(**admin_kw(medplum, token_cache=RedisTokenCache(redis_url))) as client:
        client.read_resource("Patient", patient_id)
        renewed = client.access_token
    forget_shared_tokens()
    with MedplumClient(**admin_kw(medplum, token_cache=RedisTokenCache(redis_url))) as client:
        client.read_resource("Patient", patient_id)
        assert client.access_token == renewed
    assert medplum.token_requests == 2


@pytest.fixture
def loop_blockers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Blocking calls made while an event loop runs on the calling thread: a sync Redis
    command or a `time.sleep` there would stall every task of that loop."""
    found: list[str] = []
    execute, sleep = redis.Redis.execute_command, time.sleep

    def on_loop() -> bool:
        return asyncio._get_running_loop() is not None

    def spy_execute(self: Any, *args: Any, **kw: Any) -> Any:
        if on_loop():
            found.append(f"redis {args[0]}")
        return execute(self, *args, **kw)

    def spy_sleep(seconds: float) -> None:
        if on_loop():
            found.append("time.sleep")
        sleep(seconds)

    monkeypatch.setattr(redis.Redis, "execute_command", spy_execute)
    monkeypatch.setattr(time, "sleep", spy_sleep)
    return found


@pytest.mark.parametrize("connection", ["url", "redis.asyncio"])
def test_the_async_client_does_not_block_its_event_loop_while_another_process_logs_in(
    medplum: LocalMedplumServer,
    fhir: Any,
    redis_url: str,
    connection: str,
    loop_blockers: list[str],
) -> None:
    [patient_id] = patients(fhir, 1)
    fresh_token_count(medplum)
    client_key = token_key(
        medplum.token_url, medplum.admin_client.client_id, medplum.admin_client.client_secret
    )
    store = redis.Redis.from_url(redis_url)
    target: Any = redis_url if connection == "url" else redis.asyncio.Redis.from_url(redis_url)
    tokens = RedisTokenCache(target)
    # Another process holds the login lock for a while (then dies: it expires).
    store.set(tokens._keys(client_key)[1], "another-process", px=1000)
    store.config_resetstat()

    async def main() -> None:
        async with AsyncMedplumClient(**admin_kw(medplum, token_cache=tokens)) as client:
            await client.read_resource("Patient", patient_id)

    asyncio.run(main())
    assert loop_blockers == []
    assert int(store.info("commandstats")["cmdstat_get"]["calls"]) > 1  # it waited, looking
    assert medplum.token_requests == 1


@pytest.mark.parametrize("connection", ["url", "redis.asyncio"])
def test_the_async_clients_budget_does_not_block_its_event_loop(
    medplum: LocalMedplumServer,
    fhir: Any,
    redis_url: str,
    connection: str,
    loop_blockers: list[str],
) -> None:
    ids = patients(fhir, 4)
    medplum.set_fhir_quota(3, window_seconds=2)

    def budget() -> RedisRateLimitBudget:
        target = redis_url if connection == "url" else redis.asyncio.Redis.from_url(redis_url)
        return RedisRateLimitBudget(target)

    first, second = budget(), budget()
    exhaust(medplum, ids[:3], first, "async")
    [event] = exhaust(medplum, ids[3:], second, "async")
    first.close()
    second.close()
    assert loop_blockers == []
    assert event.attempts[0].rate_limit_wait_seconds  # it read Redis, and waited


def test_redis_down_each_process_logs_in_by_itself_with_a_warning(
    medplum: LocalMedplumServer, fhir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    [patient_id] = patients(fhir, 1)
    fresh_token_count(medplum)
    tokens = RedisTokenCache(unreachable_redis_url(), timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="pymedplum"):
        with MedplumClient(**admin_kw(medplum, token_cache=tokens)) as client:
            assert client.read_resource("Patient", patient_id)["id"] == patient_id
        with MedplumClient(**admin_kw(medplum, token_cache=tokens)) as client:
            assert client.read_resource("Patient", patient_id)["id"] == patient_id
    assert medplum.token_requests == 1  # this process's own cache still works
    warnings = [r for r in caplog.records if "Redis cannot be reached" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


# ---- the RateLimit budget ------------------------------------------------------------------------


def exhaust(
    medplum: LocalMedplumServer, ids: list[str], budget: Any, flavour: str
) -> list[RequestEvent]:
    """Read each Patient with a fresh client of `flavour` sharing `budget`; the events."""
    events: list[RequestEvent] = []
    kw = admin_kw(medplum, rate_limit_budget=budget, on_request_complete=events.append)
    if flavour == "sync":
        for patient_id in ids:
            with MedplumClient(**kw) as client:
                client.read_resource("Patient", patient_id)
    else:

        async def main() -> None:
            for patient_id in ids:
                async with AsyncMedplumClient(**kw) as client:
                    await client.read_resource("Patient", patient_id)

        asyncio.run(main())
    return events


@pytest.fixture
def budgets(redis_url: str) -> Iterator[Callable[..., RedisRateLimitBudget]]:
    made: list[RedisRateLimitBudget] = []

    def make(**kw: Any) -> RedisRateLimitBudget:
        budget = RedisRateLimitBudget(redis_url, **kw)
        made.append(budget)
        return budget

    yield make
    for budget in made:
        budget.close()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_quota_spent_in_one_process_makes_another_wait_for_the_reset_without_a_429(
    medplum: LocalMedplumServer,
    fhir: Any,
    budgets: Callable[..., RedisRateLimitBudget],
    flavour: str,
) -> None:
    ids = patients(fhir, 4)
    medplum.set_fhir_quota(3, window_seconds=2)
    first, second = budgets(), budgets()  # two processes' budgets: nothing in common but Redis
    exhaust(medplum, ids[:3], first, flavour)  # the third answer says r=0
    [event] = exhaust(medplum, ids[3:], second, flavour)
    statuses = [r["status"] for r in medplum.fhir_requests()]
    assert statuses.count(429) == 0
    [attempt] = event.attempts
    assert attempt.status_code == 200
    assert attempt.rate_limit_wait_seconds is not None and attempt.rate_limit_wait_seconds > 0


def test_without_a_shared_budget_the_other_process_collects_a_429(
    medplum: LocalMedplumServer, fhir: Any
) -> None:
    """The control of the test above: budgets that share nothing."""
    ids = patients(fhir, 4)
    medplum.set_fhir_quota(3, window_seconds=2)
    exhaust(medplum, ids[:3], MemoryRateLimitBudget(), "sync")
    exhaust(medplum, ids[3:], MemoryRateLimitBudget(), "sync")
    assert [r["status"] for r in medplum.fhir_requests()].count(429) == 1


def commandstats(redis_url: str) -> dict[str, int]:
    info = redis.Redis.from_url(redis_url).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


@pytest.mark.parametrize(
    ("options", "reads"),
    [({}, 2), ({"listen": False, "max_age": 3600.0}, 2), ({"listen": False, "max_age": 0.0}, 41)],
    ids=["listening", "not listening, long max_age", "control: no local view"],
)
def test_checking_an_unspent_budget_costs_no_round_trip_per_request(
    medplum: LocalMedplumServer,
    fhir: Any,
    redis_url: str,
    budgets: Callable[..., RedisRateLimitBudget],
    options: dict[str, Any],
    reads: int,
) -> None:
    """40 reads by fresh clients: the budget is read from Redis once per scope (the FHIR
    calls' and the login's), not once per request."""
    ids = patients(fhir, 40)
    budget = budgets(**options)
    if options.get("listen", True):
        deadline = time.monotonic() + 30
        while not budget.listening and time.monotonic() < deadline:
            budget.spent_until("warm-up", time.time())  # starts the listener
            time.sleep(0.01)
        assert budget.listening
    redis.Redis.from_url(redis_url).config_resetstat()
    exhaust(medplum, ids, budget, "sync")
    stats = commandstats(redis_url)
    assert stats.get("pttl", 0) == reads
    assert stats.get("eval", 0) == 0  # nothing was spent: nothing recorded


def test_a_listening_process_hears_of_a_spend_without_asking(
    redis_url: str, budgets: Callable[..., RedisRateLimitBudget]
) -> None:
    recorder, listener = budgets(), budgets()
    deadline = time.monotonic() + 30
    while not listener.listening and time.monotonic() < deadline:
        listener.spent_until("fhir:x", time.time())  # starts listening
        time.sleep(0.01)
    now = time.time()
    assert listener.spent_until("fhir:x", now) is None  # read once since listening
    redis.Redis.from_url(redis_url).config_resetstat()
    recorder.record_spent("fhir:x", now + 5, now)
    deadline = time.monotonic() + 30
    while listener.spent_until("fhir:x", time.time()) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    until = listener.spent_until("fhir:x", time.time())
    assert until is not None and until > time.time()
    stats = commandstats(redis_url)
    assert stats.get("eval", 0) == 1  # the record (it runs one PTTL itself)
    assert stats.get("pttl", 0) == 1  # the listener heard it: it never asked


def test_redis_down_the_budget_works_in_this_process_with_a_warning(
    medplum: LocalMedplumServer, fhir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ids = patients(fhir, 4)
    medplum.set_fhir_quota(3, window_seconds=2)
    budget = RedisRateLimitBudget(unreachable_redis_url(), timeout=0.5, listen=False)
    with caplog.at_level(logging.WARNING, logger="pymedplum"):
        events = exhaust(medplum, ids, budget, "sync")
    assert [a.status_code for e in events for a in e.attempts] == [200, 200, 200, 200]
    assert events[-1].attempts[0].rate_limit_wait_seconds  # waited on what it saw itself
    warnings = [r for r in caplog.records if "Redis cannot be reached" in r.getMessage()]
    assert len(warnings) == 1


def test_redis_going_down_mid_run_fails_no_call_and_the_channel_comes_back(
    medplum: LocalMedplumServer,
    fhir: Any,
    redis_server: LocalRedisServer,
    redis_url: str,
    budgets: Callable[..., RedisRateLimitBudget],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ids = patients(fhir, 3)
    budget = budgets()
    tokens = RedisTokenCache(redis_url, timeout=0.5)
    kw = admin_kw(medplum, token_cache=tokens, rate_limit_budget=budget)
    with MedplumClient(**kw) as client:
        client.read_resource("Patient", ids[0])
    deadline = time.monotonic() + 30
    while not budget.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    assert budget.listening
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="pymedplum"):
        deadline = time.monotonic() + 30
        while budget.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not budget.listening
        medplum.expire_tokens()  # a new login is needed while Redis is down
        with MedplumClient(**kw) as client:
            assert client.read_resource("Patient", ids[1])["id"] == ids[1]
    assert any("Redis cannot be reached" in r.getMessage() for r in caplog.records)
    redis_server.start()
    deadline = time.monotonic() + 60
    while not budget.listening and time.monotonic() < deadline:
        time.sleep(0.05)
    assert budget.listening  # heard again without anyone restarting it
    with MedplumClient(**kw) as client:
        assert client.read_resource("Patient", ids[2])["id"] == ids[2]
