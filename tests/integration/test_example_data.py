"""The resources we wrote by hand and the synthetic patient bundles are what Medplum itself
accepts: the local server's `$validate` runs `validateResource` of @medplum/core, on the
definitions the models are generated from."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.shared_data import MEDPLUM_PARTIAL, medplum_example_files
from tests.support import synthetic

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _validate(fhir: httpx.Client, resource_type: str, body: bytes) -> httpx.Response:
    return fhir.post(f"{resource_type}/$validate", content=body, headers=FHIR_JSON)


@pytest.mark.parametrize("path", medplum_example_files(), ids=lambda p: p.name)
def test_medplum_example_is_valid_for_medplum(fhir: httpx.Client, path: Path) -> None:
    resource_type = json.loads(path.read_bytes())["resourceType"]
    response = _validate(fhir, resource_type, path.read_bytes())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", sorted(MEDPLUM_PARTIAL.glob("*.json")), ids=lambda p: p.name)
def test_medplum_resource_without_required_elements_is_invalid_for_medplum(
    fhir: httpx.Client, path: Path
) -> None:
    response = _validate(fhir, "ProjectMembership", path.read_bytes())
    assert response.status_code == 400
    assert "Missing required property" in response.text


@pytest.mark.parametrize("size", sorted(synthetic.SIZES))
def test_synthetic_patient_bundle_is_valid_for_medplum(fhir: httpx.Client, size: str) -> None:
    response = _validate(fhir, "Bundle", synthetic.bundle_bytes(size))
    assert response.status_code == 200, response.text[:2000]
