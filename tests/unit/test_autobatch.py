"""Auto-batching fault paths against a scripted Medplum (MockTransport): a batch failing as a
whole, retried as a whole, malformed answers, entries a direct read would retry, cancelled
callers. End to end: tests/integration/test_client_auto_batch.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from pymedplum import (
    AsyncMedplumClient,
    MedplumError,
    NetworkError,
    NotFoundError,
    PreparedRequest,
    RequestEvent,
    ServerError,
    _json,
)
from pymedplum._autobatch import MAX_WINDOW_MS, batch_call, read_entries

from .conftest import FakeMedplum

BATCH_PATH = "/fhir/R4/"
Scenario = Callable[[AsyncMedplumClient], Any]


@pytest.fixture
def run(fake: FakeMedplum, sleeps: list[float]) -> Iterator[Callable[..., Any]]:
    """`run(scenario, **client_kw)`: `scenario(client)` on an auto-batching async client."""
    loop = asyncio.new_event_loop()

    def runner(scenario: Scenario, **kw: Any) -> Any:
        kw.setdefault("auto_batch_ms", 10)

        async def main() -> Any:
            async with fake.async_client(**kw) as client:
                return await scenario(client)

        return loop.run_until_complete(main())

    yield runner
    loop.close()


def batch_answer(
    statuses: dict[str, int] | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    """A batch-response answering each GET entry: the resource, or the status given for its
    URL with a Medplum-style outcome."""

    def reply(request: httpx.Request) -> httpx.Response:
        entries = []
        for entry in _json.loads(request.content)["entry"]:
            url = entry["request"]["url"]
            status = (statuses or {}).get(url, 200)
            if status == 200:
                rtype, rid = url.split("/")[:2]
                entries.append(
                    {
                        "resource": {"resourceType": rtype, "id": rid},
                        "response": {"status": "200 OK"},
                    }
                )
            else:
                outcome = {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "processing", "diagnostics": url}],
                }
                entries.append({"response": {"status": str(status), "outcome": outcome}})
        body = {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
        return httpx.Response(200, content=_json.dumps(body))

    return reply


def reads(*ids: str) -> Scenario:
    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        return await asyncio.gather(
            *(client.read_resource("Patient", i) for i in ids), return_exceptions=True
        )

    return scenario


def posts(fake: FakeMedplum) -> list[httpx.Request]:
    return [r for r in fake.api_requests if r.method == "POST"]


def gets(fake: FakeMedplum) -> list[str]:
    return [r.url.path for r in fake.api_requests if r.method == "GET"]


# ---------------------------------------------------------------- the batch as a whole


def test_a_batch_lost_on_the_wire_fails_every_read_with_its_error(
    fake: FakeMedplum, run: Callable[..., Any], sleeps: list[float]
) -> None:
    lost = httpx.ReadError("connection reset")
    fake.script("POST", BATCH_PATH, *[lost] * 10)
    events: list[RequestEvent] = []
    results = run(reads("a", "b", "c"), on_request_complete=events.append)
    assert all(isinstance(r, NetworkError) for r in results)
    assert len({id(r) for r in results}) == 1  # the batch's one error, seen by each caller
    assert len(posts(fake)) == len(sleeps) + 1  # retried as a whole, each time one POST
    assert gets(fake) == []
    assert len(events) == 3 and {e.batch_size for e in events} == {3}
    assert all(isinstance(e.final_exception, NetworkError) for e in events)
    assert {len(e.attempts) for e in events} == {len(sleeps) + 1}


def test_a_batch_answered_500_fails_every_read(fake: FakeMedplum, run: Callable[..., Any]) -> None:
    fake.script("POST", BATCH_PATH, httpx.Response(500, json={"resourceType": "OperationOutcome"}))
    results = run(reads("a", "b"))
    assert [type(r) for r in results] == [ServerError, ServerError]
    assert len(posts(fake)) == 1  # a 500 is not retried


def test_a_429_on_the_batch_is_retried_as_a_whole(
    fake: FakeMedplum, run: Callable[..., Any], sleeps: list[float]
) -> None:
    throttled = httpx.Response(429, headers={"Retry-After": "2"})
    fake.script("POST", BATCH_PATH, throttled, batch_answer())
    results = run(reads("a", "b", "c"))
    assert [r["id"] for r in results] == ["a", "b", "c"]
    first, second = posts(fake)
    assert first.content == second.content  # the same batch, replayed
    assert sleeps == [2.0]


def test_a_503_on_the_batch_is_retried_as_a_whole_after_its_retry_after(
    fake: FakeMedplum, run: Callable[..., Any], sleeps: list[float]
) -> None:
    # A batch of reads is replay-safe, so a 503's delay is honoured as a direct read's.
    unavailable = httpx.Response(503, headers={"Retry-After": "7"})
    fake.script("POST", BATCH_PATH, unavailable, batch_answer())
    results = run(reads("a", "b", "c"))
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert len(posts(fake)) == 2 and gets(fake) == []
    assert sleeps == [7.0]


def test_a_malformed_batch_response_fails_every_read_rather_than_guess(
    fake: FakeMedplum, run: Callable[..., Any]
) -> None:
    short = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"response": {"status": "200"}}],
    }
    fake.script("POST", BATCH_PATH, httpx.Response(200, json=short))
    results = run(reads("a", "b"))
    assert all(type(r) is MedplumError for r in results)
    assert "2 entries" in str(results[0])


# ---------------------------------------------------------------- entries


def test_each_entry_maps_to_the_error_a_direct_read_raises(
    fake: FakeMedplum, run: Callable[..., Any]
) -> None:
    fake.script("POST", BATCH_PATH, batch_answer({"Patient/b": 404, "Patient/c": 403}))
    a, b, c = run(reads("a", "b", "c"))
    assert a["id"] == "a"
    assert type(b) is NotFoundError and b.outcome["issue"][0]["diagnostics"] == "Patient/b"
    from pymedplum import AuthorizationError

    assert type(c) is AuthorizationError and c.status_code == 403


def test_entries_a_direct_read_would_retry_are_read_again_on_their_own(
    fake: FakeMedplum, run: Callable[..., Any]
) -> None:
    # Medplum answers 429 for the rest of a batch when the FHIR quota runs out mid-batch.
    fake.script("POST", BATCH_PATH, batch_answer({"Patient/b": 429, "Patient/c": 503}))
    results = run(reads("a", "b", "c"))
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert sorted(gets(fake)) == ["/fhir/R4/Patient/b", "/fhir/R4/Patient/c"]


def test_entries_answered_502_or_504_are_read_again_on_their_own(
    fake: FakeMedplum, run: Callable[..., Any]
) -> None:
    fake.script("POST", BATCH_PATH, batch_answer({"Patient/b": 502, "Patient/c": 504}))
    results = run(reads("a", "b", "c"))
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert sorted(gets(fake)) == ["/fhir/R4/Patient/b", "/fhir/R4/Patient/c"]


def test_a_200_entry_without_a_resource_is_an_error_for_that_read_only(
    fake: FakeMedplum, run: Callable[..., Any]
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        answer = batch_answer()(request)
        body = _json.loads(answer.content)
        del body["entry"][1]["resource"]
        return httpx.Response(200, content=_json.dumps(body))

    fake.script("POST", BATCH_PATH, reply)
    a, b = run(reads("a", "b"))
    assert a["id"] == "a" and type(b) is MedplumError


# ---------------------------------------------------------------- what goes out


def test_the_batch_request_is_what_before_request_sees(
    fake: FakeMedplum, run: Callable[..., Any]
) -> None:
    fake.script("POST", BATCH_PATH, batch_answer())
    seen: list[PreparedRequest] = []

    async def scenario(client: AsyncMedplumClient) -> Any:
        return await asyncio.gather(
            client.read_resource("Patient", "a"), client.vread_resource("Patient", "a", "7")
        )

    run(scenario, before_request=seen.append)
    (request,) = seen
    assert (request.method, request.url) == ("POST", "https://medplum.test/fhir/R4/")
    assert request.json_body == {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/a"}},
            {"request": {"method": "GET", "url": "Patient/a/_history/7"}},
        ],
    }


def test_a_caller_cancelled_while_waiting_leaves_the_batch_and_reports_it(
    fake: FakeMedplum, run: Callable[..., Any]
) -> None:
    fake.script("POST", BATCH_PATH, batch_answer())
    events: list[RequestEvent] = []

    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        tasks = [asyncio.ensure_future(client.read_resource("Patient", i)) for i in "abc"]
        await asyncio.sleep(0)  # all three gathered
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    a, b, c = run(scenario, on_request_complete=events.append)
    assert (a["id"], c["id"]) == ("a", "c") and isinstance(b, asyncio.CancelledError)
    (post,) = posts(fake)
    assert [e["request"]["url"] for e in _json.loads(post.content)["entry"]] == [
        "Patient/a",
        "Patient/c",
    ]
    cancelled = [e for e in events if isinstance(e.final_exception, asyncio.CancelledError)]
    assert [e.resource_id for e in cancelled] == ["b"] and cancelled[0].attempts == ()


@pytest.mark.parametrize("bad", [-1, MAX_WINDOW_MS + 1, float("nan"), float("inf")])
def test_a_window_out_of_range_is_refused(fake: FakeMedplum, bad: float) -> None:
    with pytest.raises(ValueError, match="auto_batch_ms"):
        fake.async_client(auto_batch_ms=bad)


def test_a_window_that_is_not_a_number_is_refused(fake: FakeMedplum) -> None:
    with pytest.raises(TypeError, match="auto_batch_ms"):
        fake.async_client(auto_batch_ms="10")


def test_zero_or_none_is_off(fake: FakeMedplum, run: Callable[..., Any]) -> None:
    for off in (0, None):
        run(reads("a", "b"), auto_batch_ms=off)
    assert posts(fake) == [] and len(gets(fake)) == 4


def test_read_entries_is_pure_and_pairs_entries_with_reads_in_order(fake: FakeMedplum) -> None:
    client = fake.async_client()
    calls = [client._build_read("Patient", (i,), None) for i in ("x", "y")]
    call = batch_call(client, calls)
    assert call.replay_safe and call.method == "POST"
    answer = batch_answer({"Patient/y": 410})(httpx.Request("POST", call.url, content=call.content))
    x, y = read_entries(client, calls, _json.loads(answer.content))
    assert x.resource == {"resourceType": "Patient", "id": "x"} and x.status == 200
    assert y.status == 410 and type(y.error).__name__ == "GoneError"
