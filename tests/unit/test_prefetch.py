"""Prefetching pages: fault paths a server can't easily produce, both clients (MockTransport).

End to end (order, early stop, OBO, hooks, leaks) is in tests/integration/test_client_prefetch.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pymedplum import AsyncMedplumClient, MedplumClient, NetworkError, UnsafeRedirectError
from pymedplum._backend import AsyncPrefetch, SyncPrefetch
from tests.unit.conftest import Driver, FakeMedplum


def page(ids: list[str], next_url: str | None) -> httpx.Response:
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": i}} for i in ids],
    }
    if next_url is not None:
        body["link"] = [{"relation": "next", "url": next_url}]
    return httpx.Response(200, json=body)


def read_until_error(api: Driver, **kw: Any) -> tuple[list[str], BaseException | None]:
    """The ids read before the iteration raised, and what it raised."""
    client = api.client
    received: list[str] = []
    if isinstance(client, MedplumClient):
        try:
            for resource in client.search_resource_pages("Patient", **kw):
                received.append(resource["id"])
        except Exception as exc:  # the test inspects it
            return received, exc
        return received, None
    assert isinstance(client, AsyncMedplumClient)

    async def read() -> BaseException | None:
        try:
            async for resource in client.search_resource_pages("Patient", **kw):
                received.append(resource["id"])
        except Exception as exc:
            return exc
        return None

    return received, api.loop.run_until_complete(read())


@pytest.mark.parametrize("prefetch", [True, False])
def test_a_next_link_to_another_origin_is_refused_after_the_current_page(
    make: Callable[..., Driver], fake: FakeMedplum, prefetch: bool
) -> None:
    fake.script("GET", "/fhir/R4/Patient", page(["a", "b"], "https://evil.example/fhir/R4/Patient"))
    received, error = read_until_error(make(), prefetch=prefetch)
    assert received == ["a", "b"]  # the page in hand is delivered first
    assert isinstance(error, UnsafeRedirectError)
    assert len(fake.api_requests) == 1


@pytest.mark.parametrize("prefetch", [True, False])
def test_a_lost_connection_on_the_next_page_is_raised_when_that_page_is_asked_for(
    make: Callable[..., Driver], fake: FakeMedplum, prefetch: bool
) -> None:
    lost = httpx.ReadError("connection reset")
    fake.script(
        "GET",
        "/fhir/R4/Patient",
        page(["a", "b"], "https://medplum.test/fhir/R4/Patient?_offset=2"),
        *[lost] * 5,  # more than the retries
    )
    received, error = read_until_error(make(), prefetch=prefetch)
    assert received == ["a", "b"]
    assert isinstance(error, NetworkError)


def test_the_sync_worker_runs_in_a_copy_of_the_callers_context() -> None:
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag")
    tag.set("caller")

    def fetch() -> tuple[str, str]:
        seen = tag.get()
        tag.set("worker")  # a copy: the caller's value is untouched
        return seen, threading.current_thread().name

    seen, thread = SyncPrefetch(fetch).result()
    assert (seen, thread) == ("caller", "pymedplum-prefetch")
    assert tag.get() == "caller"


def test_the_sync_worker_hands_its_exception_to_result_once() -> None:
    def fetch() -> None:
        raise KeyError("page 2")

    ahead = SyncPrefetch(fetch)
    with pytest.raises(KeyError):
        ahead.result()
    cancelled = SyncPrefetch(fetch)
    cancelled.cancel()  # waits, drops the error
    assert not any(t.name == "pymedplum-prefetch" for t in threading.enumerate())


def test_a_cancelled_async_fetch_leaves_no_task_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def failing() -> None:
        raise KeyError("page 2")

    async def scenario() -> int:
        ahead = AsyncPrefetch(slow)
        await started.wait()
        await ahead.cancel()
        failed = AsyncPrefetch(failing)
        await asyncio.sleep(0)  # it fails before anyone asks
        await failed.cancel()  # its exception is retrieved, not logged
        return len(asyncio.all_tasks()) - 1

    loop = asyncio.new_event_loop()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert loop.run_until_complete(scenario()) == 0
        loop.close()
        gc.collect()
    assert "never retrieved" not in caplog.text
