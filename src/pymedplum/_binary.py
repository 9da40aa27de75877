"""Binary content without the wire: upload bodies, download sinks, attachment-shaped resources.

Uploads and downloads stream in CHUNK_SIZE pieces, so a payload is never held in memory
whole (unless the caller asks for bytes). The clients' one send loop (`_send` in
pymedplum/_async/_base.py) drives an `UploadBody` per attempt and a `DownloadSink`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from pymedplum._core import _check_id
from pymedplum.exceptions import MedplumError

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "BinarySource",
    "ProgressCallback",
    "UploadBody",
    "DownloadSink",
    "upload_body",
    "binary_id",
    "attachment_for",
    "document_reference",
    "media_in_preparation",
]

#: Bytes read from a file or a response at a time.
CHUNK_SIZE = 64 * 1024
#: The default cap of `download_binary`, which holds the content in memory (100 MiB).
DEFAULT_MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024

#: What an upload reads from: bytes, a path, or a binary file object.
BinarySource = bytes | bytearray | memoryview | os.PathLike[str] | IO[bytes]
#: Called as `(bytes_done, bytes_total)`; `bytes_total` is None when the size is unknown.
ProgressCallback = Callable[[int, int | None], None]


class UploadBody:
    """A request body read in chunks, opened afresh for every wire attempt.

    A replay (after a 401 refresh or a 429) resends the body from its start: bytes and
    paths always can, a file object only when it is seekable.
    """

    def __init__(
        self,
        data: bytes | None,
        path: Path | None,
        stream: IO[bytes] | None,
        size: int | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        self._data = data
        self._path = path
        self._stream = stream
        self._start = _tell(stream) if stream is not None else None
        self.size = size
        self._on_progress = on_progress
        self._attempts = 0
        self._open: IO[bytes] | None = None

    @property
    def replayable(self) -> bool:
        """Whether another attempt can send the body again from its start."""
        return self._stream is None or self._start is not None or self._attempts == 0

    def open_attempt(self) -> Iterator[bytes]:
        """The chunks of one attempt; call `close_attempt` after it, whatever happened."""
        if not self.replayable:
            raise MedplumError(
                "upload: the server asked for the request to be sent again, but the body "
                "is a stream that cannot be rewound; pass bytes, a path or a seekable file"
            )
        self._attempts += 1
        if self._data is not None:
            return self._counted(_memory_chunks(self._data))
        if self._path is not None:
            self._open = self._path.open("rb")
            return self._counted(_file_chunks(self._open))
        assert self._stream is not None
        if self._start is not None:
            self._stream.seek(self._start)
        return self._counted(_file_chunks(self._stream))

    def close_attempt(self) -> None:
        """Close what `open_attempt` opened (a file opened from a path)."""
        if self._open is not None:
            self._open.close()
            self._open = None

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        progress = self._on_progress
        done = 0
        if progress is not None:
            progress(0, self.size)
        for chunk in chunks:
            yield chunk
            # Resumed when the transport asks for more: the chunk has been handed on.
            done += len(chunk)
            if progress is not None:
                progress(done, self.size)


def _tell(stream: IO[bytes]) -> int | None:
    """The current position of a seekable stream, or None."""
    try:
        if not stream.seekable():
            return None
        return stream.tell()
    except (OSError, ValueError):
        return None


def _memory_chunks(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_SIZE):
        yield bytes(view[start : start + CHUNK_SIZE])


def _file_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            return
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError("upload: the file object must be opened in binary mode ('rb')")
        yield bytes(chunk)


def _remaining_size(stream: IO[bytes]) -> int | None:
    """Bytes from the current position to the end of a seekable stream, or None."""
    start = _tell(stream)
    if start is None:
        return None
    try:
        fileno = stream.fileno()
    except (OSError, ValueError, AttributeError):
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
        return max(end - start, 0)
    return max(os.fstat(fileno).st_size - start, 0)


def upload_body(content: BinarySource, on_progress: ProgressCallback | None) -> UploadBody:
    """The upload body for `content`: bytes, a path (`pathlib.Path`), or a binary file object.

    A plain `str` is refused: it could be a path or text, and guessing would upload the
    wrong thing (use `Path(...)` or `text.encode()`).
    """
    if isinstance(content, bytes | bytearray | memoryview):
        data = bytes(content)
        return UploadBody(data, None, None, len(data), on_progress)
    if isinstance(content, str):
        raise TypeError(
            "upload: content is a str; pass bytes (text.encode()), a pathlib.Path, or a "
            "file opened in binary mode"
        )
    if isinstance(content, os.PathLike):
        path = Path(os.fspath(content))
        return UploadBody(None, path, None, path.stat().st_size, on_progress)
    if hasattr(content, "read"):
        return UploadBody(None, None, content, _remaining_size(content), on_progress)
    raise TypeError(
        f"upload: expected bytes, a path or a binary file object, got {type(content).__name__}"
    )


def stream_headers(headers: httpx.Headers, size: int | None) -> httpx.Headers:
    """The headers of a streamed request: Content-Length when the size is known."""
    result = httpx.Headers(headers)
    for name in ("content-length", "transfer-encoding"):
        if name in result:
            del result[name]
    if size is not None:
        result["Content-Length"] = str(size)
    return result


# ---------------------------------------------------------------- downloads


class DownloadSink:
    """Where a downloaded body goes, chunk by chunk, never past `max_bytes`.

    `target` is a binary file object; with a `path`, the body is written to a temporary
    file beside it and moved into place only when complete (no partial file is left).
    """

    def __init__(
        self,
        *,
        target: IO[bytes] | None = None,
        path: Path | None = None,
        max_bytes: int | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
            raise ValueError("max_bytes must be a non-negative int or None")
        self._target = target
        self._path = path
        self._temp: str | None = None
        self._max = max_bytes
        self._on_progress = on_progress
        self.done = 0
        self.total: int | None = None

    @classmethod
    def to_memory(cls, max_bytes: int | None) -> DownloadSink:
        """A sink that collects the body in memory (`value()`)."""
        return cls(target=io.BytesIO(), max_bytes=max_bytes, on_progress=None)

    @classmethod
    def to_destination(
        cls,
        destination: os.PathLike[str] | IO[bytes],
        max_bytes: int | None,
        on_progress: ProgressCallback | None,
    ) -> DownloadSink:
        """A sink writing to a path (atomically) or to a binary file object."""
        if isinstance(destination, str):
            raise TypeError("destination: pass a pathlib.Path or a file opened with 'wb'")
        if isinstance(destination, os.PathLike):
            path = Path(os.fspath(destination))
            return cls(path=path, max_bytes=max_bytes, on_progress=on_progress)
        if hasattr(destination, "write"):
            return cls(target=destination, max_bytes=max_bytes, on_progress=on_progress)
        raise TypeError(
            f"destination: expected a path or a binary file object, got "
            f"{type(destination).__name__}"
        )

    def start(self, headers: httpx.Headers) -> None:
        """Check the announced size before reading a byte; open the file."""
        length = headers.get("content-length")
        announced = int(length) if length is not None and length.isdigit() else None
        if announced is not None and self._max is not None and announced > self._max:
            raise MedplumError(
                f"download: the content is {announced} bytes, more than max_bytes="
                f"{self._max}; nothing was read"
            )
        # A compressed body's Content-Length is not the size of what is written.
        self.total = announced if "content-encoding" not in headers else None
        if self._path is not None:
            fd, self._temp = tempfile.mkstemp(
                prefix=f".{self._path.name}.", suffix=".part", dir=self._path.parent
            )
            self._target = os.fdopen(fd, "wb")
        if self._on_progress is not None:
            self._on_progress(0, self.total)

    def write(self, chunk: bytes) -> None:
        """Write one chunk; refuse the one that would pass `max_bytes`."""
        done = self.done + len(chunk)
        if self._max is not None and done > self._max:
            raise MedplumError(
                f"download: the content is larger than max_bytes={self._max}; "
                "the download was stopped"
            )
        assert self._target is not None
        self._target.write(chunk)
        self.done = done
        if self._on_progress is not None:
            self._on_progress(done, self.total)

    def finish(self) -> None:
        """Complete the download: move the temporary file into place."""
        if self._temp is not None and self._path is not None:
            assert self._target is not None
            self._target.close()
            os.replace(self._temp, self._path)
            self._temp = None

    def abandon(self) -> None:
        """After a failure: remove the temporary file (a caller's file object is left as is)."""
        if self._temp is not None:
            if self._target is not None:
                self._target.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None

    def value(self) -> bytes:
        """The collected bytes of a `to_memory` sink."""
        assert isinstance(self._target, io.BytesIO)
        return self._target.getvalue()


# ---------------------------------------------------------------- resources


def binary_id(value: str) -> str:
    """A Binary id from `abc` or `Binary/abc`."""
    if isinstance(value, str) and value.startswith("Binary/"):
        value = value[len("Binary/") :]
    return _check_id(value, "binary_id")


def attachment_for(
    binary: Mapping[str, Any], content_type: str, filename: str | None
) -> dict[str, Any]:
    """The Attachment for an uploaded Binary, as @medplum/core's createAttachment makes it.

    `url` is the Binary's `url` from the server, or `Binary/<id>` when the server gave none.
    """
    url = binary.get("url")
    if not isinstance(url, str) or not url:
        url = f"Binary/{binary.get('id')}"
    attachment: dict[str, Any] = {"contentType": content_type, "url": url}
    if filename is not None:
        attachment["title"] = filename
    return attachment


def document_reference(
    patient_id: str,
    binary: str,
    content_type: str,
    title: str | None,
    description: str | None,
    doc_type_code: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A current DocumentReference for a Patient, pointing at `Binary/<id>`."""
    patient = patient_id[len("Patient/") :] if patient_id.startswith("Patient/") else patient_id
    attachment: dict[str, Any] = {"contentType": content_type, "url": f"Binary/{binary}"}
    if title is not None:
        attachment["title"] = title
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{_check_id(patient, 'patient_id')}"},
        "content": [{"attachment": attachment}],
    }
    if doc_type_code is not None:
        resource["type"] = dict(doc_type_code)
    if description is not None:
        resource["description"] = description
    return resource


def media_in_preparation(
    content_type: str, additional_fields: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The Media that `create_media` creates before uploading its content."""
    media: dict[str, Any] = {
        "resourceType": "Media",
        "status": "preparation",
        "content": {"contentType": content_type},
    }
    if additional_fields:
        media.update(additional_fields)
    media["resourceType"] = "Media"
    return media
