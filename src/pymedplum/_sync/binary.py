# Generated from src/pymedplum/_async/binary.py by codegen/unasync.py: run `make generate`.
"""Binary content, attachments, media and documents."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

from pymedplum import _binary, _core
from pymedplum._binary import (
    BinarySource,
    DownloadSink,
    ProgressCallback,
)
from pymedplum._core import Call, _merge_headers
from pymedplum._sync._base import ClientBase


class BinaryMethods(ClientBase):
    """Binary content, attachments, media and documents."""

    # ------------------------------------------------------------ Binary

    def upload_binary(
        self,
        content: BinarySource,
        content_type: str,
        *,
        filename: str | None = None,
        security_context: str | None = None,
        on_progress: ProgressCallback | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Upload content as a FHIR Binary; return the Binary the server stored.

        Example:
            binary = client.upload_binary(Path("report.pdf"), "application/pdf")
            print(binary["id"])

        `content` is bytes, a `pathlib.Path` or a file opened with `"rb"`: files are
        streamed in chunks, never read into memory whole. `filename` is sent as Medplum's
        `_filename`; `security_context` (`"Patient/123"`) as `X-Security-Context`, so that
        access to the Binary follows that resource. `on_progress(bytes_sent, total)` is
        called as the body goes out (`total` is None for a stream of unknown size). A plain
        create: it is not replayed after a failure that may have stored it; a non-seekable
        stream cannot be resent at all (a 401 or 429 then raises MedplumError).
        """
        upload = _binary.upload_body(content, on_progress)
        params = {"_filename": filename} if filename is not None else None
        headers = _merge_headers(
            None, Content_Type=content_type, X_Security_Context=security_context
        )
        url = self._url(self.fhir_base_url + "Binary", params)
        call = Call("POST", url, headers, None, None, replay_safe=False)
        return self._send(call, on_behalf_of, upload=upload, decode=_core.JSON)

    def download_binary(
        self,
        binary_id: str,
        *,
        max_bytes: int | None = _binary.DEFAULT_MAX_DOWNLOAD_BYTES,
        on_behalf_of: str | None = None,
    ) -> bytes:
        """The raw content of a Binary (`abc` or `Binary/abc`), held in memory.

        Example:
            pdf = client.download_binary("binary-123")

        Content beyond `max_bytes` (100 MiB by default; None for no limit) raises
        MedplumError: refused from the announced Content-Length before a byte is read,
        or stopped as soon as the count passes it. For large files use
        `download_binary_to_file`, which streams to disk.
        """
        sink = DownloadSink.to_memory(max_bytes)
        self._send(self._build_download(binary_id), on_behalf_of, sink=sink)
        return sink.value()

    def download_binary_to_file(
        self,
        binary_id: str,
        destination: os.PathLike[str] | IO[bytes],
        *,
        max_bytes: int | None = None,
        on_progress: ProgressCallback | None = None,
        on_behalf_of: str | None = None,
    ) -> int:
        """Stream a Binary's content into a file; return the number of bytes written.

        Example:
            size = client.download_binary_to_file("binary-123", Path("report.pdf"))

        `destination` is a `pathlib.Path` (written to a temporary file beside it and moved
        into place when complete, so a failed download leaves no partial file) or a binary
        file object (written as the bytes arrive). `max_bytes` caps the size (None: no
        cap); `on_progress(bytes_done, total)` follows the download (`total` is None when
        the server does not announce it).
        """
        sink = DownloadSink.to_destination(destination, max_bytes, on_progress)
        self._send(self._build_download(binary_id), on_behalf_of, sink=sink)
        return sink.done

    def _build_download(self, binary_id: str) -> Call:
        # Any Accept but FHIR JSON gets the raw bytes (FHIR JSON gets the Binary resource).
        url = self._resource_url("Binary", _binary.binary_id(binary_id))
        return Call("GET", url, _merge_headers({"Accept": "*/*"}))

    # ------------------------------------------------------------ attachments and media

    def create_attachment(
        self,
        content: BinarySource,
        content_type: str,
        *,
        filename: str | None = None,
        security_context: str | None = None,
        on_progress: ProgressCallback | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Upload content as a Binary and return an Attachment pointing at it.

        Example:
            attachment = client.create_attachment(Path("scan.jpg"), "image/jpeg",
                                                        filename="scan.jpg")
            # {"contentType": "image/jpeg", "url": ..., "title": "scan.jpg"}

        As @medplum/core's `createAttachment`: `url` is the Binary's `url` from the server
        (`Binary/<id>` when it gives none), `title` the filename. Arguments as for
        `upload_binary`.
        """
        binary = self.upload_binary(
            content,
            content_type,
            filename=filename,
            security_context=security_context,
            on_progress=on_progress,
            on_behalf_of=on_behalf_of,
        )
        return _binary.attachment_for(binary, content_type, filename)

    def create_media(
        self,
        content: BinarySource,
        content_type: str,
        *,
        filename: str | None = None,
        additional_fields: Mapping[str, Any] | None = None,
        security_context: str | None = None,
        on_progress: ProgressCallback | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Create a Media for uploaded content; return the completed Media.

        Example:
            media = client.create_media(
                Path("wound.jpg"), "image/jpeg",
                additional_fields={"subject": {"reference": "Patient/123"}},
            )

        As @medplum/core's `createMedia`: a Media with `status: preparation` (plus
        `additional_fields`) is created, the content is uploaded with the Media as its
        security context (unless `security_context` is given), then the Media is updated
        to `completed` with the attachment. If the upload fails, the Media stays in
        preparation.
        """
        media_body = _binary.media_in_preparation(content_type, additional_fields)
        create = self._build_create(media_body, None, None)
        media: dict[str, Any] = self._json(create, on_behalf_of)
        context = security_context or f"Media/{media['id']}"
        attachment = self.create_attachment(
            content,
            content_type,
            filename=filename,
            security_context=context,
            on_progress=on_progress,
            on_behalf_of=on_behalf_of,
        )
        completed = {**media, "status": "completed", "content": attachment}
        update = self._build_update(completed, None, None, True)
        return self._json(update, on_behalf_of)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ documents

    def create_document_reference(
        self,
        patient_id: str,
        binary_id: str,
        content_type: str,
        title: str | None = None,
        description: str | None = None,
        doc_type_code: Mapping[str, Any] | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Create a current DocumentReference for a Patient pointing at `Binary/<binary_id>`.

        Example:
            binary = client.upload_binary(pdf_bytes, "application/pdf")
            doc = client.create_document_reference(
                "patient-123", binary["id"], "application/pdf",
                title="Discharge Summary",
                doc_type_code={"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
            )

        `title` goes on the attachment, `description` and `doc_type_code` (a
        CodeableConcept, as `type`) on the DocumentReference.
        """
        resource = _binary.document_reference(
            patient_id,
            _binary.binary_id(binary_id),
            content_type,
            title,
            description,
            doc_type_code,
        )
        call = self._build_create(resource, None, None)
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    def export_ccda(
        self,
        patient_id: str,
        *,
        document_type: str | None = None,
        on_behalf_of: str | None = None,
    ) -> str:
        """A Patient's record as a C-CDA XML document (`Patient/{id}/$ccda-export`).

        Example:
            xml = client.export_ccda("patient-123")

        `document_type` is Medplum's `type` parameter (`referral`, `discharge`, `summary`).
        """
        url = self._resource_url("Patient", _core._check_id(patient_id, "patient_id"))
        params = {"type": document_type} if document_type is not None else None
        url = self._url(url + "/$ccda-export", params)
        headers = _merge_headers({"Accept": "application/cda+xml, application/xml, */*"})
        response = self._send(Call("GET", url, headers), on_behalf_of)
        return response.text
