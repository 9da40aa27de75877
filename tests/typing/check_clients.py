"""Static typing checks, run by `mypy --strict` (make typecheck), never executed.

An expected type error is marked `# type: ignore[code]`: mypy's warn_unused_ignores (on
under --strict) fails the run if the error ever disappears.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any, assert_type

from pymedplum import AsyncMedplumClient, FHIRBundle, MedplumClient
from pymedplum.fhir import HumanName, Observation, Patient, Quantity


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

    assert_type(
        client.search_resource_pages("Patient", as_fhir=Patient, prefetch=False), Iterator[Patient]
    )
    assert_type(client.read_history_pages("Patient", "1", prefetch=False), Iterator[Any])

    client.read_resource("Patinet", "1")  # type: ignore[call-overload]
    client.search_resources("Patient", {"familly": "Smith"})  # type: ignore[call-overload]
    client.search_resources("Patient", {"code": "x"})  # type: ignore[call-overload]
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
    assert_type(
        client.search_resource_pages("Patient", prefetch=False), AsyncIterator[dict[str, Any]]
    )
    await client.search_resources("Patient", {"familly": "Smith"})  # type: ignore[call-overload]
    await client.read_resource("Patinet", "1")  # type: ignore[call-overload]
    AsyncMedplumClient(auto_batch_ms=10)


def models() -> None:
    patient = Patient(birth_date="2000-01-01", name=[HumanName(family="X")])
    assert_type(patient.birth_date, str | None)
    assert_type(patient.name, list[HumanName] | None)
    assert_type(Quantity(value=Decimal("1.50")).value, Decimal | None)
    Patient(gender="m")  # type: ignore[arg-type]
    Patient(birth_date=20000101)  # type: ignore[arg-type]
