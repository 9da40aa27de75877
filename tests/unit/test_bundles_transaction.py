"""conditional_create_batch, and the transaction builder: placeholders, limits, results."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from pymedplum import BundleEntryError
from pymedplum.transaction import TransactionBuilder, TransactionLimits, new_placeholder

from .conftest import Driver, FakeMedplum

FHIR = "/fhir/R4/"


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def answer(*statuses: str, location: str = "Patient/{i}/_history/1") -> httpx.Response:
    entries = [
        {"response": {"status": s, "location": location.format(i=f"id{i}")}}
        for i, s in enumerate(statuses)
    ]
    return httpx.Response(
        200, json={"resourceType": "Bundle", "type": "batch-response", "entry": entries}
    )


def patient(n: int) -> tuple[dict[str, Any], str]:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://mrn", "value": str(n)}],
    }
    return resource, f"?identifier=http://mrn|{n}"


# ---------------------------------------------------------------- conditional_create_batch


def test_conditional_create_batch_chunks_and_classifies(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("POST", FHIR, answer("201 Created", "200 OK"), answer("400 Bad Request"))
    result = make().conditional_create_batch([patient(n) for n in range(3)], chunk_size=2)
    first, second = fake.api_requests
    entries = body(first)["entry"]
    assert body(first)["type"] == "batch" and len(entries) == 2 and len(body(second)["entry"]) == 1
    assert entries[0]["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": "identifier=http://mrn|0",
    }
    assert [r.index for r in result.created] == [0]
    assert [r.index for r in result.existed] == [1]
    assert [r.index for r in result.failed] == [2]
    assert not result.ok and result.created[0].resource_id == "id0"


def test_conditional_create_batch_is_replayed_after_a_503(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("POST", FHIR, httpx.Response(503), answer("201 Created"))
    result = make().conditional_create_batch([patient(1)])
    assert result.ok and len(fake.api_requests) == 2


def test_an_unanswered_entry_is_a_failure(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR, answer("201 Created"))
    result = make().conditional_create_batch([patient(1), patient(2)])
    assert [r.index for r in result.failed] == [1] and result.failed[0].status_code is None


def test_conditional_create_batch_stamps_accounts(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("POST", FHIR, answer("201 Created"))
    make().conditional_create_batch([patient(1)], accounts="Organization/o1")
    resource = body(fake.api_requests[0])["entry"][0]["resource"]
    assert resource["meta"] == {"accounts": [{"reference": "Organization/o1"}]}


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ([({"resourceType": "Patient"}, "")], ValueError),
        ([({"active": True}, "x=1")], ValueError),
        ([({"resourceType": "Patient"},)], TypeError),
    ],
)
def test_conditional_create_batch_checks_every_entry_first(
    make: Callable[..., Driver], fake: FakeMedplum, entries: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        make().conditional_create_batch([patient(1), *entries])
    assert fake.api_requests == []


def test_no_entries_sends_nothing(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    result = make().conditional_create_batch([])
    assert result.ok and fake.api_requests == []


# ---------------------------------------------------------------- TransactionBuilder


def test_builder_entries_and_placeholders() -> None:
    tx = TransactionBuilder()
    p = tx.create({"resourceType": "Patient", "id": "ignored"})
    o = tx.create({"resourceType": "Observation", "subject": {"reference": p}})
    u = tx.update({"resourceType": "Patient", "id": "x", "meta": {"versionId": "4"}})
    d = tx.delete("Patient", "y")
    bundle = tx.build()
    assert p.startswith("urn:uuid:") and p != o and u == "Patient/x" and d == "Patient/y"
    first, second, third, fourth = bundle["entry"]
    assert first == {
        "fullUrl": p,
        "resource": {"resourceType": "Patient"},
        "request": {"method": "POST", "url": "Patient"},
    }
    assert second["resource"]["subject"] == {"reference": p}
    assert third["request"] == {"method": "PUT", "url": "Patient/x", "ifMatch": 'W/"4"'}
    assert fourth == {"request": {"method": "DELETE", "url": "Patient/y"}}
    assert tx.keys == [p, o, u, d]


def test_builder_copies_the_callers_resource() -> None:
    resource = {"resourceType": "Patient", "id": "keep"}
    TransactionBuilder().create(resource)
    assert resource == {"resourceType": "Patient", "id": "keep"}


def test_upsert_and_conditional_create() -> None:
    tx = TransactionBuilder()
    tx.upsert({"resourceType": "Patient"}, {"identifier": "http://mrn|1"})
    tx.create({"resourceType": "Patient"}, if_none_exist="?identifier=http://mrn|2")
    upsert, create = tx.build()["entry"]
    assert upsert["request"]["method"] == "PUT"
    assert unquote(upsert["request"]["url"]) == "Patient?identifier=http://mrn|1"
    assert create["request"]["ifNoneExist"] == "identifier=http://mrn|2"


def test_patch_travels_as_a_binary() -> None:
    tx = TransactionBuilder()
    tx.patch("Patient", "x", [{"op": "replace", "path": "/active", "value": False}])
    entry = tx.build()["entry"][0]
    assert entry["request"] == {"method": "PATCH", "url": "Patient/x"}
    assert entry["resource"]["contentType"] == "application/json-patch+json"
    decoded = json.loads(base64.b64decode(entry["resource"]["data"]))
    assert decoded == [{"op": "replace", "path": "/active", "value": False}]


def test_a_reference_to_an_unknown_placeholder_is_refused() -> None:
    tx = TransactionBuilder()
    tx.create({"resourceType": "Observation", "subject": {"reference": new_placeholder()}})
    with pytest.raises(ValueError, match="no entry of this transaction defines"):
        tx.build()


def test_a_placeholder_medplum_would_not_rewrite_is_refused() -> None:
    tx = TransactionBuilder()
    tx.create({"resourceType": "Observation", "subject": {"reference": "urn:uuid:patient-temp"}})
    with pytest.raises(ValueError, match="lowercase UUID"):
        tx.build()
    with pytest.raises(ValueError, match="lowercase UUID"):
        TransactionBuilder().create({"resourceType": "Patient"}, full_url="urn:uuid:ABC")


def test_the_same_resource_twice_is_refused() -> None:
    tx = TransactionBuilder()
    tx.delete("Patient", "x")
    with pytest.raises(ValueError, match="already has an entry for Patient/x"):
        tx.update({"resourceType": "Patient", "id": "x"})


def test_an_empty_transaction_is_refused() -> None:
    with pytest.raises(ValueError, match="no entries"):
        TransactionBuilder().build()


def test_update_limit() -> None:
    tx = TransactionBuilder()
    for i in range(51):
        tx.update({"resourceType": "Patient", "id": f"p{i}"})
    with pytest.raises(ValueError, match="51 update entries; Medplum allows at most 50"):
        tx.build()


def test_conditional_entry_limit() -> None:
    tx = TransactionBuilder()
    tx.create({"resourceType": "Patient"}, if_none_exist="identifier=a|1")
    for _ in range(7):
        tx.create({"resourceType": "Patient"})
    tx.build()  # 8 entries: allowed
    tx.create({"resourceType": "Patient"})
    with pytest.raises(ValueError, match="at most 8"):
        tx.build()


def test_size_limit_and_custom_limits() -> None:
    tx = TransactionBuilder(limits=TransactionLimits(max_bytes=100))
    tx.create({"resourceType": "Patient", "name": [{"text": "x" * 100}]})
    with pytest.raises(ValueError, match="bytes"):
        tx.build()


def test_execute_transaction_builder_maps_results_by_key(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    tx = TransactionBuilder()
    p = tx.create({"resourceType": "Patient"})
    o = tx.create({"resourceType": "Observation", "subject": {"reference": p}})
    response = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Patient/new1/_history/1"}},
            {
                "response": {
                    "status": "400 Bad Request",
                    "outcome": {"resourceType": "OperationOutcome", "issue": []},
                }
            },
        ],
    }
    fake.script("POST", FHIR, httpx.Response(200, json=response))
    result = make().execute_transaction_builder(tx, accounts="Organization/o1")
    sent = body(fake.api_requests[0])
    assert sent["type"] == "transaction"
    assert sent["entry"][0]["resource"]["meta"] == {"accounts": [{"reference": "Organization/o1"}]}
    assert result[p].status_code == 201 and result.reference(p) == "Patient/new1"
    assert result[o].status_code == 400 and result.reference(o) is None
    assert not result.ok and [f.index for f in result.failures()] == [1]
    with pytest.raises(BundleEntryError) as caught:
        result.raise_for_entry_errors()
    assert "#1: 400" in str(caught.value)


def test_a_transaction_is_not_replayed(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    tx = TransactionBuilder()
    tx.create({"resourceType": "Patient"})
    fake.script("POST", FHIR, httpx.Response(502), httpx.Response(200, json={}))
    with pytest.raises(Exception, match="502"):
        make().execute_transaction_builder(tx)
    assert len(fake.api_requests) == 1


def test_results_without_an_answer_are_failures() -> None:
    tx = TransactionBuilder()
    key = tx.create({"resourceType": "Patient"})
    result = tx.results({"resourceType": "Bundle", "type": "transaction-response"})
    assert result[key].status_code is None and not result.ok
    with pytest.raises(KeyError):
        result["Patient/unknown"]
