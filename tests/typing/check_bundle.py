"""Static typing checks of FHIRBundle, run by `mypy --strict` (make typecheck), never executed."""

from __future__ import annotations

from typing import Any, assert_type

from pymedplum import FHIRBundle, MedplumClient
from pymedplum.fhir import Observation, Patient


def typed_bundle(client: MedplumClient) -> None:
    bundle = client.search_resources("Patient", return_bundle=True, as_fhir=Patient)
    for patient in bundle:
        assert_type(patient, Patient)
    assert_type(bundle.get_resources(), list[Patient])
    assert_type(bundle.get_resources(10), list[Patient])
    assert_type(list(bundle), list[Patient])
    # Another model, for the entries of its type (an _include'd Observation, say).
    assert_type(bundle.get_resources(model=Observation), list[Observation])
    assert_type(bundle.get_resources_typed(Observation), list[Observation])
    first = bundle.get_resources()[0]
    assert_type(first.birth_date, str | None)  # a Patient attribute...
    print(first.status)  # type: ignore[attr-defined]  # ...and not an Observation one


def bundles_built_by_hand(data: dict[str, Any]) -> None:
    assert_type(FHIRBundle(data, Patient), FHIRBundle[Patient])
    for patient in FHIRBundle(data, Patient):
        assert_type(patient, Patient)
    for resource in FHIRBundle(data):
        assert_type(resource, dict[str, Any])
    assert_type(FHIRBundle(data).get_resources(), list[dict[str, Any]])
    assert_type(FHIRBundle(data).get_resources(model=Patient), list[Patient])
