"""The local Medplum server behaves as the SDK's tests need, checked with raw httpx."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest

from codegen.definitions import Definitions
from codegen.specs import SERVER_PACKAGES
from pymedplum.testing.local_server import LocalMedplumServer

PATIENT = {"resourceType": "Patient", "name": [{"family": "Local", "given": ["Ada"]}]}
RESTRICTED_TAG = {"system": "http://example.org/sdk-test", "code": "restricted"}


def create(fhir: httpx.Client, resource: dict[str, Any], **headers: str) -> httpx.Response:
    response = fhir.post(resource["resourceType"], json=resource, headers=headers)
    assert response.status_code == 201, response.text
    return response


def issue_texts(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return [issue["details"]["text"] for issue in body["issue"]]


# ---- process and seed ----------------------------------------------------------------------


def test_server_listens_on_loopback_and_reports_its_packages(medplum: LocalMedplumServer) -> None:
    assert medplum.base_url.startswith("http://127.0.0.1:")
    assert medplum.startup_seconds is not None  # measured, never asserted: machines are shared
    version = Definitions().lock["version"]  # the server runs the models' definitions
    assert medplum.info["packages"] == {name: version for name in SERVER_PACKAGES}


def test_seed_has_admin_and_non_admin_clients_and_practitioner_memberships(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    admin_membership = fhir.get(medplum.admin_client.membership).json()
    assert admin_membership["admin"] is True
    assert medplum.user_client.admin is False
    assert set(medplum.practitioners) == {"alice", "bob", "restricted"}
    membership = fhir.get(medplum.practitioners["alice"].membership).json()
    assert membership["profile"]["reference"] == medplum.practitioners["alice"].practitioner


def test_reset_returns_data_to_the_seed(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    patient_id = create(fhir, PATIENT).json()["id"]
    medplum.reset()
    assert fhir.get(f"Patient/{patient_id}").status_code == 404
    assert fhir.get(medplum.admin_client.membership).status_code == 200


# ---- OAuth2 ------------------------------------------------------------------------------------


def test_token_with_form_credentials(medplum: LocalMedplumServer) -> None:
    creds = medplum.admin_client
    response = httpx.post(
        medplum.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["project"]["reference"] == f"Project/{medplum.project_id}"
    assert body["profile"]["reference"] == creds.profile
    assert body["access_token"].count(".") == 2  # JWT-shaped, like Medplum's


def test_token_with_http_basic_credentials(medplum: LocalMedplumServer) -> None:
    creds = medplum.admin_client
    response = httpx.post(
        medplum.token_url,
        data={"grant_type": "client_credentials"},
        auth=(creds.client_id, creds.client_secret),
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


def test_wrong_secret_is_400_invalid_request(medplum: LocalMedplumServer) -> None:
    response = httpx.post(
        medplum.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": medplum.admin_client.client_id,
            "client_secret": "wrong",
        },
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": "Invalid secret"}


def test_unknown_client_is_400_invalid_client(medplum: LocalMedplumServer) -> None:
    response = httpx.post(
        medplum.token_url,
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert response.status_code == 400
    assert response.json()["error_description"] == "Invalid client"


def test_token_lifetime_is_configurable_and_tokens_expire(medplum: LocalMedplumServer) -> None:
    medplum.set_token_lifetime(1)
    creds = medplum.admin_client
    body = httpx.post(
        medplum.token_url,
        data={"grant_type": "client_credentials"},
        auth=(creds.client_id, creds.client_secret),
    ).json()
    assert body["expires_in"] == 1
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(medplum.fhir_base_url + "Patient", headers=headers).status_code == 200
    time.sleep(1.1)
    assert httpx.get(medplum.fhir_base_url + "Patient", headers=headers).status_code == 401


def test_token_requests_are_counted(medplum: LocalMedplumServer) -> None:
    assert medplum.token_requests == 0
    medplum.access_token()
    medplum.access_token("user")
    stats = medplum.token_stats()
    assert stats["token_requests"] == 2
    assert stats["tokens_issued"] == 2


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Bearer", "Basic " + base64.b64encode(b"x:y").decode()],
)
def test_fhir_without_a_valid_credential_is_401(
    medplum: LocalMedplumServer, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(medplum.fhir_base_url + "Patient?_count=1", headers=headers)
    assert response.status_code == 401
    assert response.json()["issue"] == [
        {"severity": "error", "code": "login", "details": {"text": "Unauthorized"}}
    ]


def test_expired_tokens_are_401(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    assert fhir.get("Patient").status_code == 200
    medplum.expire_tokens()
    assert fhir.get("Patient").status_code == 401


def test_basic_auth_works_on_fhir_as_on_medplum(medplum: LocalMedplumServer) -> None:
    creds = medplum.admin_client
    response = httpx.get(
        medplum.fhir_base_url + "Patient", auth=(creds.client_id, creds.client_secret)
    )
    assert response.status_code == 200


# ---- CRUD --------------------------------------------------------------------------------------


def test_create_answers_201_with_location_etag_and_last_modified(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    response = create(fhir, PATIENT)
    body = response.json()
    assert response.headers["location"] == f"{medplum.fhir_base_url}Patient/{body['id']}"
    assert response.headers["etag"] == f'W/"{body["meta"]["versionId"]}"'
    assert response.headers["last-modified"].endswith(" GMT")
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    # Server-owned meta is hidden unless X-Medplum: extended, as on Medplum.
    assert set(body["meta"]) == {"versionId", "lastUpdated"}
    assert list(body)[-2:] == ["id", "meta"]


def test_create_ignores_a_client_supplied_id(fhir: httpx.Client) -> None:
    body = create(fhir, {**PATIENT, "id": "my-own-id"}).json()
    assert body["id"] != "my-own-id"


def test_extended_mode_shows_author_and_project(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    body = create(fhir, PATIENT, **{"X-Medplum": "extended"}).json()
    assert body["meta"]["author"]["reference"] == medplum.admin_client.profile
    assert body["meta"]["project"] == medplum.project_id


def test_read_answers_the_resource_with_its_etag(fhir: httpx.Client) -> None:
    created = create(fhir, PATIENT)
    response = fhir.get(f"Patient/{created.json()['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == created.headers["etag"]
    assert response.json() == created.json()


def test_update_with_current_if_match_makes_a_new_version(fhir: httpx.Client) -> None:
    created = create(fhir, PATIENT)
    patient = {**created.json(), "active": True}
    response = fhir.put(
        f"Patient/{patient['id']}", json=patient, headers={"If-Match": created.headers["etag"]}
    )
    assert response.status_code == 200
    assert response.headers["etag"] != created.headers["etag"]
    assert response.json()["active"] is True


def test_update_with_stale_if_match_is_412(fhir: httpx.Client) -> None:
    created = create(fhir, PATIENT)
    patient = {**created.json(), "active": True}
    fhir.put(f"Patient/{patient['id']}", json=patient)
    response = fhir.put(
        f"Patient/{patient['id']}", json=patient, headers={"If-Match": created.headers["etag"]}
    )
    assert response.status_code == 412
    assert issue_texts(response) == ["Precondition Failed"]


def test_update_without_changes_keeps_the_version(fhir: httpx.Client) -> None:
    created = create(fhir, PATIENT)
    response = fhir.put(f"Patient/{created.json()['id']}", json=created.json())
    assert response.status_code == 200
    assert response.headers["etag"] == created.headers["etag"]


def test_update_of_a_missing_id_creates_it_with_201(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    response = fhir.put("Patient/brand-new-id", json={**PATIENT, "id": "brand-new-id"})
    assert response.status_code == 201
    assert response.headers["location"] == f"{medplum.fhir_base_url}Patient/brand-new-id"


def test_delete_then_read_is_410_gone(fhir: httpx.Client) -> None:
    patient_id = create(fhir, PATIENT).json()["id"]
    deleted = fhir.delete(f"Patient/{patient_id}")
    assert deleted.status_code == 200
    assert issue_texts(deleted) == ["All OK"]
    response = fhir.get(f"Patient/{patient_id}")
    assert response.status_code == 410
    assert response.json()["issue"][0]["code"] == "deleted"
    assert fhir.delete(f"Patient/{patient_id}").status_code == 410


def test_read_of_an_unknown_id_is_404(fhir: httpx.Client) -> None:
    response = fhir.get("Patient/9ef65abc-e33a-447b-b02a-e5f5d9276685")
    assert response.status_code == 404
    assert issue_texts(response) == ["Not found"]


def test_vread_and_history(fhir: httpx.Client) -> None:
    created = create(fhir, PATIENT).json()
    v1 = created["meta"]["versionId"]
    updated = fhir.put(f"Patient/{created['id']}", json={**created, "active": True}).json()
    history = fhir.get(f"Patient/{created['id']}/_history").json()
    assert history["type"] == "history"
    assert history["total"] == 2
    versions = [e["resource"]["meta"]["versionId"] for e in history["entry"]]
    assert versions == [updated["meta"]["versionId"], v1]  # newest first, stable across calls
    assert fhir.get(f"Patient/{created['id']}/_history").json()["entry"] == history["entry"]
    assert history["entry"][0]["request"]["url"].endswith(f"/_history/{versions[0]}")
    vread = fhir.get(f"Patient/{created['id']}/_history/{v1}")
    assert vread.status_code == 200
    assert vread.headers["etag"] == f'W/"{v1}"'
    assert "active" not in vread.json()


def test_history_shows_a_delete(fhir: httpx.Client) -> None:
    patient_id = create(fhir, PATIENT).json()["id"]
    fhir.delete(f"Patient/{patient_id}")
    history = fhir.get(f"Patient/{patient_id}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "GET"]
    assert history["entry"][0]["response"]["status"] == "410"


# ---- validation, patch, conditional create -----------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "text", "expression"),
    [
        (
            {"resourceType": "Patient", "birthDate": "05/01/1980"},
            "Invalid date format",
            "Patient.birthDate",
        ),
        (
            {"resourceType": "Patient", "colour": "blue"},
            'Invalid additional property "colour"',
            "Patient.colour",
        ),
        (
            {"resourceType": "Observation", "code": {"text": "x"}},
            "Missing required property",
            "Observation.status",
        ),
    ],
)
def test_invalid_writes_are_400_with_expression(
    fhir: httpx.Client, resource: dict[str, Any], text: str, expression: str
) -> None:
    response = fhir.post(resource["resourceType"], json=resource)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert (issue["code"], issue["details"]["text"], issue["expression"]) == (
        "structure",
        text,
        [expression],
    )


def test_invalid_update_is_400(fhir: httpx.Client) -> None:
    created = create(fhir, PATIENT).json()
    response = fhir.put(f"Patient/{created['id']}", json={**created, "birthDate": "not-a-date"})
    assert response.status_code == 400


def test_malformed_json_is_400(fhir: httpx.Client) -> None:
    response = fhir.post(
        "Patient",
        content=b'{"resourceType": "Patient", ',
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 400
    assert issue_texts(response) == ["Content could not be parsed"]


def test_json_patch_applies_and_ignores_if_match(fhir: httpx.Client) -> None:
    patient_id = create(fhir, PATIENT).json()["id"]
    headers = {"Content-Type": "application/json-patch+json", "If-Match": 'W/"not-current"'}
    ops = [{"op": "add", "path": "/active", "value": True}]
    response = fhir.patch(f"Patient/{patient_id}", content=json.dumps(ops), headers=headers)
    assert response.status_code == 200
    assert response.json()["active"] is True


def test_failed_patch_test_op_is_400(fhir: httpx.Client) -> None:
    patient_id = create(fhir, PATIENT).json()["id"]
    ops = [{"op": "test", "path": "/gender", "value": "male"}]
    response = fhir.patch(
        f"Patient/{patient_id}",
        content=json.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 400
    assert issue_texts(response) == ["Test failed: undefined != male"]


def test_conditional_create_creates_once_then_returns_the_match(fhir: httpx.Client) -> None:
    resource = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "abc"}]}
    headers = {"If-None-Exist": "identifier=urn:test|abc"}
    first = fhir.post("Patient", json=resource, headers=headers)
    second = fhir.post("Patient", json=resource, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert "location" not in second.headers


def test_conditional_create_with_several_matches_is_412(fhir: httpx.Client) -> None:
    create(fhir, {"resourceType": "Patient", "gender": "unknown"})
    create(fhir, {"resourceType": "Patient", "gender": "unknown"})
    response = fhir.post(
        "Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": "gender=unknown"}
    )
    assert response.status_code == 412
    assert response.json()["issue"][0]["code"] == "multiple-matches"


# ---- search --------------------------------------------------------------------------------------


def test_search_pages_with_self_first_next_previous_links(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    ids = {create(fhir, {**PATIENT, "name": [{"family": "Pager"}]}).json()["id"] for _ in range(5)}
    page = fhir.get("Patient", params={"family": "Pager", "_count": 2, "_total": "accurate"}).json()
    relations = []
    seen: set[str] = set()
    while True:
        assert page["total"] == 5
        relations.append([link["relation"] for link in page["link"]])
        for entry in page["entry"]:
            assert entry["fullUrl"] == f"{medplum.fhir_base_url}Patient/{entry['resource']['id']}"
            assert entry["search"] == {"mode": "match"}
            seen.add(entry["resource"]["id"])
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if next_url is None:
            break
        assert next_url.startswith(medplum.fhir_base_url)
        page = fhir.get(next_url).json()
    assert seen == ids
    assert relations == [
        ["self", "first", "next"],
        ["self", "first", "next", "previous"],
        ["self", "first", "previous"],
    ]


def test_search_defaults_to_20_per_page_and_omits_total(fhir: httpx.Client) -> None:
    bundle = fhir.get("Patient", params={"family": "Nobody"}).json()
    assert "total" not in bundle and "entry" not in bundle
    assert bundle["link"] == [
        {"relation": "self", "url": str(fhir.base_url) + "Patient?_count=20&family=Nobody"}
    ]


def test_summary_count_gives_total_only(fhir: httpx.Client) -> None:
    create(fhir, {**PATIENT, "name": [{"family": "Counted"}]})
    bundle = fhir.get("Patient", params={"family": "Counted", "_summary": "count"}).json()
    assert bundle["total"] == 1
    assert "entry" not in bundle


def test_unknown_search_parameter_is_400(fhir: httpx.Client) -> None:
    response = fhir.get("Patient", params={"no-such-param": "x"})
    assert response.status_code == 400
    assert issue_texts(response) == ["Unknown search parameter: no-such-param"]


def test_search_by_post(fhir: httpx.Client) -> None:
    create(fhir, {**PATIENT, "name": [{"family": "Posted"}]})
    response = fhir.post("Patient/_search", data={"family": "Posted"})
    assert response.status_code == 200
    assert len(response.json()["entry"]) == 1


def test_include_and_revinclude_mark_search_mode(fhir: httpx.Client) -> None:
    patient_id = create(fhir, PATIENT).json()["id"]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "hr"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    create(fhir, observation)
    bundle = fhir.get(
        "Observation",
        params={"subject": f"Patient/{patient_id}", "_include": "Observation:subject"},
    ).json()
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "include"]
    bundle = fhir.get(
        "Patient", params={"_id": patient_id, "_revinclude": "Observation:subject"}
    ).json()
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "include"]


@pytest.mark.server_limit
def test_elements_keeps_only_the_named_elements(fhir: httpx.Client) -> None:
    create(fhir, {**PATIENT, "name": [{"family": "Elements"}], "gender": "other"})
    bundle = fhir.get("Patient", params={"family": "Elements", "_elements": "gender"}).json()
    assert set(bundle["entry"][0]["resource"]) == {"resourceType", "id", "meta", "gender"}


# ---- batch, transaction, GraphQL ---------------------------------------------------------------


def test_batch_answers_each_entry(fhir: httpx.Client) -> None:
    existing = create(fhir, PATIENT).json()["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "POST", "url": "Patient"}, "resource": PATIENT},
            {"request": {"method": "GET", "url": f"Patient/{existing}"}},
            {"request": {"method": "GET", "url": "Patient/46b520f2-d9ab-4a51-9205-dcf845fcbdcd"}},
        ],
    }
    response = fhir.post("", json=bundle)
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "batch-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201", "200", "404"]


def test_transaction_rewrites_urn_uuid_references(fhir: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:ad7a39c1-e730-4e73-a5ab-aace60e94760",
                "request": {"method": "POST", "url": "Patient"},
                "resource": PATIENT,
            },
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "bp"},
                    "subject": {"reference": "urn:uuid:ad7a39c1-e730-4e73-a5ab-aace60e94760"},
                },
            },
        ],
    }
    body = fhir.post("", json=bundle).json()
    assert body["type"] == "transaction-response"
    patient, observation = (e["resource"] for e in body["entry"])
    assert observation["subject"]["reference"] == f"Patient/{patient['id']}"


def test_transaction_with_an_invalid_entry_commits_the_rest_as_medplum_does(
    fhir: httpx.Client,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "POST", "url": "Patient"},
                "resource": {**PATIENT, "name": [{"family": "TxFail"}]},
            },
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": {"resourceType": "Observation", "code": {"text": "no status"}},
            },
        ],
    }
    response = fhir.post("", json=bundle)
    assert response.status_code == 200
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201", "400"]
    assert len(fhir.get("Patient", params={"family": "TxFail"}).json()["entry"]) == 1


def test_graphql_query_and_error(fhir: httpx.Client) -> None:
    create(fhir, {**PATIENT, "name": [{"family": "Graph"}]})
    response = fhir.post(
        "$graphql", json={"query": '{ PatientList(name: "Graph") { id name { family } } }'}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json()["data"]["PatientList"][0]["name"] == [{"family": "Graph"}]
    response = fhir.post("$graphql", json={"query": "{ NoSuchList { id } }"})
    assert response.status_code == 400
    assert issue_texts(response)[0].startswith('Cannot query field "NoSuchList"')


def test_validate_operation(fhir: httpx.Client) -> None:
    assert fhir.post("Patient/$validate", json={"resourceType": "Patient"}).status_code == 200
    response = fhir.post("Patient/$validate", json={"resourceType": "Patient", "birthDate": "x"})
    assert response.status_code == 400


# ---- On-Behalf-Of ------------------------------------------------------------------------------


def test_obo_write_sets_meta_on_behalf_of_and_logs_the_acting_membership(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    alice = medplum.practitioners["alice"]
    response = fhir.post(
        "Patient", json=PATIENT, headers={"X-Medplum-On-Behalf-Of": alice.membership}
    )
    assert response.status_code == 201
    assert response.json()["meta"]["onBehalfOf"] == {
        "reference": alice.practitioner,
        "display": "Alice Smith",
    }
    logged = medplum.fhir_requests()[-1]
    assert logged["on_behalf_of"] == alice.membership
    assert logged["acting_membership"] == alice.membership
    assert logged["client_membership"] == medplum.admin_client.membership
    assert logged["authorization"] is True


def test_obo_by_profile_reference_resolves_the_membership(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    bob = medplum.practitioners["bob"]
    response = fhir.get("Patient", headers={"X-Medplum-On-Behalf-Of": bob.practitioner})
    assert response.status_code == 200
    assert medplum.fhir_requests()[-1]["acting_membership"] == bob.membership


def test_obo_meta_author_stays_the_client(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    alice = medplum.practitioners["alice"]
    body = fhir.post(
        "Patient",
        json=PATIENT,
        headers={"X-Medplum-On-Behalf-Of": alice.membership, "X-Medplum": "extended"},
    ).json()
    assert body["meta"]["author"]["reference"] == medplum.admin_client.profile
    assert body["meta"]["onBehalfOf"]["reference"] == alice.practitioner


def test_without_obo_no_on_behalf_of_is_recorded(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    body = create(fhir, PATIENT).json()
    assert "onBehalfOf" not in body["meta"]
    logged = medplum.fhir_requests()[-1]
    assert logged["on_behalf_of"] is None
    assert logged["acting_membership"] == medplum.admin_client.membership


def test_obo_from_a_non_admin_client_is_refused(medplum: LocalMedplumServer) -> None:
    token = medplum.access_token("user")
    response = httpx.get(
        medplum.fhir_base_url + "Patient",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Medplum-On-Behalf-Of": medplum.practitioners["alice"].membership,
        },
    )
    # Medplum 4.5.2 refuses while authenticating: 403 forbidden, no tracing, no RateLimit.
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert "ratelimit" not in response.headers


FORBIDDEN = {
    "resourceType": "OperationOutcome",
    "id": "forbidden",
    "issue": [{"severity": "error", "code": "forbidden", "details": {"text": "Forbidden"}}],
}


def test_obo_to_an_unknown_membership_is_refused(fhir: httpx.Client) -> None:
    response = fhir.get(
        "Patient", headers={"X-Medplum-On-Behalf-Of": "ProjectMembership/does-not-exist"}
    )
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


def test_obo_to_an_unknown_profile_is_refused(fhir: httpx.Client) -> None:
    response = fhir.get("Patient", headers={"X-Medplum-On-Behalf-Of": "Practitioner/nobody"})
    assert response.status_code == 403
    assert response.json() == FORBIDDEN


def test_obo_with_a_bare_membership_id_is_read_as_a_profile_and_refused(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    bare = medplum.practitioners["restricted"].membership.split("/")[1]
    response = fhir.get("Patient", headers={"X-Medplum-On-Behalf-Of": bare})
    assert response.status_code == 403
    assert response.json() == FORBIDDEN


def test_obo_to_a_membership_profile_acts_as_that_membership(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    restricted = medplum.practitioners["restricted"]
    response = fhir.get("Patient", headers={"X-Medplum-On-Behalf-Of": restricted.practitioner})
    assert response.status_code == 200
    assert medplum.fhir_requests()[-1]["acting_membership"] == restricted.membership


def test_invite_honours_the_obo_header_like_the_fhir_api(
    medplum: LocalMedplumServer, admin_token: str
) -> None:
    body = {
        "resourceType": "Practitioner",
        "firstName": "A",
        "lastName": "B",
        "email": "obo-invite@example.com",
        "sendEmail": False,
    }
    url = f"{medplum.base_url}/admin/projects/{medplum.project_id}/invite"
    auth = {"Authorization": f"Bearer {admin_token}"}
    restricted = medplum.practitioners["restricted"].membership
    refused = httpx.post(url, json=body, headers={**auth, "X-Medplum-On-Behalf-Of": restricted})
    assert refused.status_code == 403
    assert httpx.post(url, json=body, headers=auth).status_code == 200


def test_obo_applies_the_acting_membership_access_policy(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    restricted = {"X-Medplum-On-Behalf-Of": medplum.practitioners["restricted"].membership}
    untagged = create(fhir, PATIENT).json()["id"]
    tagged = create(fhir, {**PATIENT, "meta": {"tag": [RESTRICTED_TAG]}}).json()["id"]
    assert fhir.get(f"Patient/{untagged}", headers=restricted).status_code == 404
    assert fhir.get(f"Patient/{tagged}", headers=restricted).status_code == 200
    assert fhir.post("Patient", json=PATIENT, headers=restricted).status_code == 403
    created = fhir.post(
        "Patient", json={**PATIENT, "meta": {"tag": [RESTRICTED_TAG]}}, headers=restricted
    )
    assert created.status_code == 201
    found = fhir.get("Patient", params={"family": "Local"}, headers=restricted).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {tagged, created.json()["id"]}
    assert fhir.get("Observation", headers=restricted).status_code == 403


def test_non_admin_client_cannot_read_project_admin_types(medplum: LocalMedplumServer) -> None:
    token = medplum.access_token("user")
    response = httpx.get(
        medplum.fhir_base_url + medplum.user_client.membership,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403


# ---- request log -----------------------------------------------------------------------------


def test_request_log_records_what_was_received_and_never_the_token(
    medplum: LocalMedplumServer, fhir: httpx.Client, admin_token: str
) -> None:
    fhir.get("Patient", params={"family": "Logged"}, headers={"If-Match": 'W/"1"'})
    logged = medplum.fhir_requests()[-1]
    assert logged["method"] == "GET"
    assert logged["path"] == "/fhir/R4/Patient"
    assert logged["query"] == {"family": ["Logged"]}
    assert logged["auth_scheme"] == "Bearer"
    assert logged["if_match"] == 'W/"1"'
    assert logged["status"] == 200
    assert admin_token not in json.dumps(medplum.requests())


def test_reset_clears_the_request_log(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    fhir.get("Patient")
    assert medplum.requests()
    medplum.reset()
    assert medplum.requests() == []


# ---- faults ----------------------------------------------------------------------------------


def test_fail_next_answers_the_status_then_recovers(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.fail_next(503, count=2, retry_after=3)
    first, second, third = (fhir.get("Patient") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["retry-after"] == "3"
    assert first.json()["resourceType"] == "OperationOutcome"
    assert [r["fault"] for r in medplum.fhir_requests()] == ["respond", "respond", None]


def test_rate_limit_fault_looks_like_medplum_429(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.rate_limit_next()
    response = fhir.get("Patient")
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert response.headers.get_list("ratelimit") == [
        '"requests";r=59920;t=60',
        '"fhirInteractions";r=0;t=60',
    ]
    assert response.json()["issue"][0]["code"] == "throttled"


def test_retry_after_as_http_date(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    when = "Wed, 21 Oct 2037 07:28:00 GMT"
    medplum.rate_limit_next(retry_after=when)
    assert fhir.get("Patient").headers["retry-after"] == when


def test_fault_filters_by_method_and_path(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    medplum.fail_next(500, method="POST", path_prefix="/fhir/R4/Observation")
    assert fhir.get("Observation").status_code == 200
    assert fhir.post("Patient", json=PATIENT).status_code == 201
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert fhir.post("Observation", json=observation).status_code == 500
    assert fhir.post("Observation", json=observation).status_code == 201


def test_faults_can_hit_the_token_endpoint(medplum: LocalMedplumServer) -> None:
    medplum.fail_next(503, path_prefix="/oauth2/token")
    creds = medplum.admin_client
    data = {"grant_type": "client_credentials"}
    auth = (creds.client_id, creds.client_secret)
    assert httpx.post(medplum.token_url, data=data, auth=auth).status_code == 503
    assert httpx.post(medplum.token_url, data=data, auth=auth).status_code == 200


def test_drop_before_closes_the_connection_and_commits_nothing(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.drop_next(method="POST")
    with pytest.raises(httpx.TransportError):
        fhir.post("Patient", json={**PATIENT, "name": [{"family": "Dropped"}]})
    assert "entry" not in fhir.get("Patient", params={"family": "Dropped"}).json()
    assert medplum.fhir_requests()[-2]["status"] is None


def test_drop_after_commits_then_closes_the_connection(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.drop_next(method="POST", after=True)
    with pytest.raises(httpx.TransportError):
        fhir.post("Patient", json={**PATIENT, "name": [{"family": "Committed"}]})
    assert len(fhir.get("Patient", params={"family": "Committed"}).json()["entry"]) == 1


def test_delay_before_answering(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    medplum.delay_next(300)
    started = time.monotonic()
    assert fhir.get("Patient").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    fhir.get("Patient")
    assert time.monotonic() - started < 0.3


def test_delay_can_exceed_a_client_timeout(medplum: LocalMedplumServer, admin_token: str) -> None:
    medplum.delay_next(1000)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(
            medplum.fhir_base_url + "Patient",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=0.2,
        )


def test_unlimited_fault_lasts_until_cleared(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.fail_next(502, count=None)
    assert [fhir.get("Patient").status_code for _ in range(3)] == [502, 502, 502]
    medplum.clear_faults()
    assert fhir.get("Patient").status_code == 200


def test_reset_disarms_faults(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    medplum.fail_next(500, count=5)
    medplum.reset()
    assert fhir.get("Patient").status_code == 200


# ---- speed -----------------------------------------------------------------------------------


def test_reads_are_fast_enough_for_a_test_suite(fhir: httpx.Client) -> None:
    patient_id = create(fhir, PATIENT).json()["id"]
    started = time.monotonic()
    for _ in range(200):
        assert fhir.get(f"Patient/{patient_id}").status_code == 200
    assert time.monotonic() - started < 5


def test_a_decimal_is_stored_as_a_javascript_number_like_medplum(fhir: httpx.Client) -> None:
    # lenient-formats: real Medplum stores 1.50 as 1.5 (and 12500.00 as 12500).
    raw = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":1.50},"component":[{"code":{"text":"y"},'
        b'"valueQuantity":{"value":12500.00}}]}'
    )
    created = fhir.post(
        "Observation", content=raw, headers={"Content-Type": "application/fhir+json"}
    )
    assert created.status_code == 201
    text = fhir.get(f"Observation/{created.json()['id']}").text
    assert '"value":1.5}' in text and '"value":12500}' in text
