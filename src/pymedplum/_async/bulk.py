"""Bulk export: `$export` kicked off and polled, its files read as resources, NDJSON or Parquet."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel

from pymedplum import _bulk, _jobs, _parquet
from pymedplum._async.jobs import AsyncJobMethods
from pymedplum._bulk import ExportFile, ExportManifest, ExportProgressCallback, ProgressTracker
from pymedplum._core import Call, _merge_headers
from pymedplum.exceptions import MedplumError

if TYPE_CHECKING:
    from pymedplum._fhirmodel import FHIRModel
    from pymedplum._generated.search_params import ResourceType

M = TypeVar("M", bound=BaseModel)


class AsyncBulkExportMethods(AsyncJobMethods):
    """Bulk export (`$export`)."""

    async def bulk_export(
        self,
        types: ResourceType | Sequence[ResourceType] | None = None,
        since: str | datetime | None = None,
        *,
        level: Literal["system", "patient", "group"] = "system",
        group_id: str | None = None,
        poll_interval: float = 1.0,
        timeout: float | None = 3600.0,
        on_progress: ExportProgressCallback | None = None,
        on_behalf_of: str | None = None,
    ) -> AsyncBulkExport:
        """Run a bulk export and return it once the server has written its files.

        Example:
            export = await client.bulk_export(["Patient", "Observation"], since=last_run)
            async for patient in export.resources("Patient", as_fhir=Patient):
                ...
            await export.to_parquet(Path("warehouse/2026-01-01"))

        Kicks off `$export` (`level="system"`), `Patient/$export` (`level="patient"`) or
        `Group/{group_id}/$export`, with `_type` (`types`: a type or several) and `_since`
        (an instant with a time zone, or an aware datetime); then polls the status URL
        (which must be on the client's origin) every `poll_interval` seconds, or after the
        server's `Retry-After`, until the manifest arrives. Raises TimeoutError after
        `timeout` seconds (None waits indefinitely); NotFoundError when the export was
        cancelled. `on_progress` receives `BulkExportProgress` events, here and in every
        read of the returned export. Every request acts as one membership (resolved now),
        except presigned downloads (`requiresAccessToken: false`), which carry no credentials.
        """
        path = _bulk.kickoff_path(level, group_id)
        query = _bulk.kickoff_query(types, since)
        _jobs.check_polling(poll_interval, timeout)
        acting = self._obo.resolve(on_behalf_of) or ""
        headers = _merge_headers(None, Prefer="respond-async")
        call = Call("GET", self._url(self.fhir_base_url + path, query), headers)
        status_url = _bulk.status_url_of(await self._send(call, acting))
        return await self._finish_export(status_url, acting, poll_interval, timeout, on_progress)

    async def resume_bulk_export(
        self,
        directory: str | os.PathLike[str],
        *,
        poll_interval: float = 1.0,
        timeout: float | None = 3600.0,
        on_progress: ExportProgressCallback | None = None,
        on_behalf_of: str | None = None,
    ) -> AsyncBulkExport:
        """The export whose files `directory` holds, to finish an interrupted download.

        Example:
            export = await client.resume_bulk_export(Path("warehouse/2026-01-01"))
            await export.to_parquet(Path("warehouse/2026-01-01"))  # only what is missing

        Reads the state file the export left there (`pymedplum-export.json`), polls the
        export's status URL again (for fresh download URLs) and checks it is the same
        export (same `transactionTime`). `download` and `to_parquet` into that directory
        then skip every file recorded complete whose size and SHA-256 still match.
        """
        _jobs.check_polling(poll_interval, timeout)
        state = _bulk.ExportState.read(directory)
        acting = self._obo.resolve(on_behalf_of) or ""
        export = await self._finish_export(
            str(state.get("status_url")), acting, poll_interval, timeout, on_progress
        )
        if export.manifest.transaction_time != state.get("transaction_time"):
            raise MedplumError(
                "bulk export: the server reports another transactionTime than the one "
                f"recorded in {_bulk.STATE_FILE}; this is not the same export"
            )
        return export

    async def _finish_export(
        self,
        status_url: str,
        acting: str,
        poll_interval: float,
        timeout: float | None,
        on_progress: ExportProgressCallback | None,
    ) -> AsyncBulkExport:
        ref = _jobs.job_ref(status_url, self._origin, self.fhir_base_url)
        tracker = ProgressTracker(on_progress)
        manifest = await self._poll_job(
            ref, acting, poll_interval, timeout, export=True, on_wait=tracker.waiting
        )
        checked = _bulk.parse_manifest(
            manifest, ref.status_url, self._origin, allow_insecure_http=self._allow_insecure_http
        )
        return AsyncBulkExport(self, checked, acting, on_progress)


class AsyncBulkExport:
    """A completed bulk export: its files, read as resources, raw NDJSON or Parquet.

    Example:
        export = await client.bulk_export("Patient")
        async for patient in export.resources():          # dicts, one file line at a time
            print(patient["id"])
        await export.download(Path("out"))                # the raw NDJSON files
        tables = await export.to_parquet(Path("out"))     # {"Patient": Path("out/Patient.parquet")}

    Files are streamed: memory holds one chunk and one line (one resource) at a time,
    whatever their size. Presigned downloads (`requiresAccessToken: false`, Medplum's)
    carry no credentials; others act as the membership the export was started as.
    """

    def __init__(
        self,
        client: AsyncBulkExportMethods,
        manifest: ExportManifest,
        acting: str,
        on_progress: ExportProgressCallback | None,
    ) -> None:
        self._client = client
        self.manifest = manifest
        self._acting = acting
        self._on_progress = on_progress

    def __repr__(self) -> str:
        types = sorted({f.resource_type for f in self.files})
        kinds = ", ".join(types) or "empty"
        return f"<{type(self).__name__} {len(self.files)} file(s): {kinds}>"

    @property
    def files(self) -> tuple[ExportFile, ...]:
        """The output files, in manifest order."""
        return self.manifest.output

    @property
    def transaction_time(self) -> str:
        """The server time the export reflects: pass it as `since` to the next export."""
        return self.manifest.transaction_time

    # ------------------------------------------------------------ resources

    @overload
    def resources(
        self,
        resource_type: str | None = None,
        *,
        as_fhir: None = None,
        typed: Literal[False] = False,
    ) -> AsyncIterator[dict[str, Any]]: ...
    @overload
    def resources(
        self, resource_type: str | None = None, *, as_fhir: type[M], typed: Literal[False] = False
    ) -> AsyncIterator[M]: ...
    @overload
    def resources(
        self, resource_type: str | None = None, *, as_fhir: None = None, typed: Literal[True]
    ) -> AsyncIterator[FHIRModel]: ...
    def resources(
        self,
        resource_type: str | None = None,
        *,
        as_fhir: type[BaseModel] | None = None,
        typed: bool = False,
    ) -> AsyncIterator[Any]:
        """Every exported resource (of `resource_type`, or of all types), file by file.

        Example:
            async for observation in export.resources("Observation", as_fhir=Observation):
                ...
            async for resource in export.resources(typed=True):  # Patient, Observation, ...
                ...

        Dicts by default (decimals exact); with `as_fhir=Model` that model (its resource
        type is read when `resource_type` is not given); with `typed=True` the model each
        `resourceType` names. Nothing is written to disk.
        """
        wanted = _bulk.wanted_type(resource_type, as_fhir, typed)
        return self._resources(wanted, as_fhir, typed)

    async def _resources(
        self, wanted: str | None, as_fhir: type[BaseModel] | None, typed: bool
    ) -> AsyncIterator[Any]:
        files = [f for f in self.files if wanted is None or f.resource_type == wanted]
        tracker = ProgressTracker(self._on_progress, len(files))
        for file in files:
            # aclosing: a reader that stops early closes the download at once.
            async with aclosing(self._lines(file, tracker)) as lines:
                async for number, line in lines:
                    resource = _bulk.decode_line(line, file, number)
                    tracker.add_resources(1)
                    yield _bulk.convert(resource, as_fhir, typed)

    def _file_call(self, file: ExportFile) -> Call:
        """The download of one file: with the token and on-behalf-of only when the manifest
        says `requiresAccessToken: true` (then on the client's origin); else none at all."""
        headers = _merge_headers({"Accept": _bulk.NDJSON})
        return Call("GET", file.url, headers, credentials=self.manifest.requires_access_token)

    async def _lines(
        self, file: ExportFile, tracker: ProgressTracker
    ) -> AsyncGenerator[tuple[int, bytes], None]:
        """The lines of one output file, numbered from 1, as its body streams in."""
        call = self._file_call(file)
        splitter = _bulk.LineSplitter()
        stream = self._client._stream(
            call, self._acting, on_start=lambda headers: tracker.file_started(file, headers)
        )
        number = 0
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                tracker.add_bytes(len(chunk))
                for line in splitter.feed(chunk):
                    number += 1
                    yield number, line
        for line in splitter.end():
            yield number + 1, line
        tracker.file_done()

    # ------------------------------------------------------------ files

    async def download(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Download the raw NDJSON files into `directory`; their paths, in manifest order.

        Example:
            paths = await export.download(Path("out"))   # out/Patient.000.ndjson, ...

        Each file streams to a temporary file moved into place when complete; the
        directory's `pymedplum-export.json` records it with its size and SHA-256. Run
        again (or after `resume_bulk_export`), files already complete are not fetched.
        """
        state = _bulk.ExportState.open(directory, self.manifest)
        tracker = ProgressTracker(self._on_progress, len(self.files))
        paths = []
        for file in self.files:
            target = state.directory / file.name
            size = state.is_complete("files", file.name)
            if size is not None:
                tracker.file_skipped(file, size)
            else:
                sink = _bulk.HashingSink(target, tracker, file)
                await self._client._send(self._file_call(file), self._acting, sink=sink)
                tracker.file_done()
                state.record(
                    "files",
                    file.name,
                    type=file.resource_type,
                    bytes=sink.done,
                    sha256=sink.sha256.hexdigest(),
                )
            paths.append(target)
        return paths

    async def to_parquet(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write one Parquet file per resource type into `directory`; {type: path}.

        Example:
            tables = await export.to_parquet(Path("out"))
            # duckdb.sql("SELECT gender, count(*) FROM 'out/Patient.parquet' GROUP BY 1")

        Needs pyarrow (`pip install 'pymedplum[parquet]'`). The layout (typed columns for
        top-level primitives, JSON columns for the rest, `_extra` for anything else) is in
        docs/bulk_export.md. Files stream from the server into row groups; a type's file
        appears only when complete and is recorded in `pymedplum-export.json`, so a run
        after a failure writes only the types still missing.
        """
        _parquet.require_pyarrow()
        state = _bulk.ExportState.open(directory, self.manifest)
        tracker = ProgressTracker(self._on_progress, len(self.files))
        written: dict[str, Path] = {}
        for resource_type, files in self.manifest.by_type().items():
            name = f"{resource_type}.parquet"
            target = state.directory / name
            if state.is_complete("parquet", name) is not None:
                for file in files:
                    tracker.file_skipped(file, 0)
                written[resource_type] = target
                continue
            writer = _parquet.ParquetTypeWriter(target, resource_type)
            try:
                for file in files:
                    async with aclosing(self._lines(file, tracker)) as lines:
                        async for number, line in lines:
                            writer.add(_bulk.decode_line(line, file, number))
                            tracker.add_resources(1)
                rows = writer.close()
            except BaseException:
                writer.abort()
                raise
            state.record("parquet", name, type=resource_type, rows=rows)
            written[resource_type] = target
        return written
