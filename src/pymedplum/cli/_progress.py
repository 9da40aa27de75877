"""The progress bar of `pymedplum export`: Rich on standard error, fed by the export's
`on_progress` events (files and bytes; the server's `X-Progress` text while it works)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from pymedplum.bulk import BulkExportProgress

__all__ = ["ExportProgressBar"]


class ExportProgressBar:
    """`with ExportProgressBar() as bar: client.bulk_export(..., on_progress=bar)`.

    One line while the server exports (its progress text), then one for the files (done
    of total) and one for the bytes of the file being read. Drawn on standard error (or
    `console`), and only when that is a terminal.
    """

    def __init__(self, *, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._waiting: TaskID | None = None
        self._files: TaskID | None = None
        self._file: TaskID | None = None

    def __enter__(self) -> ExportProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, event: BulkExportProgress) -> None:
        progress = self._progress
        if event.phase == "waiting":
            text = f"exporting on the server: {event.message or 'in progress'}"
            if self._waiting is None:
                self._waiting = progress.add_task(text, total=None)
            progress.update(self._waiting, description=text)
            return
        if self._waiting is not None:
            progress.update(self._waiting, description="exported on the server", total=1)
            progress.update(self._waiting, completed=1)
        if self._files is None:
            self._files = progress.add_task("files", total=event.files_total)
        progress.update(
            self._files,
            description=f"files {event.files_done}/{event.files_total}",
            completed=event.files_done,
        )
        if event.file is None:
            return
        name = f"  {event.file.name}"
        if event.phase == "file_started" or self._file is None:
            if self._file is not None:
                progress.remove_task(self._file)
            self._file = progress.add_task(name, total=event.file_bytes_total)
        progress.update(
            self._file,
            description=name,
            completed=event.file_bytes_done,
            total=event.file_bytes_total,
        )
