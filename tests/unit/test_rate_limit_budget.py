"""The RateLimit budget: once an answer says Medplum's quota is spent, clients sharing the
budget wait for the reset before sending, capped like any retry wait, and the wait is in the
audit event. Plus the no-I/O decisions behind it and behind the cross-process token lock.

Sleeps advance a fake clock here, so "waited 30 s, then sent" is what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pymedplum import (
    MAX_RETRY_DELAY_SECONDS,
    MemoryRateLimitBudget,
    RateLimitBudget,
    RateLimitError,
    _backend,
)
from pymedplum._budget import SpentView, budget_scope, pause_seconds, spent_after
from pymedplum._core import BaseClient
from pymedplum._token_cache import (
    LOCK,
    READ,
    CachedToken,
    acquire_steps,
    decode_token,
    encode_token,
)
from pymedplum.hooks import RequestEvent

from .conftest import BASE, Driver, FakeMedplum

SPENT = '"requests";r=59920;t=60, "fhirInteractions";r=0;t=30'
LEFT = '"requests";r=59920;t=60, "fhirInteractions";r=280;t=60'


class Clock:
    """Unix time that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()

    async def async_sleep(seconds: float) -> None:
        clock.sleep(seconds)

    monkeypatch.setattr(BaseClient, "_clock", staticmethod(lambda: clock.now))
    monkeypatch.setattr(_backend, "sync_sleep", clock.sleep)
    monkeypatch.setattr(_backend, "async_sleep", async_sleep)
    return clock


@pytest.fixture(params=["sync", "async"])
def drive(
    request: pytest.FixtureRequest, fake: FakeMedplum, clock: Clock
) -> Iterator[Callable[..., Driver]]:
    made: list[Driver] = []

    def factory(**kw: Any) -> Driver:
        client = fake.sync_client(**kw) if request.param == "sync" else fake.async_client(**kw)
        made.append(Driver(client))
        return made[-1]

    yield factory
    for driver in made:
        driver.close()


def patient(ratelimit: str, status: int = 200) -> httpx.Response:
    body = {"resourceType": "Patient", "id": "1"}
    if status == 429:
        issue = {"severity": "error", "code": "throttled"}
        body = {"resourceType": "OperationOutcome", "issue": [issue]}
    return httpx.Response(status, json=body, headers={"RateLimit": ratelimit})


# ---- the client ---------------------------------------------------------------------------------


def test_after_an_answer_with_r_0_another_client_waits_for_the_reset_before_sending(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    budget = MemoryRateLimitBudget()
    events: list[RequestEvent] = []
    fake.script("GET", "/fhir/R4/Patient/1", patient(SPENT))
    drive(rate_limit_budget=budget).read_resource("Patient", "1")
    sent_at_before = len(fake.api_requests)
    drive(rate_limit_budget=budget, on_request_complete=events.append).read_resource("Patient", "2")
    assert clock.sleeps == [30.0]  # `"fhirInteractions";r=0;t=30`, before sending
    assert len(fake.api_requests) == sent_at_before + 1  # then one request, no 429
    [attempt] = events[0].attempts
    assert attempt.rate_limit_wait_seconds == 30.0
    assert attempt._as_dict(phi=False)["rate_limit_wait_seconds"] == 30.0


def test_without_a_budget_nothing_waits_before_sending(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", patient(SPENT))
    drive().read_resource("Patient", "1")
    drive().read_resource("Patient", "2")
    assert clock.sleeps == []


def test_clients_with_another_budget_do_not_wait(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", patient(SPENT))
    drive(rate_limit_budget=MemoryRateLimitBudget()).read_resource("Patient", "1")
    drive(rate_limit_budget=MemoryRateLimitBudget()).read_resource("Patient", "2")
    assert clock.sleeps == []


def test_an_answer_with_units_left_spends_nothing(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    budget = MemoryRateLimitBudget()
    fake.script("GET", "/fhir/R4/Patient/1", patient(LEFT))
    drive(rate_limit_budget=budget).read_resource("Patient", "1")
    drive(rate_limit_budget=budget).read_resource("Patient", "2")
    assert clock.sleeps == []


def test_with_a_reserve_a_low_count_already_counts_as_spent(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    budget = MemoryRateLimitBudget(reserve=3)
    fake.script("GET", "/fhir/R4/Patient/1", patient('"fhirInteractions";r=3;t=12'))
    drive(rate_limit_budget=budget).read_resource("Patient", "1")
    drive(rate_limit_budget=budget).read_resource("Patient", "2")
    assert clock.sleeps == [12.0]


def test_a_429_is_waited_out_once_not_again_by_the_budget(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    budget = MemoryRateLimitBudget()
    events: list[RequestEvent] = []
    fake.script("GET", "/fhir/R4/Patient/1", patient(SPENT, 429))
    client = drive(rate_limit_budget=budget, on_request_complete=events.append)
    client.read_resource("Patient", "1")
    assert clock.sleeps == [30.0]  # the retry's wait; the budget then says go
    assert [a.rate_limit_wait_seconds for a in events[0].attempts] == [None, None]
    drive(rate_limit_budget=budget).read_resource("Patient", "2")
    assert clock.sleeps == [30.0]


def test_the_wait_is_capped_like_any_retry_wait(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    budget = MemoryRateLimitBudget()
    fake.script("GET", "/fhir/R4/Patient/1", patient('"fhirInteractions";r=0;t=900'))
    drive(rate_limit_budget=budget).read_resource("Patient", "1")
    drive(rate_limit_budget=budget).read_resource("Patient", "2")
    assert clock.sleeps == [MAX_RETRY_DELAY_SECONDS]


def test_a_token_endpoint_429_makes_other_logins_on_that_server_wait(
    drive: Callable[..., Driver], fake: FakeMedplum, clock: Clock
) -> None:
    """Medplum limits /oauth2 per IP: the budget's login scope is the base URL's, whatever
    the credentials."""
    budget = MemoryRateLimitBudget()
    limited = httpx.Response(429, headers={"RateLimit": '"requests";r=0;t=55'})
    fake.token_replies.extend([limited] * 4)
    with pytest.raises(RateLimitError):
        drive(rate_limit_budget=budget).read_resource("Patient", "1")
    assert clock.sleeps == [55.0, 55.0, 55.0]
    other = drive(rate_limit_budget=budget, client_id="other", client_secret="other-secret")
    other.read_resource("Patient", "2")
    assert clock.sleeps == [55.0, 55.0, 55.0, 55.0]  # waited before its own login
    assert len(fake.token_requests) == 5


def test_a_budget_must_be_a_rate_limit_budget(fake: FakeMedplum) -> None:
    with pytest.raises(TypeError, match="rate_limit_budget"):
        fake.sync_client(rate_limit_budget=object())
    assert isinstance(MemoryRateLimitBudget(), RateLimitBudget)
    with pytest.raises(ValueError, match="reserve"):
        MemoryRateLimitBudget(reserve=-1)


# ---- no-I/O decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "reserve", "expected"),
    [
        (200, {"ratelimit": SPENT}, 0, 30.0),
        (200, {"ratelimit": LEFT}, 0, None),
        (200, {}, 0, None),
        (200, {"ratelimit": '"a";r=0;t=5, "b";r=0;t=12, "c";r=1;t=99'}, 0, 12.0),
        (200, {"ratelimit": '"fhirInteractions";r=2;t=7'}, 2, 7.0),
        (200, {"ratelimit": '"fhirInteractions";r=3;t=7'}, 2, None),
        (429, {"ratelimit": SPENT}, 0, 30.0),
        (429, {"retry-after": "4", "ratelimit": SPENT}, 0, 4.0),
        (429, {}, 0, None),
        (503, {"ratelimit": LEFT}, 0, None),
    ],
)
def test_spent_after_reads_the_answer(
    status: int, headers: dict[str, str], reserve: int, expected: float | None
) -> None:
    now = 1000.0
    until = spent_after(status, headers.get("ratelimit"), httpx.Headers(headers), now, reserve)
    assert (None if until is None else until - now) == expected


def test_pause_seconds_waits_until_the_reset_capped() -> None:
    assert pause_seconds(None, 10.0) == 0.0
    assert pause_seconds(9.0, 10.0) == 0.0
    assert pause_seconds(40.0, 10.0) == 30.0
    assert pause_seconds(10_000.0, 10.0) == MAX_RETRY_DELAY_SECONDS


def test_budget_scopes_name_neither_url_nor_client_id() -> None:
    fhir_a = budget_scope("fhir", BASE, "client-a")
    assert fhir_a != budget_scope("fhir", BASE, "client-b")
    assert budget_scope("auth", BASE, "client-a") == budget_scope("auth", BASE, "client-b")
    assert "client-a" not in fhir_a and "medplum" not in fhir_a


def test_a_spent_view_needs_no_read_while_listening_or_young() -> None:
    view = SpentView(max_age=0.5)
    assert view.known("s", 10.0) == (None, False)  # never read
    view.read("s", None, 10.0)
    assert view.known("s", 10.4) == (None, True)
    assert view.known("s", 10.6) == (None, False)  # too old
    view.listening = True
    assert view.known("s", 99.0) == (None, True)
    view.forget_reads()
    assert view.known("s", 99.0) == (None, False)
    view.note("s", 120.0)
    assert view.known("s", 100.0) == (120.0, True)  # spent: nothing to ask


def drive_steps(
    steps: Any, replies: dict[str, list[Any]]
) -> tuple[tuple[CachedToken | None, bool], list[Any]]:
    taken: list[Any] = []
    step = next(steps)
    try:
        while True:
            taken.append(step)
            step = steps.send(replies[step].pop(0) if step in (READ, LOCK) else None)
    except StopIteration as stop:
        return stop.value, taken


def stored(token: str, refresh_at: float = 2000.0) -> bytes:
    return encode_token(CachedToken(token, refresh_at + 60, refresh_at))


def test_acquire_takes_a_usable_token_from_the_store() -> None:
    result, taken = drive_steps(acquire_steps(None, lambda: 1000.0, 60), {READ: [stored("t1")]})
    assert result == (CachedToken("t1", 2060.0, 2000.0), False)
    assert taken == [READ]


@pytest.mark.parametrize(
    ("refused", "value"),
    [("t1", stored("t1")), (None, stored("t1", refresh_at=999.0)), (None, None), (None, b"{")],
    ids=["the refused token", "a token due for refresh", "nothing", "unreadable"],
)
def test_acquire_takes_the_lock_when_the_store_has_nothing_better(
    refused: str | None, value: bytes | None
) -> None:
    result, taken = drive_steps(
        acquire_steps(refused, lambda: 1000.0, 60), {READ: [value], LOCK: [True]}
    )
    assert result == (None, True) and taken == [READ, LOCK]


def test_acquire_waits_while_another_process_logs_in_then_takes_its_token() -> None:
    result, taken = drive_steps(
        acquire_steps(None, lambda: 1000.0, 60),
        {READ: [None, None, stored("t2")], LOCK: [False, False]},
    )
    assert result[0] is not None and result[0].access_token == "t2"
    assert taken[:3] == [READ, LOCK, 0.01] and taken[-1] == READ


def test_acquire_gives_up_after_its_patience() -> None:
    times = iter([0.0, 0.0, 11.0])  # started; first look; second look
    result, taken = drive_steps(
        acquire_steps(None, lambda: next(times), 10), {READ: [None, None], LOCK: [False, False]}
    )
    assert result == (None, False)
    assert taken == [READ, LOCK, 0.01, READ, LOCK]


def test_a_stored_token_is_its_token_and_times_only() -> None:
    raw = encode_token(CachedToken("secret-token", 2060.0, 2000.0))
    assert decode_token(raw) == CachedToken("secret-token", 2060.0, 2000.0)
    assert set(__import__("json").loads(raw)) == {"access_token", "expires_at", "refresh_at"}
    assert decode_token(b'{"access_token": 5}') is None
    assert decode_token(b'{"access_token": "x", "expires_at": "soon"}') is None
