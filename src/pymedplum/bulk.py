"""Bulk export: what `client.bulk_export()` returns, and what it reports.

    export = client.bulk_export(["Patient", "Observation"], since="2026-01-01T00:00:00Z")
    for patient in export.resources("Patient"):
        ...
    export.to_parquet(Path("out"))        # out/Patient.parquet, out/Observation.parquet
    export.download(Path("out"))          # out/Patient.000.ndjson, ...

`BulkExport` / `AsyncBulkExport` come from the sync / async client; `ExportFile` and
`ExportManifest` describe the server's manifest; `BulkExportProgress` is what an
`on_progress` callback receives; `resource_from_row` turns a Parquet row back into the
resource. See docs/bulk_export.md.
"""

from __future__ import annotations

from pymedplum._async.bulk import AsyncBulkExport
from pymedplum._bulk import (
    STATE_FILE,
    BulkExportProgress,
    ExportFile,
    ExportManifest,
    ExportProgressCallback,
)
from pymedplum._parquet import EXTRA_COLUMN, resource_from_row
from pymedplum._sync.bulk import BulkExport

__all__ = [
    "AsyncBulkExport",
    "BulkExport",
    "BulkExportProgress",
    "ExportFile",
    "ExportManifest",
    "ExportProgressCallback",
    "EXTRA_COLUMN",
    "STATE_FILE",
    "resource_from_row",
]
