"""Paging with prefetch, both clients, against the local Medplum server.

`search_resource_pages` (and `read_history_pages`) fetch page n+1 while the caller works
through page n: a task on the async client, a worker thread on the sync one. These tests
pin what that must not change (order, errors, OBO, hooks) and what it must not leave
behind (requests for pages nobody asked for, threads, tasks).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pymedplum import AsyncMedplumClient, MedplumClient, NotFoundError, RequestEvent
from pymedplum.hooks import PreparedRequest
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

PAGE = 2
QUERY = {"family": "Prefetched", "_count": PAGE}


def store_patients(client: Driver, n: int) -> list[str]:
    return [
        client.create_resource(
            {"resourceType": "Patient", "name": [{"family": "Prefetched", "given": [f"P{i}"]}]}
        )["id"]
        for i in range(n)
    ]


def page_offsets(medplum: LocalMedplumServer) -> list[str | None]:
    """The `_offset` of every Patient search the server received, in order."""
    return [
        (r["query"].get("_offset") or [None])[0]
        for r in medplum.fhir_requests()
        if r["method"] == "GET" and r["path"] == "/fhir/R4/Patient"
    ]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `condition` (a server log query) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def take_then_stop(
    client: Driver,
    n: int,
    stop: str,
    *,
    before_stop: Callable[[], bool] | None = None,
    **kw: Any,
) -> list[dict[str, Any]]:
    """Read `n` resources, wait until `before_stop()` holds, then stop the iteration by
    `stop`: "close" (close()/aclose()), "break" (drop the iterator) or "raise" (an
    exception in the caller's loop body). The resources read."""
    api = client.client
    taken: list[dict[str, Any]] = []
    if isinstance(api, MedplumClient):
        iterator = api.search_resource_pages("Patient", QUERY, **kw)
        try:
            for resource in iterator:
                taken.append(resource)
                if len(taken) == n:
                    if before_stop is not None:
                        wait_until(before_stop)
                    if stop == "close":
                        iterator.close()  # type: ignore[attr-defined]
                    if stop == "raise":
                        raise KeyError("the caller's own error")
                    break
        except KeyError:
            pass
        del iterator
        return taken
    assert isinstance(api, AsyncMedplumClient)

    async def async_loop() -> None:
        iterator = api.search_resource_pages("Patient", QUERY, **kw)
        try:
            async for resource in iterator:
                taken.append(resource)
                if len(taken) == n:
                    if before_stop is not None:
                        while not await asyncio.to_thread(before_stop):
                            await asyncio.sleep(0.01)
                    if stop == "close":
                        await iterator.aclose()  # type: ignore[attr-defined]
                    if stop == "raise":
                        raise KeyError("the caller's own error")
                    break
        except KeyError:
            pass

    client.loop.run_until_complete(async_loop())
    return taken


def settled(client: Driver) -> tuple[int, int]:
    """(threads, tasks) once whatever the stopped iteration left has been collected."""
    import gc

    gc.collect()

    async def tasks() -> int:
        for _ in range(5):  # let a finalized async generator's aclose() run
            await asyncio.sleep(0)
        return len(asyncio.all_tasks()) - 1

    # The default executor's threads (asyncio.to_thread, used by these tests) do not count.
    threads = [t for t in threading.enumerate() if not t.name.startswith("asyncio_")]
    return len(threads), client.loop.run_until_complete(tasks())


# ---------------------------------------------------------------- order and equivalence


@pytest.mark.parametrize("prefetch", [True, False])
def test_pages_arrive_in_order_once_each(
    client: Driver, medplum: LocalMedplumServer, prefetch: bool
) -> None:
    ids = store_patients(client, 7)
    medplum.clear_requests()
    seen = client.search_resource_pages("Patient", QUERY, prefetch=prefetch)
    assert [r["id"] for r in seen] == ids  # the server's order, untouched
    assert page_offsets(medplum) == [None, "2", "4", "6"]


def test_prefetch_is_the_default_and_fetches_one_page_ahead(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    store_patients(client, 8)
    medplum.clear_requests()
    # Read one resource of page 1 and stop once page 2 has been requested: page 2 was
    # fetched although nobody asked for it yet (the prefetch), page 3 never was.
    taken = take_then_stop(client, 1, "close", before_stop=lambda: len(page_offsets(medplum)) == 2)
    assert len(taken) == 1
    assert page_offsets(medplum) == [None, "2"]


def test_without_prefetch_no_page_is_fetched_before_it_is_asked_for(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    store_patients(client, 8)
    medplum.clear_requests()
    taken = take_then_stop(client, PAGE, "close", prefetch=False)
    assert len(taken) == PAGE
    assert page_offsets(medplum) == [None]


# ---------------------------------------------------------------- stopping early


@pytest.mark.parametrize("stop", ["close", "break", "raise"])
def test_stopping_early_cancels_the_page_in_flight_and_leaves_nothing_running(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer, stop: str
) -> None:
    events: list[RequestEvent] = []
    client = make_client(on_request_complete=events.append)
    store_patients(client, 10)
    threads_before, tasks_before = settled(client)
    medplum.clear_requests()
    events.clear()
    # Every page takes 0.3 s on the server: page 2 is in flight when the caller stops.
    medplum.delay_next(300, count=None, method="GET", path_prefix="/fhir/R4/Patient")
    taken = take_then_stop(client, 1, stop, before_stop=lambda: len(page_offsets(medplum)) == 2)
    assert len(taken) == 1
    assert settled(client) == (threads_before, tasks_before)  # no thread, no task left
    medplum.clear_faults()
    time.sleep(0.4)  # what was in flight has been answered by now
    assert page_offsets(medplum) == [None, "2"]  # page 3 (offset 4) was never requested
    pages = [e for e in events if e.path_template == "/fhir/R4/Patient"]
    assert len(pages) == 2  # the page in flight still has its audit event
    if client.is_async:
        # The task was cancelled in flight, and its event says so.
        assert isinstance(pages[1].final_exception, asyncio.CancelledError)
    else:
        # A thread cannot be interrupted: the sync client waited for the page and dropped it.
        assert pages[1].final_exception is None and pages[1].final_status_code == 200


def test_a_finished_iteration_leaves_no_thread_or_task(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    store_patients(client, 5)
    before = settled(client)
    assert len(client.search_resource_pages("Patient", QUERY)) == 5
    assert settled(client) == before


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("prefetch", [True, False])
def test_an_error_of_the_next_page_is_raised_where_the_caller_asks_for_that_page(
    client: Driver, medplum: LocalMedplumServer, prefetch: bool
) -> None:
    store_patients(client, 6)
    # Page 1 passes (a delay of 0), page 2 answers 404 (not retried).
    medplum.delay_next(0, method="GET", path_prefix="/fhir/R4/Patient")
    medplum.fail_next(404, method="GET", path_prefix="/fhir/R4/Patient")
    received: list[dict[str, Any]] = []
    api = client.client
    with pytest.raises(NotFoundError):
        if isinstance(api, MedplumClient):
            for resource in api.search_resource_pages("Patient", QUERY, prefetch=prefetch):
                received.append(resource)
        else:
            assert isinstance(api, AsyncMedplumClient)

            async def read() -> None:
                pages = api.search_resource_pages("Patient", QUERY, prefetch=prefetch)
                async for resource in pages:
                    received.append(resource)

            client.loop.run_until_complete(read())
    assert len(received) == PAGE  # all of page 1 first, then page 2's error
    assert page_offsets(medplum) == [None, "2"]


# ---------------------------------------------------------------- OBO, hooks, context


def test_every_page_acts_as_the_membership_resolved_at_the_first(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    store_patients(client, 7)
    alice = medplum.practitioners["alice"].membership
    medplum.clear_requests()
    api = client.client
    # The first resource is read inside the scope, the rest after it has ended.
    if isinstance(api, MedplumClient):
        iterator = iter(api.search_resource_pages("Patient", QUERY))
        with api.on_behalf_of(alice):
            first = [next(iterator)]
        rest = list(iterator)
    else:
        assert isinstance(api, AsyncMedplumClient)

        async def read() -> tuple[list[Any], list[Any]]:
            pages = api.search_resource_pages("Patient", QUERY)
            async with api.on_behalf_of(alice):
                head = [await anext(pages)]
            return head, [r async for r in pages]

        first, rest = client.loop.run_until_complete(read())
    assert len(first + rest) == 7
    searches = [r for r in medplum.fhir_requests() if r["path"] == "/fhir/R4/Patient"]
    assert len(searches) == 4
    assert [r["on_behalf_of"] for r in searches] == [alice] * 4


def test_each_page_fires_its_own_hooks_in_order_seeing_the_callers_context(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen_by_before: list[tuple[str, str]] = []
    events: list[RequestEvent] = []

    def before(request: PreparedRequest) -> None:
        seen_by_before.append((request.url, request_id.get("unset")))

    def complete(event: RequestEvent) -> None:
        events.append(event)

    client = make_client(before_request=before, on_request_complete=complete)
    store_patients(client, 7)
    seen_by_before.clear()
    events.clear()
    api = client.client
    if isinstance(api, MedplumClient):
        request_id.set("job-42")
        assert len(list(api.search_resource_pages("Patient", QUERY))) == 7
    else:
        assert isinstance(api, AsyncMedplumClient)

        async def read() -> int:
            request_id.set("job-42")
            return len([r async for r in api.search_resource_pages("Patient", QUERY)])

        assert client.loop.run_until_complete(read()) == 7
    assert len(events) == len(seen_by_before) == 4  # one per page
    offsets = [(e.query_params or {}).get("_offset", [None])[0] for e in events]
    assert offsets == [None, "2", "4", "6"]  # fired in page order
    assert all(e.outcome == "success" for e in events)
    assert {context for _, context in seen_by_before} == {"job-42"}  # worker: a context copy


def test_history_pages_prefetch_too(client: Driver) -> None:
    patient = client.create_resource({"resourceType": "Patient", "active": True})
    for flag in (False, True):
        patient = client.update_resource({**patient, "active": flag})
    history = client.read_history("Patient", patient["id"])["entry"]
    expected = [e["resource"]["meta"]["versionId"] for e in history if "resource" in e]
    assert len(expected) == 3
    for prefetch in (True, False):
        versions = client.read_history_pages("Patient", patient["id"], prefetch=prefetch)
        assert [v["meta"]["versionId"] for v in versions] == expected
