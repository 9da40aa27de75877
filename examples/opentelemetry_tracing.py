"""Trace Medplum calls with OpenTelemetry (docs/opentelemetry.md).

Reads the server and credentials from the environment (as examples/quickstart.py does):

    MEDPLUM_BASE_URL, MEDPLUM_CLIENT_ID, MEDPLUM_CLIENT_SECRET

Sets up the OpenTelemetry SDK with an exporter that prints each finished span, instruments
every client, and makes a few calls: a create, a read, a search and a read of a missing
Patient. Each call is one span named after its route; none holds the patient's name, the
ids, the query, the token or the secret. Needs `pip install 'pymedplum[otel]'
opentelemetry-sdk`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from pymedplum import MedplumClient, NotFoundError
from pymedplum.otel import instrument, uninstrument


class PrintSpans(SpanExporter):
    """Prints one line per span: its name, status and attributes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            attributes = dict(span.attributes or {})
            status = attributes.get("http.response.status_code", "-")
            attempts = attributes.get("medplum.attempts")
            print(f"span {span.name}  status={status} attempts={attempts}")
            for key in sorted(attributes):
                print(f"    {key} = {attributes[key]}")
        return SpanExportResult.SUCCESS


def main(env: Mapping[str, str]) -> int:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PrintSpans()))
    # An application would usually make it the global provider
    # (trace.set_tracer_provider(provider)) and call instrument() with no argument.
    instrument(tracer_provider=provider)  # every client from here on
    try:
        with MedplumClient(
            base_url=env["MEDPLUM_BASE_URL"],
            client_id=env["MEDPLUM_CLIENT_ID"],
            client_secret=env["MEDPLUM_CLIENT_SECRET"],
        ) as client:
            tracer = provider.get_tracer("example")
            with tracer.start_as_current_span("register a patient"):  # your own span
                created = client.create_resource(
                    {"resourceType": "Patient", "name": [{"family": "Tracewell"}]}
                )
                client.read_resource("Patient", created["id"])
            client.search_resources("Patient", {"family": "Tracewell"})
            try:
                client.read_resource("Patient", "00000000-0000-4000-8000-000000000000")
            except NotFoundError as exc:
                print(f"not found, as expected: {exc}")
    finally:
        uninstrument()
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
