"""What OpenTelemetry tracing (pymedplum.otel) costs per call, against the same client not
instrumented, measured in the same run.

Reads through `httpx.MockTransport` (no network: the SDK's own CPU is all there is), sync
client, CPU time per call, best of several alternating rounds (bench.client's method):

- not instrumented: the baseline. Its tracing seam (a check when the call begins, a shared
  no-op context around each attempt's token lookup and send) is measured on its own too;
- instrumented, OpenTelemetry API with no SDK configured (non-recording spans);
- instrumented, the SDK with an in-memory exporter (spans recorded and exported).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench._timing import us
from bench.client import MOCK_BASE, _best_pair, _canned, _http_options
from pymedplum import MedplumClient
from pymedplum._core import Call, CallState
from pymedplum.otel import instrument

Row = tuple[str, str, str, str]
SEAM_CALLS = 100_000


def _client(handler: Any) -> MedplumClient:
    http = httpx.Client(transport=httpx.MockTransport(handler), **_http_options())
    return MedplumClient(MOCK_BASE, access_token="bench-token", http_client=http)


def _seam_seconds(client: MedplumClient) -> float:
    """CPU per call of the seam in an uninstrumented call: the tracer check when the
    call begins (CallState) and the two no-op contexts of its one attempt."""
    call = Call("GET", MOCK_BASE + "fhir/R4/Patient/p1", {})
    state = CallState(client, call, None)
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(SEAM_CALLS):
            _ = client._tracer is None
            with state.traced():
                pass
            with state.traced():
                pass
        best = min(best, (time.process_time() - start) / SEAM_CALLS)
    return best


def rows() -> list[Row]:
    handler = _canned()
    exporter = InMemorySpanExporter()
    recording = TracerProvider()
    recording.add_span_processor(SimpleSpanProcessor(exporter))
    plain, api_only, sdk = _client(handler), _client(handler), _client(handler)
    instrument(api_only, tracer_provider=trace.NoOpTracerProvider())
    instrument(sdk, tracer_provider=recording)

    def read(client: MedplumClient) -> Any:
        return lambda: client.read_resource("Patient", "p1")

    def read_and_forget() -> Any:
        exporter.clear()  # the in-memory exporter would otherwise grow for the whole run
        return sdk.read_resource("Patient", "p1")

    noop, base_a = _best_pair(read(api_only), read(plain))
    recorded, base_b = _best_pair(read_and_forget, read(plain))
    base = min(base_a, base_b)
    seam = _seam_seconds(plain)
    for client in (plain, api_only, sdk):
        client.close()
    return [
        ("read, MockTransport, not instrumented", us(base), "the baseline", ""),
        (
            "... its tracing seam alone (tracer check, 2 no-op contexts)",
            f"{seam * 1e9:.0f} ns",
            f"{seam / base:.2%} of the call",
            "",
        ),
        (
            "read, instrumented, OpenTelemetry API only (no SDK)",
            us(noop),
            f"{noop / base:.2f}x not instrumented",
            "",
        ),
        (
            "read, instrumented, SDK + in-memory exporter",
            us(recorded),
            f"{recorded / base:.2f}x not instrumented",
            "",
        ),
    ]


if __name__ == "__main__":
    from bench.__main__ import _table

    print(_table("OpenTelemetry", rows()))
