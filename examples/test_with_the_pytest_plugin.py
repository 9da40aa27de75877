"""A test file of your own, using the pymedplum pytest plugin (docs/testing.md).

With pymedplum installed (`pip install 'pymedplum[testing]'`, Node >= 20.10 and npm on PATH),
`pytest this_file.py` starts the local Medplum server once, gives each test a client on a
server reset to its seed, and stops the server at the end. Nothing else to configure.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from pymedplum import AsyncMedplumClient, MedplumClient, NotFoundError
from pymedplum.fhir import Observation, Patient
from pymedplum.testing import LocalMedplumServer


def record_weight(client: MedplumClient, patient_id: str, kg: Decimal) -> dict[str, object]:
    """The code under test: records a body weight for a patient."""
    observation = Observation.model_validate(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": kg, "unit": "kg"},
        }
    )
    return client.create_resource(observation)


def test_a_weight_is_recorded_for_the_patient(medplum_client: MedplumClient) -> None:
    patient = medplum_client.create_resource(Patient(name=[{"family": "Chalmers"}]))
    record_weight(medplum_client, patient["id"], Decimal("72.50"))
    found = medplum_client.search_resources("Observation", {"subject": f"Patient/{patient['id']}"})
    (weight,) = [entry["resource"] for entry in found["entry"]]
    assert weight["valueQuantity"]["value"] == 72.5


def test_every_test_starts_from_the_seed(medplum_client: MedplumClient) -> None:
    assert "entry" not in medplum_client.search_resources("Observation")


def test_a_read_survives_a_503(
    medplum_client: MedplumClient, medplum_server: LocalMedplumServer
) -> None:
    medplum_server.fail_next(503, path_prefix="/fhir/R4/Patient")
    assert "entry" not in medplum_client.search_resources("Patient")
    assert [r["status"] for r in medplum_server.fhir_requests()] == [503, 200]


def test_a_missing_patient_is_not_found(medplum_client: MedplumClient) -> None:
    with pytest.raises(NotFoundError):
        medplum_client.read_resource("Patient", "00000000-0000-4000-8000-000000000000")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_async_client(async_medplum_client: AsyncMedplumClient) -> None:
    created = await async_medplum_client.create_resource(Patient(name=[{"family": "Okafor"}]))
    patient = await async_medplum_client.read_resource("Patient", created["id"], as_fhir=Patient)
    assert patient.name is not None and patient.name[0].family == "Okafor"
