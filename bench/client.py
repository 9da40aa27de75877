"""Client benchmarks: the SDK's CPU time per call against raw httpx making the same requests.

What is compared. Both sides send the same request (method, URL, query, headers: bearer
token, Accept, Content-Type, User-Agent) through an `httpx.Client` / `httpx.AsyncClient`
with the same options, and both parse the response with `pymedplum._json.loads` (msgspec,
each decimal a float that keeps its text: FHIR decimals must keep their text, so that is
the parser any correct client pays for) and serialize a create's body with
`pymedplum._json.dumps`. The ratio is therefore what the SDK adds on top of httpx: URL
and header building, OBO resolution, token bookkeeping, the retry state machine,
status-to-exception mapping. No hooks are set.

Two settings, each measured in this run:
- loopback: the local Medplum server (pymedplum.testing) on 127.0.0.1. CPU time of this
  process (`time.process_time()`), so the server's own work and the wait are not counted.
- mock: `httpx.MockTransport` answering canned bytes, no network at all: the purest view
  of the SDK's overhead (httpx's own per-request cost is still in both sides).

Each figure is the best of several rounds of many calls; SDK and raw rounds alternate.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench._timing import us
from pymedplum import AsyncMedplumClient, MedplumClient, _json
from pymedplum._core import USER_AGENT
from pymedplum.testing import LocalMedplumServer

Row = tuple[str, str, str, str]

CALLS = 200  # calls per round
ROUNDS = 5
PAGE = 20  # resources per search page
FHIR_JSON = "application/fhir+json"
MOCK_BASE = "https://medplum.bench/"
PATIENT_BODY = {
    "resourceType": "Patient",
    "name": [{"family": "Bench", "given": ["Ada", "B."]}],
    "gender": "female",
    "birthDate": "1970-01-01",
    "identifier": [{"system": "urn:oid:1.2.3", "value": "12345"}],
}


def _cpu_per_call(fn: Callable[[], object]) -> float:
    start = time.process_time()
    for _ in range(CALLS):
        fn()
    return (time.process_time() - start) / CALLS


def _best_pair(sdk: Callable[[], object], raw: Callable[[], object]) -> tuple[float, float]:
    """Best CPU seconds per call of each, rounds alternating so drift hits both alike."""
    for _ in range(20):  # warm up: connections, schemas, caches
        sdk()
        raw()
    best_sdk = best_raw = float("inf")
    gc.collect()
    for _ in range(ROUNDS):
        best_sdk = min(best_sdk, _cpu_per_call(sdk))
        best_raw = min(best_raw, _cpu_per_call(raw))
    return best_sdk, best_raw


def _async_round(loop: asyncio.AbstractEventLoop, make: Callable[[], Awaitable[object]]) -> Any:
    async def many() -> None:
        for _ in range(CALLS):
            await make()

    return lambda: loop.run_until_complete(many())


def _best_pair_async(
    loop: asyncio.AbstractEventLoop,
    sdk: Callable[[], Awaitable[object]],
    raw: Callable[[], Awaitable[object]],
) -> tuple[float, float]:
    run_sdk, run_raw = _async_round(loop, sdk), _async_round(loop, raw)
    for _ in range(2):
        run_sdk()
        run_raw()
    best_sdk = best_raw = float("inf")
    gc.collect()
    for _ in range(ROUNDS):
        start = time.process_time()
        run_sdk()
        best_sdk = min(best_sdk, (time.process_time() - start) / CALLS)
        start = time.process_time()
        run_raw()
        best_raw = min(best_raw, (time.process_time() - start) / CALLS)
    return best_sdk, best_raw


def _row(name: str, sdk: float, raw: float) -> Row:
    ratio = sdk / raw
    verdict = "within" if ratio <= 1.05 else "above"
    return (
        name,
        us(sdk),
        f"{ratio:.2f}x raw httpx ({us(raw)}); {verdict} the 1.05x target",
        "",
    )


class _Raw:
    """Raw httpx doing what the SDK does for each call, minus the SDK."""

    def __init__(self, fhir_base: str, token: str) -> None:
        self.fhir_base = fhir_base
        self.get_headers = {"Accept": FHIR_JSON, "Authorization": f"Bearer {token}"}
        self.post_headers = {**self.get_headers, "Content-Type": FHIR_JSON}

    @staticmethod
    def parse(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(f"HTTP {response.status_code}")
        return _json.loads(response.content)


def _http_options() -> dict[str, Any]:
    return {"timeout": 30.0, "follow_redirects": False, "headers": {"User-Agent": USER_AGENT}}


def _measure_sync(
    sdk_client: MedplumClient, http: httpx.Client, raw: _Raw, patient_id: str, family: str
) -> dict[str, tuple[float, float]]:
    read_url = f"{raw.fhir_base}Patient/{patient_id}"
    search_url = f"{raw.fhir_base}Patient"
    create_url = f"{raw.fhir_base}Patient"

    def raw_read() -> Any:
        return raw.parse(http.get(read_url, headers=raw.get_headers))

    def raw_search() -> Any:
        url = f"{search_url}?family={family}&_count={PAGE}"
        return raw.parse(http.get(url, headers=raw.get_headers))

    def raw_create() -> Any:
        body = _json.dumps(PATIENT_BODY)
        return raw.parse(http.post(create_url, content=body, headers=raw.post_headers))

    return {
        "read": _best_pair(lambda: sdk_client.read_resource("Patient", patient_id), raw_read),
        "search page": _best_pair(
            lambda: sdk_client.search_resources("Patient", {"family": family, "_count": PAGE}),
            raw_search,
        ),
        "create": _best_pair(lambda: sdk_client.create_resource(PATIENT_BODY), raw_create),
    }


def _measure_async(
    sdk_client: AsyncMedplumClient,
    http: httpx.AsyncClient,
    raw: _Raw,
    patient_id: str,
    family: str,
    loop: asyncio.AbstractEventLoop,
) -> dict[str, tuple[float, float]]:
    read_url = f"{raw.fhir_base}Patient/{patient_id}"
    search_url = f"{raw.fhir_base}Patient"

    async def raw_read() -> Any:
        return raw.parse(await http.get(read_url, headers=raw.get_headers))

    async def raw_search() -> Any:
        url = f"{search_url}?family={family}&_count={PAGE}"
        return raw.parse(await http.get(url, headers=raw.get_headers))

    async def raw_create() -> Any:
        body = _json.dumps(PATIENT_BODY)
        return raw.parse(await http.post(search_url, content=body, headers=raw.post_headers))

    return {
        "read": _best_pair_async(
            loop, lambda: sdk_client.read_resource("Patient", patient_id), raw_read
        ),
        "search page": _best_pair_async(
            loop,
            lambda: sdk_client.search_resources("Patient", {"family": family, "_count": PAGE}),
            raw_search,
        ),
        "create": _best_pair_async(
            loop, lambda: sdk_client.create_resource(PATIENT_BODY), raw_create
        ),
    }


def _rows(setting: str, sync: dict[str, tuple[float, float]], asyn: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for op in ("read", "search page", "create"):
        page = f" ({PAGE} Patients)" if op == "search page" else ""
        rows.append(_row(f"{op}{page}, {setting}, MedplumClient", *sync[op]))
        rows.append(_row(f"{op}{page}, {setting}, AsyncMedplumClient", *asyn[op]))
    return rows


# ---- (a) the local Medplum server on loopback -----------------------------------------------


def _seed(client: MedplumClient, family: str) -> str:
    """One Patient to read and a page of Patients to search; returns the one's id."""
    patient_id = str(client.create_resource(PATIENT_BODY)["id"])
    for _ in range(PAGE):
        client.create_resource({"resourceType": "Patient", "name": [{"family": family}]})
    return patient_id


def loopback() -> list[Row]:
    family = "Benchpage"
    with LocalMedplumServer() as server:
        creds = server.admin_client
        kw = {"client_id": creds.client_id, "client_secret": creds.client_secret}
        base = server.base_url + "/"
        raw = _Raw(server.fhir_base_url, server.access_token())
        with MedplumClient(base, **kw) as client, httpx.Client(**_http_options()) as http:
            sync = _measure_sync(client, http, raw, _seed(client, family), family)
        # Creates grow the server's (linearly scanned) data: start the async run afresh.
        server.reset()
        with MedplumClient(base, **kw) as client:
            patient_id = _seed(client, family)
        loop = asyncio.new_event_loop()
        try:
            aclient = AsyncMedplumClient(base, **kw)
            ahttp = httpx.AsyncClient(**_http_options())
            asyn = _measure_async(aclient, ahttp, raw, patient_id, family, loop)
            loop.run_until_complete(aclient.aclose())
            loop.run_until_complete(ahttp.aclose())
        finally:
            loop.close()
    return _rows("loopback", sync, asyn)


# ---- (b) httpx.MockTransport, no network --------------------------------------------------------


def _canned() -> Callable[[httpx.Request], httpx.Response]:
    patient = {
        **PATIENT_BODY,
        "id": "p1",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00.000Z"},
    }
    read = _json.dumps(patient)
    bundle = _json.dumps(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "fullUrl": f"{MOCK_BASE}fhir/R4/Patient/p{i}",
                    "search": {"mode": "match"},
                    "resource": {**patient, "id": f"p{i}"},
                }
                for i in range(PAGE)
            ],
            "link": [{"relation": "self", "url": f"{MOCK_BASE}fhir/R4/Patient?_count={PAGE}"}],
        }
    )
    headers = {"Content-Type": "application/fhir+json; charset=utf-8", "ETag": 'W/"1"'}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, content=read, headers=headers)
        if request.url.path.endswith("/Patient"):
            return httpx.Response(200, content=bundle, headers=headers)
        return httpx.Response(200, content=read, headers=headers)

    return handler


def mock() -> list[Row]:
    handler = _canned()
    token = "bench-token"
    raw = _Raw(MOCK_BASE + "fhir/R4/", token)
    opts = _http_options()
    sdk_http = httpx.Client(transport=httpx.MockTransport(handler), **opts)
    raw_http = httpx.Client(transport=httpx.MockTransport(handler), **opts)
    with MedplumClient(MOCK_BASE, access_token=token, http_client=sdk_http) as client:
        sync = _measure_sync(client, raw_http, raw, "p1", "Bench")
    sdk_http.close()
    raw_http.close()
    loop = asyncio.new_event_loop()
    try:
        asdk_http = httpx.AsyncClient(transport=httpx.MockTransport(handler), **opts)
        araw_http = httpx.AsyncClient(transport=httpx.MockTransport(handler), **opts)
        aclient = AsyncMedplumClient(MOCK_BASE, access_token=token, http_client=asdk_http)
        asyn = _measure_async(aclient, araw_http, raw, "p1", "Bench", loop)
        loop.run_until_complete(asdk_http.aclose())
        loop.run_until_complete(araw_http.aclose())
    finally:
        loop.close()
    return _rows("MockTransport", sync, asyn)


def rows() -> list[Row]:
    """Client CPU time per call: loopback server, then MockTransport."""
    return loopback() + mock()


if __name__ == "__main__":
    from bench.__main__ import _table

    print(_table("Client CPU time per call", rows()))
