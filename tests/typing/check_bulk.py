"""Static typing checks of bulk export, run by `mypy --strict` (make typecheck), never executed.

An expected type error is marked `# type: ignore[code]`: mypy's warn_unused_ignores (on
under --strict) fails the run if the error ever disappears.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, assert_type

from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum._fhirmodel import FHIRModel
from pymedplum.bulk import AsyncBulkExport, BulkExport, BulkExportProgress
from pymedplum.fhir import Patient


def show(event: BulkExportProgress) -> None:
    assert_type(event.files_done, int)
    assert_type(event.file_bytes_total, int | None)


def sync_client(client: MedplumClient) -> None:
    export = client.bulk_export(["Patient", "Observation"], since="2026-01-01T00:00:00Z")
    assert_type(export, BulkExport)
    assert_type(export.resources(), Iterator[dict[str, Any]])
    assert_type(export.resources(as_fhir=Patient), Iterator[Patient])
    assert_type(export.resources(typed=True), Iterator[FHIRModel])
    assert_type(export.download(Path("out")), list[Path])
    assert_type(export.to_parquet(Path("out")), dict[str, Path])
    assert_type(client.resume_bulk_export(Path("out"), on_progress=show), BulkExport)
    client.bulk_export("Patinet")  # type: ignore[arg-type]


async def async_client(client: AsyncMedplumClient) -> None:
    export = await client.bulk_export("Patient", level="patient")
    assert_type(export, AsyncBulkExport)
    assert_type(export.resources(), AsyncIterator[dict[str, Any]])
    assert_type(export.resources(as_fhir=Patient), AsyncIterator[Patient])
    assert_type(await export.to_parquet(Path("out")), dict[str, Path])
    await client.bulk_export(level="everything")  # type: ignore[arg-type]
