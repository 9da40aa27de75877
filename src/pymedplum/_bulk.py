"""Bulk export (`$export`) without the wire: the kickoff request, the status answers, the
manifest, NDJSON lines, progress events and the resume state kept in an output directory.

What Medplum does (packages/server/src/fhir/operations/export.ts, groupexport.ts,
patientexport.ts, fhir/bulkdata.ts): `GET [base]/$export`, `Patient/$export` or
`Group/{id}/$export` reads `_type` (one comma-separated value) and `_since` from the query
and nothing else (`_typeFilter`, `_outputFormat`, `_elements` are ignored), answers 202 with
an OperationOutcome whose diagnostics (and `Content-Location`) is
`[base]/fhir/R4/bulkdata/export/{id}`. Polling that URL answers an empty 202 while the job
runs, 404 once cancelled, and 200 with the manifest
`{transactionTime, request, requiresAccessToken, output: [{type, url}], error, deleted}`
when complete; each output URL is a presigned Binary download of one NDJSON file per type.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from pymedplum import _json
from pymedplum._binary import DownloadSink
from pymedplum._convert import dict_to_model
from pymedplum._core import _check_id
from pymedplum._jobs import JobPoll
from pymedplum._retry import parse_retry_after
from pymedplum._security import Origin, check_storage_url, require_same_origin
from pymedplum.exceptions import MedplumError

__all__ = [
    "STATE_FILE",
    "MAX_LINE_BYTES",
    "ExportFile",
    "ExportManifest",
    "BulkExportProgress",
    "ExportProgressCallback",
    "kickoff_path",
    "kickoff_query",
    "status_url_of",
    "export_poll",
    "parse_manifest",
    "LineSplitter",
    "decode_line",
    "wanted_type",
    "convert",
    "ProgressTracker",
    "ExportState",
    "HashingSink",
]

#: The resume state an export keeps in its output directory.
STATE_FILE = "pymedplum-export.json"
#: The longest NDJSON line (one resource) read into memory; a longer one is an error.
MAX_LINE_BYTES = 256 * 1024 * 1024
NDJSON = "application/fhir+ndjson"

ExportLevel = Literal["system", "patient", "group"]

_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
# An instant as FHIR writes it (Medplum compares `_since` with meta.lastUpdated as text).
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


# ---------------------------------------------------------------- kickoff


def kickoff_path(level: ExportLevel, group_id: str | None) -> str:
    """The kickoff path under the FHIR base: `$export`, `Patient/$export`, `Group/{id}/$export`."""
    if level == "group" or group_id is not None:
        if level not in ("group", "system") or group_id is None:
            raise ValueError("a group export needs group_id (and level='group' or no level)")
        return f"Group/{_check_id(group_id.removeprefix('Group/'), 'group_id')}/$export"
    if level == "patient":
        return "Patient/$export"
    if level == "system":
        return "$export"
    raise ValueError(f"level must be 'system', 'patient' or 'group', got {level!r}")


def _types_text(types: str | Sequence[str]) -> str:
    from pymedplum.fhir import RESOURCE_TYPES

    names = [types] if isinstance(types, str) else list(types)
    if not names:
        raise ValueError("types: pass at least one resource type, or None for all")
    for name in names:
        if not isinstance(name, str) or name not in RESOURCE_TYPES:
            raise ValueError(f"types: {name!r} is not a FHIR resource type")
    return ",".join(names)


def since_text(since: str | datetime) -> str:
    """`_since` as Medplum compares it: an instant in UTC with milliseconds (`...T12:00:00.000Z`).

    A naive datetime is refused: its time zone would be a guess.
    """
    if isinstance(since, datetime):
        if since.tzinfo is None or since.utcoffset() is None:
            raise ValueError("since: a datetime needs a time zone (datetime.now(UTC), ...)")
        utc = since.astimezone(UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if not isinstance(since, str) or not _INSTANT.match(since):
        raise ValueError(
            "since: expected an instant with a time zone (2026-01-01T00:00:00Z) "
            "or an aware datetime"
        )
    return since


def kickoff_query(
    types: str | Sequence[str] | None, since: str | datetime | None
) -> list[tuple[str, str]]:
    """The kickoff's query: `_type` as one comma-separated value (Medplum reads only the
    first `_type`), and `_since`."""
    query: list[tuple[str, str]] = []
    if types is not None:
        query.append(("_type", _types_text(types)))
    if since is not None:
        query.append(("_since", since_text(since)))
    return query


def status_url_of(response: httpx.Response) -> str:
    """The status URL of a kickoff's 202: `Content-Location`, else the outcome's diagnostics."""
    if response.status_code != 202:
        raise MedplumError(
            f"bulk export: the kickoff answered HTTP {response.status_code}, not 202 Accepted"
        )
    location: str | None = response.headers.get("content-location")
    if location:
        return location
    try:
        outcome = _json.loads(response.content) if response.content else None
    except ValueError:
        outcome = None
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    for issue in issues if isinstance(issues, list) else ():
        diagnostics = issue.get("diagnostics") if isinstance(issue, dict) else None
        if isinstance(diagnostics, str) and "://" in diagnostics:
            return diagnostics
    raise MedplumError("bulk export: the kickoff's 202 names no status URL")


# ---------------------------------------------------------------- polling


def export_poll(response: httpx.Response) -> JobPoll:
    """One status poll: 202 while running (with `Retry-After` and `X-Progress` when sent),
    200 with the manifest when complete. Errors (404 once cancelled, 5xx) were raised
    by the client already."""
    if response.status_code == 202:
        return JobPoll(
            False,
            status=response.headers.get("x-progress") or "in progress",
            server_delay=parse_retry_after(response.headers.get("retry-after")),
            progress=response.headers.get("x-progress"),
        )
    if response.status_code != 200 or not response.content:
        raise MedplumError(
            f"bulk export: the status URL answered HTTP {response.status_code} without a manifest"
        )
    try:
        manifest = _json.loads(response.content)
    except ValueError:
        raise MedplumError("bulk export: the manifest is not valid JSON") from None
    return JobPoll(True, manifest, "completed")


# ---------------------------------------------------------------- the manifest


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One output file of an export: NDJSON resources of one type.

    Attributes:
        resource_type: the type of every resource in the file.
        index: its position in the manifest's `output` list.
        name: the local file name (`Patient.000.ndjson`: the type and the file's number
            among that type's files).
        count: the number of resources, when the server says (Medplum does not).
    """

    resource_type: str
    index: int
    name: str
    url: str = field(repr=False)  # a presigned URL: its signature grants access
    count: int | None = None


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """A completed export's manifest (the bulk data spec's `output`, `error`, `deleted`)."""

    status_url: str
    transaction_time: str
    request: str
    requires_access_token: bool
    output: tuple[ExportFile, ...]
    error: tuple[ExportFile, ...]
    deleted: tuple[ExportFile, ...]

    def by_type(self) -> dict[str, list[ExportFile]]:
        """The output files grouped by resource type, in manifest order."""
        grouped: dict[str, list[ExportFile]] = {}
        for item in self.output:
            grouped.setdefault(item.resource_type, []).append(item)
        return grouped


def _files(
    entries: Any, what: str, origin: Origin | None, allow_insecure_http: bool
) -> tuple[ExportFile, ...]:
    """The files of one manifest list; `origin` None: URLs fetched without credentials."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise MedplumError(f"bulk export: the manifest's {what} is not a list")
    seen: dict[str, int] = {}
    files = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MedplumError(f"bulk export: {what}[{index}] is not an object")
        resource_type, url = entry.get("type"), entry.get("url")
        if not isinstance(resource_type, str) or not _RESOURCE_TYPE.match(resource_type):
            raise MedplumError(f"bulk export: {what}[{index}].type is not a resource type")
        if not isinstance(url, str) or "://" not in url:
            raise MedplumError(f"bulk export: {what}[{index}].url is not an absolute URL")
        where = f"bulk export {what}[{index}].url"
        if origin is not None:
            require_same_origin(url, origin, where)
        else:
            check_storage_url(url, allow_insecure_http=allow_insecure_http, what=where)
        number = seen.get(resource_type, 0)
        seen[resource_type] = number + 1
        count = entry.get("count")
        suffix = "" if what == "output" else f".{what}"
        files.append(
            ExportFile(
                resource_type,
                index,
                f"{resource_type}{suffix}.{number:03d}.ndjson",
                url,
                count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
        )
    return tuple(files)


def parse_manifest(
    data: Any, status_url: str, origin: Origin, *, allow_insecure_http: bool = False
) -> ExportManifest:
    """Check a completed export's manifest before any download.

    With `requiresAccessToken: false` (what Medplum sends: presigned storage URLs), files
    are fetched without credentials, from any https origin (plain http only to a loopback
    host or with `allow_insecure_http`), else InsecureTransportError. Otherwise (true, or
    missing) the client sends its token, so every file URL must be on its origin, else
    UnsafeRedirectError naming the origin.
    """
    if not isinstance(data, dict):
        raise MedplumError("bulk export: the manifest is not a JSON object")
    transaction_time = data.get("transactionTime")
    request = data.get("request")
    requires_token = data.get("requiresAccessToken") is not False
    checked = origin if requires_token else None
    return ExportManifest(
        status_url=status_url,
        transaction_time=transaction_time if isinstance(transaction_time, str) else "",
        request=request if isinstance(request, str) else "",
        requires_access_token=requires_token,
        output=_files(data.get("output"), "output", checked, allow_insecure_http),
        error=_files(data.get("error"), "error", checked, allow_insecure_http),
        deleted=_files(data.get("deleted"), "deleted", checked, allow_insecure_http),
    )


# ---------------------------------------------------------------- NDJSON


class LineSplitter:
    """Cuts a byte stream into NDJSON lines; holds at most one partial line in memory."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._partial = bytearray()
        self._max = max_line_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines `chunk` ends (blank lines left out)."""
        pieces = chunk.split(b"\n")
        if self._partial:
            self._partial += pieces[0]
            pieces[0] = bytes(self._partial)
            self._partial.clear()
        self._partial += pieces.pop()
        if len(self._partial) > self._max:
            raise MedplumError(
                f"bulk export: an NDJSON line is longer than {self._max} bytes; refusing to "
                "hold it in memory"
            )
        return [line for line in pieces if line.strip()]

    def end(self) -> list[bytes]:
        """The last line, when the stream did not end with a newline."""
        rest = bytes(self._partial)
        self._partial.clear()
        return [rest] if rest.strip() else []


def decode_line(line: bytes, file: ExportFile, number: int) -> dict[str, Any]:
    """One NDJSON line as a resource dict (decimals exact); errors name the file and line,
    never its content."""
    try:
        resource = _json.loads(line)
    except ValueError:
        resource = None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise MedplumError(f"bulk export: line {number} of {file.name} is not a JSON FHIR resource")
    return resource


def wanted_type(
    resource_type: str | None, as_fhir: type[BaseModel] | None, typed: bool
) -> str | None:
    """The resource type `resources()` reads: the one named, or `as_fhir`'s own."""
    if as_fhir is not None and typed:
        raise ValueError("pass as_fhir= or typed=True, not both")
    if resource_type is None and as_fhir is not None:
        field = as_fhir.model_fields.get("resource_type")
        default = field.default if field is not None else None
        if not isinstance(default, str):
            raise ValueError(
                f"as_fhir={as_fhir.__name__}: name the resource type to read "
                "(resources('Patient', as_fhir=...))"
            )
        resource_type = default
    if resource_type is not None and not _RESOURCE_TYPE.match(resource_type):
        raise ValueError(f"resource_type: {resource_type!r} is not a FHIR resource type")
    return resource_type


def convert(resource: dict[str, Any], as_fhir: type[BaseModel] | None, typed: bool) -> Any:
    """A resource as `resources()` yields it: the dict, `as_fhir`'s model, or its own model."""
    if as_fhir is not None:
        return dict_to_model(as_fhir, resource)
    if typed:
        from pymedplum.fhir import resource_class

        model = resource_class(resource["resourceType"])
        if model is None:
            raise MedplumError(
                f"bulk export: no model for resourceType {resource['resourceType']!r}"
            )
        return model.from_server(resource)
    return resource


# ---------------------------------------------------------------- progress


@dataclass(frozen=True, slots=True)
class BulkExportProgress:
    """Where an export is, for a progress bar (`on_progress=`).

    Attributes:
        phase: `waiting` (the server is still exporting), `file_started`, `file_progress`
            (bytes arrived), `file_done` or `file_skipped` (already complete on disk).
        files_total: output files in the manifest (0 while waiting).
        files_done: files finished or skipped so far.
        bytes_done: bytes received (and of skipped files) so far, all files together.
        resources_done: resources read so far (iteration and Parquet; not raw downloads).
        file: the file this event is about, if any.
        file_bytes_done: bytes of `file` so far.
        file_bytes_total: `file`'s size when the server announced it, else None.
        message: the server's `X-Progress` text while waiting, if it sent one.
    """

    phase: Literal["waiting", "file_started", "file_progress", "file_done", "file_skipped"]
    files_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    resources_done: int = 0
    file: ExportFile | None = None
    file_bytes_done: int = 0
    file_bytes_total: int | None = None
    message: str | None = None


#: Called with a BulkExportProgress as the export moves on.
ExportProgressCallback = Callable[[BulkExportProgress], None]


class ProgressTracker:
    """Counts files, bytes and resources; reports them to an optional callback."""

    def __init__(self, callback: ExportProgressCallback | None, files_total: int = 0) -> None:
        self._callback = callback
        self.files_total = files_total
        self.files_done = 0
        self.bytes_done = 0
        self.resources_done = 0
        self._file: ExportFile | None = None
        self._file_done = 0
        self._file_total: int | None = None

    def _emit(self, phase: Any, message: str | None = None) -> None:
        if self._callback is not None:
            self._callback(
                BulkExportProgress(
                    phase,
                    self.files_total,
                    self.files_done,
                    self.bytes_done,
                    self.resources_done,
                    self._file,
                    self._file_done,
                    self._file_total,
                    message,
                )
            )

    def waiting(self, poll: JobPoll) -> None:
        """The export is still running on the server."""
        self._emit("waiting", poll.progress)

    def file_started(self, file: ExportFile, headers: Mapping[str, str] | None = None) -> None:
        """A file's download begins."""
        self._file, self._file_done, self._file_total = file, 0, None
        length = (headers or {}).get("content-length")
        if length and length.isdigit() and "content-encoding" not in (headers or {}):
            self._file_total = int(length)
        self._emit("file_started")

    def add_bytes(self, count: int) -> None:
        """`count` more bytes of the current file arrived."""
        self._file_done += count
        self.bytes_done += count
        self._emit("file_progress")

    def add_resources(self, count: int) -> None:
        """`count` more resources were read (reported with the next byte or file event)."""
        self.resources_done += count

    def file_done(self) -> None:
        """The current file is complete."""
        self.files_done += 1
        self._emit("file_done")

    def file_skipped(self, file: ExportFile, size: int) -> None:
        """A file already complete on disk was not fetched again."""
        self._file, self._file_done, self._file_total = file, size, size
        self.files_done += 1
        self.bytes_done += size
        self._emit("file_skipped")


# ---------------------------------------------------------------- resume state


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ExportState:
    """The resume state of an output directory (`pymedplum-export.json`).

    It records which export the directory holds (its status URL and transactionTime, its
    output list without the presigned URLs) and each finished file with its size and
    SHA-256, so a later run fetches only what is missing or damaged.
    """

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.directory = directory
        self.data = data

    @property
    def path(self) -> Path:
        return self.directory / STATE_FILE

    @staticmethod
    def read(directory: str | os.PathLike[str]) -> dict[str, Any]:
        """The state of `directory`; FileNotFoundError when it holds none."""
        path = Path(os.fspath(directory)) / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise MedplumError(f"bulk export: {STATE_FILE} is not valid JSON") from None
        if not isinstance(data, dict) or data.get("format") != 1:
            raise MedplumError(f"bulk export: {STATE_FILE} is not a pymedplum export state")
        return data

    @classmethod
    def open(cls, directory: str | os.PathLike[str], manifest: ExportManifest) -> ExportState:
        """The state of `directory` for this export; created when the directory has none.

        A directory holding another export's files is refused rather than mixed.
        """
        path = Path(os.fspath(directory))
        path.mkdir(parents=True, exist_ok=True)
        if (path / STATE_FILE).exists():
            data = cls.read(path)
            if (
                data.get("status_url") != manifest.status_url
                or data.get("transaction_time") != manifest.transaction_time
            ):
                raise MedplumError(
                    f"bulk export: {path} holds the files of another export; use an empty "
                    "directory, or client.resume_bulk_export(directory) to finish that one"
                )
            if data.get("output") != _output_list(manifest):
                raise MedplumError(
                    "bulk export: the server's output list differs from the one recorded in "
                    f"{STATE_FILE}; refusing to mix files"
                )
            return cls(path, data)
        state = cls(
            path,
            {
                "format": 1,
                "status_url": manifest.status_url,
                "transaction_time": manifest.transaction_time,
                "request": manifest.request,
                "output": _output_list(manifest),
                "files": {},
                "parquet": {},
            },
        )
        state.save()
        return state

    def save(self) -> None:
        """Write the state atomically (a crash leaves the old or the new one, never half)."""
        text = json.dumps(self.data, indent=2, sort_keys=True)
        fd, temp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def is_complete(self, kind: Literal["files", "parquet"], name: str) -> int | None:
        """The size of `name` when it was recorded complete and is intact on disk, else None."""
        entry = self.data.get(kind, {}).get(name)
        target = self.directory / name
        if not isinstance(entry, dict) or not target.is_file():
            return None
        size = target.stat().st_size
        if size != entry.get("bytes") or _sha256_of(target) != entry.get("sha256"):
            return None
        return size

    def record(self, kind: Literal["files", "parquet"], name: str, **facts: Any) -> None:
        """Mark `name` complete (its size and SHA-256 from disk unless given) and save."""
        target = self.directory / name
        facts.setdefault("bytes", target.stat().st_size)
        facts.setdefault("sha256", _sha256_of(target))
        self.data.setdefault(kind, {})[name] = facts
        self.save()


def _output_list(manifest: ExportManifest) -> list[dict[str, Any]]:
    return [{"type": f.resource_type, "index": f.index, "name": f.name} for f in manifest.output]


class HashingSink(DownloadSink):
    """A download sink that also takes the SHA-256 of what it writes and counts progress."""

    def __init__(self, path: Path, tracker: ProgressTracker, file: ExportFile) -> None:
        super().__init__(path=path, max_bytes=None, on_progress=None)
        self.sha256 = hashlib.sha256()
        self._tracker = tracker
        self._file = file

    def start(self, headers: httpx.Headers) -> None:
        super().start(headers)
        self._tracker.file_started(self._file, headers)

    def write(self, chunk: bytes) -> None:
        super().write(chunk)
        self.sha256.update(chunk)
        self._tracker.add_bytes(len(chunk))
