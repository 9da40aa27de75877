"""Bulk export benchmarks: streaming an exported NDJSON file, against raw httpx in the same run.

The local Medplum server (pymedplum.testing) stores 100,000 Patients and exports them
once; every round then reads the same output file over loopback:
- baseline: raw `httpx.Client.stream` + `iter_lines()` + `orjson.loads` per line (the
  fastest correct-looking reader; it turns decimals into floats, which FHIR forbids);
- pymedplum: `export.resources()` (dicts with exact decimals: jiter in decimal mode),
  `typed=True` (a validated model per resource), `to_parquet()`, and the async client.
Peak memory of the SDK's streaming is taken with tracemalloc in a separate round.
Each figure is the best of ROUNDS rounds; SDK and baseline rounds alternate.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.testing import LocalMedplumServer

Row = tuple[str, str, str, str]
RESOURCES = 100_000
ROUNDS = 3


def _best(fn: Callable[[], int]) -> float:
    """The best wall time of ROUNDS runs of `fn`, which must yield RESOURCES each time."""
    best = float("inf")
    for _ in range(ROUNDS):
        gc.collect()
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
        assert count == RESOURCES, count
    return best


def _rate(seconds: float) -> str:
    return f"{RESOURCES / seconds:,.0f} resources/s"


def rows() -> list[Row]:
    with LocalMedplumServer() as server:
        server.generate_patients(RESOURCES)
        creds = server.admin_client
        base = server.base_url + "/"
        kw = {"client_id": creds.client_id, "client_secret": creds.client_secret}
        with MedplumClient(base, **kw) as client, httpx.Client(trust_env=False) as http:
            export = client.bulk_export("Patient", poll_interval=0.05)
            url = export.files[0].url
            token = server.access_token()

            def raw() -> int:
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+ndjson"}
                count = 0
                with http.stream("GET", url, headers=headers) as response:
                    for line in response.iter_lines():
                        if line:
                            count += orjson.loads(line)["resourceType"] == "Patient"
                return count

            def dicts() -> int:
                return sum(r["resourceType"] == "Patient" for r in export.resources())

            def typed() -> int:
                return sum(1 for _ in export.resources(typed=True))

            def parquet() -> int:
                with tempfile.TemporaryDirectory() as folder:
                    export.to_parquet(Path(folder))
                return RESOURCES

            baseline = _best(raw)
            sdk = _best(dicts)
            baseline = min(baseline, _best(raw))
            models = _best(typed)
            tables = _best(parquet)

            gc.collect()
            tracemalloc.start()
            dicts()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            with http.stream("GET", url) as response:
                size = sum(len(chunk) for chunk in response.iter_bytes())

        aclient = AsyncMedplumClient(base, **kw)
        loop = asyncio.new_event_loop()
        try:
            aexport = loop.run_until_complete(aclient.bulk_export("Patient", poll_interval=0.05))

            async def async_dicts() -> int:
                return sum([r["resourceType"] == "Patient" async for r in aexport.resources()])

            asyn = _best(lambda: loop.run_until_complete(async_dicts()))
            loop.run_until_complete(aclient.aclose())
        finally:
            loop.close()
    return [
        (
            f"stream {RESOURCES:,} exported Patients as dicts (sync)",
            _rate(sdk),
            f"{baseline / sdk:.2f}x raw httpx + orjson ({_rate(baseline)})",
            "",
        ),
        (
            "same, async client",
            _rate(asyn),
            f"{baseline / asyn:.2f}x raw httpx + orjson",
            "",
        ),
        ("same, as typed models (`typed=True`)", _rate(models), f"{baseline / models:.2f}x", ""),
        ("same, written to Parquet (`to_parquet`)", _rate(tables), f"{baseline / tables:.2f}x", ""),
        (
            "peak traced memory while streaming them",
            f"{peak / 1024 / 1024:.1f} MiB",
            f"the file is {size / 1024 / 1024:.1f} MiB: one 64 KiB chunk and one line at a time",
            "",
        ),
    ]


if __name__ == "__main__":
    from bench.__main__ import _table

    print(_table("Bulk export", rows()))
