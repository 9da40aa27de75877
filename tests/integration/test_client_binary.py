"""Both clients against the local Medplum server: Binary upload and download (bytes, paths,
file objects, progress, size caps), attachments, media, DocumentReference and C-CDA export.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pymedplum import MedplumError
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

PAYLOAD = bytes(range(256)) * 1024  # 256 KiB: several chunks


def test_upload_then_download_bytes(client: Driver) -> None:
    binary = client.upload_binary(b"%PDF-1.7 hello", "application/pdf")
    assert binary["resourceType"] == "Binary" and binary["contentType"] == "application/pdf"
    assert client.download_binary(binary["id"]) == b"%PDF-1.7 hello"
    assert client.download_binary(f"Binary/{binary['id']}") == b"%PDF-1.7 hello"


def test_upload_a_path_and_download_to_a_path(client: Driver, tmp_path: Path) -> None:
    source = tmp_path / "scan.bin"
    source.write_bytes(PAYLOAD)
    sent: list[tuple[int, int | None]] = []
    binary = client.upload_binary(
        source, "application/octet-stream", on_progress=lambda d, t: sent.append((d, t))
    )
    assert sent[-1] == (len(PAYLOAD), len(PAYLOAD))
    target = tmp_path / "copy.bin"
    received: list[tuple[int, int | None]] = []
    written = client.download_binary_to_file(
        binary["id"], target, on_progress=lambda d, t: received.append((d, t))
    )
    assert written == len(PAYLOAD) and target.read_bytes() == PAYLOAD
    assert received[-1][0] == len(PAYLOAD)


def test_upload_from_a_file_object_with_filename_and_security_context(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    binary = client.upload_binary(
        io.BytesIO(b"note"),
        "text/plain",
        filename="note.txt",
        security_context=f"Patient/{patient['id']}",
    )
    logged = [r for r in medplum.fhir_requests() if r["path"].endswith("/Binary")]
    assert logged[-1]["query"] == {"_filename": ["note.txt"]}
    stored = client.read_resource("Binary", binary["id"])
    assert stored["securityContext"] == {"reference": f"Patient/{patient['id']}"}
    out = io.BytesIO()
    client.download_binary_to_file(binary["id"], out)
    assert out.getvalue() == b"note"


def test_download_over_the_cap_is_refused(client: Driver, tmp_path: Path) -> None:
    binary = client.upload_binary(PAYLOAD, "application/octet-stream")
    with pytest.raises(MedplumError, match="max_bytes"):
        client.download_binary(binary["id"], max_bytes=1000)
    target = tmp_path / "capped.bin"
    with pytest.raises(MedplumError, match="max_bytes"):
        client.download_binary_to_file(binary["id"], target, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_create_attachment_points_at_the_binary(client: Driver) -> None:
    attachment = client.create_attachment(b"img", "image/png", filename="dot.png")
    assert attachment["contentType"] == "image/png" and attachment["title"] == "dot.png"
    assert attachment["url"]


def test_create_media_completes_with_its_content(client: Driver) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    media = client.create_media(
        b"\x89PNG",
        "image/png",
        filename="wound.png",
        additional_fields={"subject": {"reference": f"Patient/{patient['id']}"}},
    )
    assert media["status"] == "completed"
    assert media["content"]["contentType"] == "image/png"
    assert media["subject"] == {"reference": f"Patient/{patient['id']}"}
    stored = client.read_resource("Media", media["id"])
    assert stored["meta"]["versionId"] == media["meta"]["versionId"]


def test_create_document_reference_for_an_uploaded_pdf(client: Driver) -> None:
    patient = client.create_resource({"resourceType": "Patient"})
    binary = client.upload_binary(b"%PDF", "application/pdf")
    doc = client.create_document_reference(
        patient["id"],
        binary["id"],
        "application/pdf",
        title="Discharge Summary",
        description="Summary of stay",
        doc_type_code={"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
    )
    stored = client.read_resource("DocumentReference", doc["id"])
    assert stored["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert stored["content"][0]["attachment"]["url"] == f"Binary/{binary['id']}"
    assert stored["status"] == "current"


def test_export_ccda_returns_xml(client: Driver) -> None:
    patient = client.create_resource(
        {"resourceType": "Patient", "name": [{"given": ["Ann"], "family": "Lee"}]}
    )
    xml = client.export_ccda(patient["id"])
    assert xml.startswith("<?xml") and "ClinicalDocument" in xml and "Lee" in xml
