"""Benchmarks of working at scale, against the same client without the feature, in one run.

- Prefetch: `search_resource_pages` over 20 pages of 20 Patients, the local server holding
  every page 20 ms (a delay fault) and the caller working 20 ms on each page. On the sync
  client, I/O work (`time.sleep`, as a database write would wait) and pure-Python CPU work
  (a busy loop, which holds the GIL the worker thread needs); on the async client, awaited
  work (`asyncio.sleep`: a task overlaps only with what awaits). Against `prefetch=False`
  in the same run.
- Auto-batching: 200 concurrent `read_resource` calls on `AsyncMedplumClient`, with
  `auto_batch_ms=10` against without; round trips counted in the server's request log.
Each time is the best of ROUNDS rounds; the two variants alternate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.testing.local_server import LocalMedplumServer

Row = tuple[str, str, str, str]
ROUNDS = 7
PAGES = 20
PAGE_SIZE = 20
PAGE_DELAY_MS = 20
WORK_SECONDS = 0.020
READS = 200


def _busy(seconds: float) -> None:
    """CPU work that holds the GIL, as a caller's parsing or transforming would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _alternate(a: Callable[[], object], b: Callable[[], object]) -> tuple[float, float]:
    """Best times of `a` and `b`, their rounds interleaved so drift hits both."""
    best_a = best_b = float("inf")
    for _ in range(ROUNDS):
        best_a = min(best_a, _best_once(a))
        best_b = min(best_b, _best_once(b))
    return best_a, best_b


def _best_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _prefetch_rows(server: LocalMedplumServer, kw: dict[str, Any]) -> list[Row]:
    base = server.base_url + "/"
    query = {"_count": PAGE_SIZE}  # the only Patients stored: no filter, a cheap scan
    total = PAGES * PAGE_SIZE
    with MedplumClient(base, **kw) as client:
        client.execute_batch(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "request": {"method": "POST", "url": "Patient"},
                        "resource": {"resourceType": "Patient", "name": [{"family": "Bench"}]},
                    }
                    for _ in range(total)
                ],
            }
        )

        def bare_pages() -> None:
            assert (
                sum(1 for _ in client.search_resource_pages("Patient", query, prefetch=False))
                == total
            )

        # The server's own time per page (no delay, no caller work): what prefetching cannot
        # hide, and on a loaded machine far above the ~2 ms of an idle one.
        server_page = min(_best_once(bare_pages) for _ in range(ROUNDS)) / PAGES
        server.delay_next(PAGE_DELAY_MS, count=None, method="GET", path_prefix="/fhir/R4/Patient")

        def sync_pages(prefetch: bool, work: Callable[[float], None]) -> Callable[[], object]:
            def run() -> None:
                count = 0
                for _ in client.search_resource_pages("Patient", query, prefetch=prefetch):
                    if count % PAGE_SIZE == 0:
                        work(WORK_SECONDS)
                    count += 1
                assert count == total, count

            return run

        sync_io = _alternate(sync_pages(False, time.sleep), sync_pages(True, time.sleep))
        sync_cpu = _alternate(sync_pages(False, _busy), sync_pages(True, _busy))

    async def async_pages(client: AsyncMedplumClient, prefetch: bool) -> None:
        count = 0
        async for _ in client.search_resource_pages("Patient", query, prefetch=prefetch):
            if count % PAGE_SIZE == 0:
                await asyncio.sleep(WORK_SECONDS)
            count += 1
        assert count == total, count

    loop = asyncio.new_event_loop()
    aclient = AsyncMedplumClient(base, **kw)
    try:
        async_off, async_on = _alternate(
            lambda: loop.run_until_complete(async_pages(aclient, False)),
            lambda: loop.run_until_complete(async_pages(aclient, True)),
        )
    finally:
        loop.run_until_complete(aclient.aclose())
        loop.close()
    server.clear_faults()
    setting = f"{PAGES} pages, {PAGE_DELAY_MS} ms per page on the server, 20 ms caller work"

    def row(what: str, times: tuple[float, float]) -> Row:
        off, on = times
        return (
            f"search_resource_pages, {setting} ({what})",
            f"{on * 1e3:.0f} ms",
            f"{off / on:.2f}x faster than prefetch=False ({off * 1e3:.0f} ms)",
            "",
        )

    fetch = server_page + PAGE_DELAY_MS / 1e3
    ideal = (fetch + WORK_SECONDS) / max(fetch, WORK_SECONDS)
    return [
        (
            "one page from the local server, no delay, no caller work (sync, in the same run)",
            f"{server_page * 1e3:.1f} ms",
            f"so a page takes {fetch * 1e3:.0f} ms with the delay: full overlap would be "
            f"{ideal:.2f}x",
            "",
        ),
        row("sync, I/O work", sync_io),
        row("sync, pure-Python CPU work", sync_cpu),
        row("async, awaited work", (async_off, async_on)),
    ]


def _batch_rows(server: LocalMedplumServer, kw: dict[str, Any]) -> list[Row]:
    base = server.base_url + "/"
    with MedplumClient(base, **kw) as client:
        entry = {
            "request": {"method": "POST", "url": "Patient"},
            "resource": {"resourceType": "Patient"},
        }
        answer = client.execute_batch(
            {"resourceType": "Bundle", "type": "batch", "entry": [entry] * READS}
        )
    ids = [e["response"]["location"].split("/")[1] for e in answer["entry"]]
    loop = asyncio.new_event_loop()
    plain = AsyncMedplumClient(base, **kw)
    batched = AsyncMedplumClient(base, auto_batch_ms=10, **kw)
    trips: dict[bool, int] = {}

    def reads(client: AsyncMedplumClient, auto: bool) -> Callable[[], object]:
        async def gather() -> list[Any]:
            return await asyncio.gather(*(client.read_resource("Patient", i) for i in ids))

        def run() -> None:
            server.clear_requests()
            found = loop.run_until_complete(gather())
            assert [r["id"] for r in found] == ids
            trips[auto] = len(server.fhir_requests())

        return run

    try:
        reads(plain, False)()  # warm: token, connections
        reads(batched, True)()
        off, on = _alternate(reads(plain, False), reads(batched, True))
    finally:
        loop.run_until_complete(plain.aclose())
        loop.run_until_complete(batched.aclose())
        loop.close()
    return [
        (
            f"{READS} concurrent read_resource, AsyncMedplumClient(auto_batch_ms=10)",
            f"{on * 1e3:.0f} ms, {trips[True]} round trips",
            f"{off / on:.2f}x faster than without ({off * 1e3:.0f} ms, {trips[False]} round trips)",
            "",
        )
    ]


def rows() -> list[Row]:
    with LocalMedplumServer() as server:
        creds = server.admin_client
        kw = {"client_id": creds.client_id, "client_secret": creds.client_secret}
        return _prefetch_rows(server, kw) + _batch_rows(server, kw)
