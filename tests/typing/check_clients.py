"""Static typing checks, run by `mypy --strict` (make typecheck), never executed.

An expected type error is marked `# type: ignore[code]`: mypy's warn_unused_ignores (on
under --strict) fails the run if the error ever disappears.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from typing import Any, assert_type

from pymedplum import AsyncMedplumClient, FHIRBundle, MedplumClient
from pymedplum.fhir import HumanName, Observation, Patient, Quantity
from pymedplum.search import PatientSearchParams


def sync_client(client: MedplumClient) -> None:
    assert_type(client.read_resource("Patient", "1"), dict[str, Any])
    assert_type(client.read_resource("Patient", "1", as_fhir=Patient), Patient)
    assert_type(client.create_resource(Patient(gender="female")), dict[str, Any])
    assert_type(client.search_resources("Patient", {"family": "Smith"}), dict[str, Any])
    assert_type(
        client.search_resources(
            "Patient", {"name:exact": "Ann"}, return_bundle=True, as_fhir=Patient
        ),
        FHIRBundle[Patient],
    )
    assert_type(
        client.search_one("Observation", {"code": "1234-5"}, as_fhir=Observation),
        Observation | None,
    )
    assert_type(client.search_resource_pages("Patient", {"_count": 50}), Iterator[dict[str, Any]])
    assert_type(client.search_resource_pages("Patient", as_fhir=Patient), Iterator[Patient])
    # Chains and anything unlisted go as (name, value) pairs.
    client.search_resources("Observation", [("subject:Patient.name", "Smith"), ("date", "ge2020")])

    # The string form takes any key (chains included), as the dict-based API always has.
    client.search_resources("Observation", {"patient.family": "Smith"})
    client.read_resource("Patinet", "1")  # type: ignore[call-overload]
    client.search_resources("Patinet", {"family": "Smith"})  # type: ignore[call-overload]

    # search(Model, ...): generic over the model; the query is checked against its TypedDict.
    assert_type(
        client.search(Patient, {"family": "Smith", "name:exact": "Ann"}), FHIRBundle[Patient]
    )
    assert_type(client.search(Patient), FHIRBundle[Patient])
    assert_type(
        client.search(
            Observation,
            {"code": "8867-4", "date": ["ge2020", "lt2021"], "_count": 50},
            extra_query=[("subject:Patient.name", "Smith")],
            on_behalf_of="ProjectMembership/1",
        ),
        FHIRBundle[Observation],
    )
    for patient in client.search(Patient, {"birthdate": date(2000, 1, 1)}):
        assert_type(patient, Patient)
    params: PatientSearchParams = {"family": "Smith"}
    client.search(Patient, params)
    client.search(Patient, {"familly": "Smith"})  # type: ignore[typeddict-unknown-key]
    client.search(Patient, {"code": "x"})  # type: ignore[typeddict-unknown-key]
    client.search(Patient, {"family": object()})  # type: ignore[typeddict-item]
    client.search(Patient, {}, on_behalf="x")  # type: ignore[call-arg]
    client.search(HumanName, {"family": "Smith"})  # type: ignore[arg-type]

    assert_type(
        client.search_resource_pages("Patient", as_fhir=Patient, prefetch=False), Iterator[Patient]
    )
    assert_type(client.read_history_pages("Patient", "1", prefetch=False), Iterator[Any])
    MedplumClient(auto_batch_ms=10)  # type: ignore[call-arg]  # async client only


async def async_client(client: AsyncMedplumClient) -> None:
    assert_type(await client.read_resource("Patient", "1"), dict[str, Any])
    assert_type(await client.read_resource("Patient", "1", as_fhir=Patient), Patient)
    assert_type(await client.search_resources("Patient", {"family": "Smith"}), dict[str, Any])
    assert_type(
        await client.search_resources("Patient", return_bundle=True, as_fhir=Patient),
        FHIRBundle[Patient],
    )
    assert_type(
        await client.search_one("Patient", {"identifier": "x|1"}, as_fhir=Patient), Patient | None
    )
    assert_type(client.search_resource_pages("Patient", as_fhir=Patient), AsyncIterator[Patient])
    assert_type(await client.search(Patient, {"family": "Smith"}), FHIRBundle[Patient])
    await client.search(Patient, {"familly": "Smith"})  # type: ignore[typeddict-unknown-key]
    assert_type(
        client.search_resource_pages("Patient", prefetch=False), AsyncIterator[dict[str, Any]]
    )
    await client.read_resource("Patinet", "1")  # type: ignore[call-overload]
    AsyncMedplumClient(auto_batch_ms=10)


def models() -> None:
    patient = Patient(birth_date="2000-01-01", name=[HumanName(family="X")])
    assert_type(patient.birth_date, str | None)
    assert_type(patient.name, list[HumanName] | None)
    assert_type(Quantity(value=Decimal("1.50")).value, Decimal | None)
    Patient(gender="m")  # type: ignore[arg-type]
    Patient(birth_date=20000101)  # type: ignore[arg-type]
