"""The progress bar of `pymedplum export`, fed the events an export sends."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("rich")

from rich.console import Console  # noqa: E402

from pymedplum.bulk import BulkExportProgress, ExportFile  # noqa: E402
from pymedplum.cli._progress import ExportProgressBar  # noqa: E402


def _bar() -> tuple[ExportProgressBar, io.StringIO]:
    out = io.StringIO()
    return ExportProgressBar(console=Console(file=out, force_terminal=True, width=120)), out


def test_the_bar_shows_the_servers_progress_then_files_and_bytes() -> None:
    bar, out = _bar()
    patients = ExportFile("Patient", 0, "Patient.000.ndjson", "https://s/1")
    with bar:
        bar(BulkExportProgress("waiting", message="42% done"))
        bar(BulkExportProgress("file_started", files_total=2, file=patients, file_bytes_total=2048))
        bar(
            BulkExportProgress(
                "file_progress",
                files_total=2,
                file=patients,
                file_bytes_done=1024,
                file_bytes_total=2048,
                bytes_done=1024,
            )
        )
        bar(
            BulkExportProgress(
                "file_done",
                files_total=2,
                files_done=1,
                file=patients,
                file_bytes_done=2048,
                file_bytes_total=2048,
                bytes_done=2048,
            )
        )
        bar._progress.refresh()
    text = out.getvalue()
    assert "42% done" in text
    assert "files 1/2" in text
    assert "Patient.000.ndjson" in text
    assert "2.0/2.0 kB" in text or "2.0 kB" in text


def test_the_bar_is_hidden_when_standard_error_is_not_a_terminal() -> None:
    out = io.StringIO()
    bar = ExportProgressBar(console=Console(file=out, force_terminal=False))
    with bar:
        bar(BulkExportProgress("waiting", message="42% done"))
    assert out.getvalue() == ""
