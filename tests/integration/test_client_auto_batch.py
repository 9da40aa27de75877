"""Auto-batching of reads (`AsyncMedplumClient(auto_batch_ms=...)`) against the local Medplum
server: round trips counted in its request log. Fault paths: tests/unit/test_autobatch.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from pymedplum import (
    AsyncMedplumClient,
    GoneError,
    MedplumClient,
    NotFoundError,
    PreparedRequest,
    RequestEvent,
)
from pymedplum._autobatch import MAX_ENTRIES
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import new_client

Run = Callable[[Callable[[AsyncMedplumClient], Awaitable[Any]]], Any]


@pytest.fixture
def batching(medplum: LocalMedplumServer) -> Iterator[Callable[..., Run]]:
    """`batching(**client_kw)(scenario)`: run `scenario(client)` on an auto-batching async
    client (10 ms window unless given), closed afterwards."""
    loops: list[asyncio.AbstractEventLoop] = []

    def factory(**kw: Any) -> Run:
        kw.setdefault("auto_batch_ms", 10)

        def run(scenario: Callable[[AsyncMedplumClient], Awaitable[Any]]) -> Any:
            async def main() -> Any:
                client = new_client(medplum, "async", **kw)
                assert isinstance(client, AsyncMedplumClient)
                async with client:
                    return await scenario(client)

            loop = asyncio.new_event_loop()
            loops.append(loop)
            return loop.run_until_complete(main())

        return run

    yield factory
    for loop in loops:
        loop.close()


def create_patients(medplum: LocalMedplumServer, n: int) -> list[str]:
    """`n` Patients created with one batch (the seed has none); their ids."""
    client = new_client(medplum, "sync")
    assert isinstance(client, MedplumClient)
    with client:
        entry = {
            "request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient"},
        }
        answer = client.execute_batch(
            {"resourceType": "Bundle", "type": "batch", "entry": [entry] * n}
        )
    ids = [e["response"]["location"].split("/")[1] for e in answer["entry"]]
    medplum.clear_requests()
    return ids


def sent(medplum: LocalMedplumServer) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in medplum.fhir_requests()]


BATCH = ("POST", "/fhir/R4/")


def test_concurrent_reads_go_out_as_one_batch_and_each_caller_gets_its_own(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    ids = create_patients(medplum, 20)

    async def scenario(client: AsyncMedplumClient) -> list[dict[str, Any]]:
        return await asyncio.gather(*(client.read_resource("Patient", i) for i in ids))

    read = batching()(scenario)
    assert [r["id"] for r in read] == ids
    assert sent(medplum) == [BATCH]


def test_each_caller_gets_its_own_error_with_the_entrys_outcome(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    live, deleted = create_patients(medplum, 2)

    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        await client.delete_resource("Patient", deleted)
        medplum.clear_requests()
        return await asyncio.gather(
            client.read_resource("Patient", live),
            client.read_resource("Patient", deleted),
            client.read_resource("Patient", "no-such-patient"),
            return_exceptions=True,
        )

    found, gone, missing = batching()(scenario)
    assert found["id"] == live
    assert type(gone) is GoneError and gone.outcome["issue"][0]["code"] == "deleted"
    assert type(missing) is NotFoundError and missing.outcome["issue"][0]["code"] == "not-found"
    assert gone.path_template == "/fhir/R4/Patient/{id}" and gone.method == "GET"
    assert sent(medplum) == [BATCH]


def test_a_different_on_behalf_of_goes_in_a_different_batch(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    ids = create_patients(medplum, 4)
    alice = medplum.practitioners["alice"].membership
    bob = medplum.practitioners["bob"].membership

    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        async def as_member(member: str, pid: str) -> Any:
            async with client.on_behalf_of(member):
                return await client.read_resource("Patient", pid)

        return await asyncio.gather(
            as_member(alice, ids[0]),
            as_member(bob, ids[1]),
            client.read_resource("Patient", ids[2], on_behalf_of=alice),
            client.read_resource("Patient", ids[3], on_behalf_of=bob),
        )

    read = batching()(scenario)
    assert [r["id"] for r in read] == ids
    posts = medplum.fhir_requests()
    assert [(r["method"], r["path"]) for r in posts] == [BATCH, BATCH]
    assert sorted(r["on_behalf_of"] for r in posts) == sorted([alice, bob])


def test_a_lone_read_is_a_plain_get(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    (pid,) = create_patients(medplum, 1)

    async def scenario(client: AsyncMedplumClient) -> Any:
        return await client.read_resource("Patient", pid)

    assert batching()(scenario)["id"] == pid
    assert sent(medplum) == [("GET", f"/fhir/R4/Patient/{pid}")]


def test_more_reads_than_a_batch_holds_are_split(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    ids = create_patients(medplum, 2 * MAX_ENTRIES + 50)
    batch_sizes: list[int] = []

    def count_entries(request: PreparedRequest) -> None:
        if request.method == "POST":
            batch_sizes.append(len(request.json_body["entry"]))

    async def scenario(client: AsyncMedplumClient) -> list[dict[str, Any]]:
        return await asyncio.gather(*(client.read_resource("Patient", i) for i in ids))

    read = batching(before_request=count_entries)(scenario)
    assert [r["id"] for r in read] == ids
    assert sent(medplum) == [BATCH] * 3
    assert sorted(batch_sizes) == [50, MAX_ENTRIES, MAX_ENTRIES]


def test_vreads_are_batched_searches_and_reads_with_headers_are_not(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    a, b = create_patients(medplum, 2)

    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        version_id = (await client.read_resource("Patient", a))["meta"]["versionId"]
        medplum.clear_requests()
        return await asyncio.gather(
            client.vread_resource("Patient", a, version_id),
            client.read_resource("Patient", b),
            client.read_resource("Patient", b, headers={"X-Medplum": "extended"}),
            client.search_resources("Patient", {"_id": a}),
        )

    version, read, extended, bundle = batching()(scenario)
    assert version["id"] == a and read["id"] == b and extended["id"] == b
    assert bundle["entry"][0]["resource"]["id"] == a
    assert sorted(sent(medplum)) == sorted(
        [BATCH, ("GET", f"/fhir/R4/Patient/{b}"), ("GET", "/fhir/R4/Patient")]
    )


def test_each_batched_read_fires_its_own_audit_event_and_the_batch_none(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    ids = create_patients(medplum, 3)
    alice = medplum.practitioners["alice"].membership
    events: list[RequestEvent] = []

    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        return await asyncio.gather(
            *(client.read_resource("Patient", i, on_behalf_of=alice) for i in ids),
            client.read_resource("Patient", "missing", on_behalf_of=alice),
            return_exceptions=True,
        )

    batching(on_request_complete=events.append)(scenario)
    assert sent(medplum) == [BATCH]
    assert len(events) == 4  # one per read; none for the batch request itself
    assert {e.action for e in events} == {"read"}
    assert {e.method for e in events} == {"GET"}
    assert sorted(e.resource_id or "" for e in events) == sorted([*ids, "missing"])
    assert {e.batch_size for e in events} == {4}
    assert {e.on_behalf_of for e in events} == {alice}
    by_id = {e.resource_id: e for e in events}
    assert by_id["missing"].final_status_code == 404 and by_id["missing"].outcome == "error"
    assert isinstance(by_id["missing"].final_exception, NotFoundError)
    assert all(by_id[i].final_status_code == 200 and by_id[i].outcome == "success" for i in ids)
    # The attempts are the batch request's: one POST answered 200.
    assert [a.status_code for a in events[0].attempts] == [200]


def test_a_429_on_the_batch_is_retried_as_a_whole(
    medplum: LocalMedplumServer, batching: Callable[..., Run], no_sleep: list[float]
) -> None:
    ids = create_patients(medplum, 5)
    medplum.rate_limit_next(method="POST", path_prefix="/fhir/R4")
    events: list[RequestEvent] = []

    async def scenario(client: AsyncMedplumClient) -> list[dict[str, Any]]:
        return await asyncio.gather(*(client.read_resource("Patient", i) for i in ids))

    read = batching(on_request_complete=events.append)(scenario)
    assert [r["id"] for r in read] == ids
    assert sent(medplum) == [BATCH, BATCH]
    assert len(no_sleep) == 1  # one wait, for the whole batch
    assert {tuple(a.status_code for a in e.attempts) for e in events} == {(429, 200)}


def test_closing_the_client_sends_the_reads_still_gathering(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    ids = create_patients(medplum, 3)

    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        reads = [asyncio.ensure_future(client.read_resource("Patient", i)) for i in ids]
        await asyncio.sleep(0)  # gathered, the window (a long one) still open
        await client.aclose()
        return await asyncio.gather(*reads)

    read = batching(auto_batch_ms=1000)(scenario)
    assert [r["id"] for r in read] == ids
    assert sent(medplum) == [BATCH]


def test_closing_the_client_lets_a_lone_gathered_read_finish(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    (pid,) = create_patients(medplum, 1)

    async def scenario(client: AsyncMedplumClient) -> Any:
        read = asyncio.ensure_future(client.read_resource("Patient", pid))
        await asyncio.sleep(0)  # gathered alone, the window still open
        await client.aclose()
        return await read

    assert batching(auto_batch_ms=1000)(scenario)["id"] == pid
    assert sent(medplum) == [("GET", f"/fhir/R4/Patient/{pid}")]


def test_without_auto_batch_ms_every_read_is_its_own_get(
    medplum: LocalMedplumServer, batching: Callable[..., Run]
) -> None:
    ids = create_patients(medplum, 3)

    async def scenario(client: AsyncMedplumClient) -> list[Any]:
        return await asyncio.gather(*(client.read_resource("Patient", i) for i in ids))

    batching(auto_batch_ms=None)(scenario)
    assert sorted(sent(medplum)) == sorted(("GET", f"/fhir/R4/Patient/{i}") for i in ids)


def test_the_sync_client_has_no_auto_batching(medplum: LocalMedplumServer) -> None:
    with pytest.raises(TypeError, match="auto_batch_ms"):
        MedplumClient(medplum.base_url + "/", auto_batch_ms=10)  # type: ignore[call-arg]
