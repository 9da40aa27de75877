"""Batches and transactions against the local Medplum server, with both clients:
conditional_create_batch, per-entry results, and the transaction builder."""

from __future__ import annotations

from typing import Any

import pytest

from pymedplum import BundleEntryError, FHIRBundle, GoneError
from pymedplum.testing.local_server import LocalMedplumServer
from pymedplum.transaction import TransactionBuilder
from tests.integration.conftest_clients import Driver

MRN = "http://hospital.org/mrn"


def patient(mrn: str) -> tuple[dict[str, Any], str]:
    resource = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}]}
    return resource, f"identifier={MRN}|{mrn}"


def test_conditional_create_batch_creates_then_finds(client: Driver) -> None:
    entries = [patient(str(n)) for n in range(5)]
    first = client.conditional_create_batch(entries, chunk_size=2)
    assert first.ok and [r.index for r in first.created] == [0, 1, 2, 3, 4]
    assert all(r.resource_id for r in first.created)
    second = client.conditional_create_batch(entries, chunk_size=3)
    assert [r.index for r in second.existed] == [0, 1, 2, 3, 4] and not second.created
    assert {r.resource_id for r in second.existed} == {r.resource_id for r in first.created}
    found = client.search_resources("Patient", {"identifier": f"{MRN}|3"})
    assert len(found["entry"]) == 1


def test_conditional_create_batch_collects_failures(client: Driver) -> None:
    bad = ({"resourceType": "Patient", "colour": "purple"}, f"identifier={MRN}|bad")
    result = client.conditional_create_batch([patient("a"), bad, patient("b")])
    assert [r.index for r in result.created] == [0, 2]
    assert [r.index for r in result.failed] == [1]
    assert result.failed[0].status_code == 400 and result.failed[0].outcome is not None


def test_conditional_create_batch_stamps_accounts(client: Driver) -> None:
    org = client.create_resource({"resourceType": "Organization", "name": "A"})
    result = client.conditional_create_batch(
        [patient("acct")], accounts=f"Organization/{org['id']}"
    )
    stored = client.read_resource("Patient", result.created[0].resource_id)
    assert stored["meta"]["accounts"] == [{"reference": f"Organization/{org['id']}"}]


def test_transaction_builder_resolves_placeholders(client: Driver) -> None:
    tx = TransactionBuilder()
    p = tx.create({"resourceType": "Patient", "name": [{"family": "Lee"}]})
    o = tx.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "BP"},
            "subject": {"reference": p},
        }
    )
    result = client.execute_transaction_builder(tx)
    result.raise_for_entry_errors()
    patient_ref = result.reference(p)
    assert patient_ref is not None and patient_ref.startswith("Patient/")
    obs_ref = result.reference(o)
    assert obs_ref is not None
    stored = client.read_resource("Observation", obs_ref.split("/")[1])
    assert stored["subject"]["reference"] == patient_ref


def test_transaction_builder_update_patch_delete_upsert(client: Driver) -> None:
    keep = client.create_resource({"resourceType": "Patient", "active": False})
    patched = client.create_resource({"resourceType": "Patient", "active": False})
    gone = client.create_resource({"resourceType": "Patient"})
    tx = TransactionBuilder()
    u = tx.update({**keep, "active": True})
    pa = tx.patch("Patient", patched["id"], [{"op": "replace", "path": "/active", "value": True}])
    d = tx.delete("Patient", gone["id"])
    up = tx.upsert(
        {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "up"}]},
        {"identifier": f"{MRN}|up"},
    )
    result = client.execute_transaction_builder(tx)
    assert result.ok, [(r.index, r.status_code) for r in result.failures()]
    assert result.reference(u) == f"Patient/{keep['id']}"
    assert client.read_resource("Patient", keep["id"])["active"] is True
    assert result[pa].ok and client.read_resource("Patient", patched["id"])["active"] is True
    assert result[d].ok
    with pytest.raises(GoneError):
        client.read_resource("Patient", gone["id"])
    assert result[up].status_code == 201


def test_transaction_with_a_failing_entry_commits_the_others(client: Driver) -> None:
    # Medplum does not roll back (FACTS.md): the result names the failure, the rest stays.
    stale = client.create_resource({"resourceType": "Patient"})
    client.update_resource({**stale, "active": True})
    tx = TransactionBuilder()
    created = tx.create({"resourceType": "Patient", "name": [{"family": "Kept"}]})
    conflict = tx.update({**stale, "active": False})  # If-Match with the old version
    result = client.execute_transaction_builder(tx)
    assert result[created].ok and result[conflict].status_code == 412
    with pytest.raises(BundleEntryError) as caught:
        result.raise_for_entry_errors()
    assert [e.index for e in caught.value.entries] == [1]
    kept = result.reference(created)
    assert kept is not None
    assert client.read_resource("Patient", kept.split("/")[1])["name"][0]["family"] == "Kept"
    # The same per-entry view from the raw response:
    raw = FHIRBundle(result.bundle.to_dict())
    assert [r.ok for r in raw.entry_results()] == [True, False]


def test_execute_transaction_entry_results(client: Driver, medplum: LocalMedplumServer) -> None:
    tx = TransactionBuilder()
    tx.create({"resourceType": "Patient"})
    tx.create({"resourceType": "Patient", "colour": "purple"})
    response = client.execute_transaction(tx.build())
    bundle = FHIRBundle(response)
    successes, failures = bundle.partition()
    assert [r.index for r in successes] == [0] and [r.index for r in failures] == [1]
    assert failures[0].status_code == 400
