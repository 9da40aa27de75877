"""The local server's FHIR quota (`POST /__test__/fhir-quota`) answers as Medplum's does.

Medplum (packages/server/src/fhir/fhirquota.ts) charges each FHIR interaction points (read 1,
history 10, search 20, write 100) against a fixed window per acting membership and per
project, reports the lower remainder on every answer (`"fhirInteractions";r=<left>;t=<s>`),
answers `r=0` on the request that spends the last point, and refuses the next with a 429
(throttled OperationOutcome, the limiter's state in diagnostics, no Retry-After). The
recorded exchange is rate-limit.yaml: a project with 300 points, searched until refused.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from pymedplum.testing.local_server import LocalMedplumServer
from tests.shared_data import CASSETTES


def fhir_item(headers: list[str]) -> str:
    [item] = [h for h in headers if h.startswith('"fhirInteractions"')]
    return item


def remaining(response: httpx.Response) -> int:
    item = fhir_item(response.headers.get_list("ratelimit"))
    return int(item.split(";r=")[1].split(";")[0])


def test_the_recorded_searches_until_refused_are_answered_alike(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    recorded = yaml.safe_load((CASSETTES / "rate-limit.yaml").read_text())["interactions"]
    medplum.set_fhir_quota(300)
    for index, interaction in enumerate(recorded):
        ours = fhir.get("Patient", params={"_count": 1})
        theirs = interaction["response"]
        assert ours.status_code == theirs["status"]["code"], index
        assert fhir_item(ours.headers.get_list("ratelimit")) == fhir_item(
            theirs["headers"]["ratelimit"]
        ), index
        assert "retry-after" not in ours.headers
    recorded_body = json.loads(recorded[-1]["response"]["body"]["string"])
    body = ours.json()
    assert (body["id"], body["issue"][0]["code"]) == ("too-many-requests", "throttled")
    ours_state = json.loads(body["issue"][0]["diagnostics"])
    theirs_state = json.loads(recorded_body["issue"][0]["diagnostics"])
    assert set(ours_state) == set(theirs_state)
    assert (ours_state["_consumedPoints"], ours_state["limit"]) == (320, 300)
    assert theirs_state["_consumedPoints"] == 320 and theirs_state["limit"] == 300


@pytest.mark.parametrize(
    ("call", "cost"),
    [
        (lambda c, pid: c.get(f"Patient/{pid}"), 1),
        (lambda c, pid: c.get(f"Patient/{pid}/_history"), 10),
        (lambda c, pid: c.get("Patient", params={"name": "x"}), 20),
        (lambda c, pid: c.put(f"Patient/{pid}", json={"resourceType": "Patient", "id": pid}), 100),
        (lambda c, pid: c.post("Patient", json={"resourceType": "Patient"}), 100),
    ],
    ids=["read", "history", "search", "update", "create"],
)
def test_each_interaction_costs_what_medplum_charges(
    medplum: LocalMedplumServer, fhir: httpx.Client, call: Any, cost: int
) -> None:
    pid = fhir.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    medplum.set_fhir_quota(1000)
    before = remaining(fhir.get(f"Patient/{pid}"))
    assert before == 999
    assert remaining(call(fhir, pid)) == before - cost


def test_the_window_resets_and_the_reset_time_is_reported(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    pid = fhir.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    medplum.set_fhir_quota(2, window_seconds=1)
    assert [fhir.get(f"Patient/{pid}").status_code for _ in range(3)] == [200, 200, 429]
    refused = fhir.get(f"Patient/{pid}")
    assert refused.status_code == 429
    item = fhir_item(refused.headers.get_list("ratelimit"))
    assert item == '"fhirInteractions";r=0;t=1'
    time.sleep(1.05)
    again = fhir.get(f"Patient/{pid}")
    assert (again.status_code, remaining(again)) == (200, 1)
    windows = [r["quota_window"] for r in medplum.fhir_requests()[-5:]]
    assert windows == [1, 1, 1, 1, 2]
    assert medplum.fhir_quota()["refused"] == 2


def test_a_membership_quota_leaves_other_memberships_alone(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    pid = fhir.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    medplum.set_fhir_quota(100, user=2)
    alice = {"X-Medplum-On-Behalf-Of": medplum.practitioners["alice"].membership}
    bob = {"X-Medplum-On-Behalf-Of": medplum.practitioners["bob"].membership}
    statuses = [fhir.get(f"Patient/{pid}", headers=alice).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    answer = fhir.get(f"Patient/{pid}", headers=bob)
    assert (answer.status_code, remaining(answer)) == (200, 1)  # its own 2, not the project's


def test_without_a_quota_answers_report_the_configured_values(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.set_fhir_quota(5)
    medplum.reset()
    assert medplum.fhir_quota() == {"enabled": False}
    answer = fhir.get("Patient")
    assert fhir_item(answer.headers.get_list("ratelimit")) == '"fhirInteractions";r=49999;t=60'
