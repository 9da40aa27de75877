"""The local server's Binary, async job, Bot, operation and conditional-write endpoints,
checked with raw httpx against Medplum's recorded answers and server source."""

from __future__ import annotations

import base64
import gzip
import json
import time
from typing import Any

import httpx

from pymedplum.testing.local_server import LocalMedplumServer

ECHO_BOT = """
exports.handler = async function (medplum, event) {
  return { echoed: event.input, contentType: event.contentType };
};
"""


def create(fhir: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = fhir.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    return dict(response.json())


def parameter(body: dict[str, Any], name: str) -> Any:
    for p in body.get("parameter", []):
        if p["name"] == name:
            return next((v for k, v in p.items() if k.startswith("value") or k == "part"), None)
    return None


def poll_until_done(fhir: httpx.Client, url: str, limit: int = 10) -> httpx.Response:
    for _ in range(limit):
        response = fhir.get(url)
        if response.status_code != 202:
            return response
    raise AssertionError(f"{url} still 202 after {limit} polls")


# ---- Binary ----------------------------------------------------------------------------------


def test_binary_create_from_raw_bytes_answers_201_with_a_presigned_url(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    response = fhir.post(
        "Binary", content=b"%PDF-1.4 fake", headers={"Content-Type": "application/pdf"}
    )
    assert response.status_code == 201
    body = response.json()
    assert list(body) == ["resourceType", "id", "contentType", "meta", "url"]
    assert body["contentType"] == "application/pdf"
    assert response.headers["location"] == f"{medplum.fhir_base_url}Binary/{body['id']}"
    assert response.headers["etag"] == f'W/"{body["meta"]["versionId"]}"'
    assert body["url"].startswith(f"{medplum.base_url}/storage/{body['id']}/")


def test_binary_read_with_any_accept_returns_the_raw_content(fhir: httpx.Client) -> None:
    content = bytes(range(256)) * 4
    binary_id = fhir.post(
        "Binary", content=content, headers={"Content-Type": "application/octet-stream"}
    ).json()["id"]
    response = fhir.get(f"Binary/{binary_id}", headers={"Accept": "*/*"})
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/octet-stream"
    assert "etag" in response.headers and "last-modified" in response.headers


def test_binary_text_content_type_gets_a_charset_as_from_express(fhir: httpx.Client) -> None:
    binary_id = fhir.post("Binary", content=b"hi", headers={"Content-Type": "text/plain"}).json()[
        "id"
    ]
    response = fhir.get(f"Binary/{binary_id}")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_binary_read_as_fhir_json_returns_the_resource_without_data(fhir: httpx.Client) -> None:
    binary_id = fhir.post("Binary", content=b"x", headers={"Content-Type": "text/plain"}).json()[
        "id"
    ]
    response = fhir.get(f"Binary/{binary_id}", headers={"Accept": "application/fhir+json"})
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert list(response.json()) == ["resourceType", "id", "contentType", "meta"]


def test_binary_of_20_megabytes_round_trips(fhir: httpx.Client) -> None:
    content = b"0123456789abcdef" * (20 * 1024 * 1024 // 16)
    created = fhir.post("Binary", content=content, headers={"Content-Type": "application/zip"})
    assert created.status_code == 201
    response = fhir.get(f"Binary/{created.json()['id']}")
    assert response.headers["content-length"] == str(len(content))
    assert response.content == content


def test_binary_put_replaces_the_content(fhir: httpx.Client) -> None:
    binary_id = fhir.post("Binary", content=b"v1", headers={"Content-Type": "text/plain"}).json()[
        "id"
    ]
    updated = fhir.put(f"Binary/{binary_id}", content=b"v2", headers={"Content-Type": "text/csv"})
    assert updated.status_code == 200
    assert fhir.get(f"Binary/{binary_id}").content == b"v2"


def test_binary_gzip_upload_is_decoded(fhir: httpx.Client) -> None:
    response = fhir.post(
        "Binary",
        content=gzip.compress(b"zipped"),
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    assert fhir.get(f"Binary/{response.json()['id']}").content == b"zipped"


def test_binary_json_body_that_is_a_binary_resource_is_stored_as_the_resource(
    fhir: httpx.Client,
) -> None:
    resource = {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "data": base64.b64encode(b"inline").decode(),
    }
    response = fhir.post(
        "Binary", content=json.dumps(resource), headers={"Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 201
    assert fhir.get(f"Binary/{response.json()['id']}").content == b"inline"


def test_presigned_storage_url_serves_the_bytes_without_a_token(fhir: httpx.Client) -> None:
    url = fhir.post("Binary", content=b"stored", headers={"Content-Type": "text/plain"}).json()[
        "url"
    ]
    assert httpx.get(url).content == b"stored"
    assert httpx.get(url.replace("Signature=", "Signature=x")).status_code == 403


def test_document_reference_pointing_at_a_binary(fhir: httpx.Client) -> None:
    binary_id = fhir.post(
        "Binary", content=b"%PDF", headers={"Content-Type": "application/pdf"}
    ).json()["id"]
    patient = create(fhir, {"resourceType": "Patient"})
    doc = create(
        fhir,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{patient['id']}"},
            "content": [
                {"attachment": {"contentType": "application/pdf", "url": f"Binary/{binary_id}"}}
            ],
        },
    )
    assert doc["content"][0]["attachment"]["url"] == f"Binary/{binary_id}"


# ---- bulk export and async jobs -------------------------------------------------------------


def test_system_export_is_202_with_content_location_then_completes(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    create(fhir, {"resourceType": "Patient", "name": [{"family": "Exported"}]})
    kickoff = fhir.get("$export", params={"_type": "Patient"}, headers={"Prefer": "respond-async"})
    assert kickoff.status_code == 202
    status_url = kickoff.headers["content-location"]
    assert status_url.startswith(f"{medplum.fhir_base_url}bulkdata/export/")
    assert kickoff.json()["issue"][0]["diagnostics"] == status_url
    first = fhir.get(status_url)
    assert (first.status_code, first.content, first.headers.get("content-type")) == (202, b"", None)
    done = fhir.get(status_url)
    assert done.status_code == 200
    body = done.json()
    assert set(body) == {
        "transactionTime",
        "request",
        "requiresAccessToken",
        "output",
        "error",
        "deleted",
    }
    [output] = body["output"]
    assert output["type"] == "Patient"
    assert output["url"].startswith(f"{medplum.base_url}/storage/")
    lines = httpx.get(output["url"]).text.splitlines()
    assert [json.loads(line)["name"][0]["family"] for line in lines] == ["Exported"]


def test_export_job_completes_after_the_configured_polls(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.set_async_jobs(polls=3)
    url = fhir.get("Patient/$export").headers["content-location"]
    assert [fhir.get(url).status_code for _ in range(4)] == [202, 202, 202, 200]


def test_export_job_can_wait_for_time(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    medplum.set_async_jobs(polls=0, after_ms=300)
    url = fhir.get("$export").headers["content-location"]
    assert fhir.get(url).status_code == 202
    time.sleep(0.35)
    assert fhir.get(url).status_code == 200


def test_complete_async_jobs_control(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    medplum.set_async_jobs(polls=100)
    url = fhir.get("$export").headers["content-location"]
    medplum.complete_async_jobs()
    assert fhir.get(url).status_code == 200
    assert medplum.async_jobs()[0]["status"] == "completed"


def test_group_export_covers_the_members_compartments(fhir: httpx.Client) -> None:
    member = create(fhir, {"resourceType": "Patient", "name": [{"family": "Member"}]})
    create(fhir, {"resourceType": "Patient", "name": [{"family": "Outsider"}]})
    create(
        fhir,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{member['id']}"},
        },
    )
    group = create(
        fhir,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{member['id']}"}}],
        },
    )
    url = fhir.post(f"Group/{group['id']}/$export", json={"resourceType": "Parameters"}).headers[
        "content-location"
    ]
    body = poll_until_done(fhir, url).json()
    assert {"Observation", "Patient"} <= {o["type"] for o in body["output"]}
    patient_url = next(o["url"] for o in body["output"] if o["type"] == "Patient")
    assert "Outsider" not in httpx.get(patient_url).text


def test_cancelled_export_status_is_404(fhir: httpx.Client) -> None:
    url = fhir.get("$export").headers["content-location"]
    assert fhir.delete(url).status_code == 202
    assert fhir.get(url).status_code == 404


def test_async_set_accounts_job_status_returns_the_async_job(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    org = create(fhir, {"resourceType": "Organization", "name": "Tenant"})
    patient = create(fhir, {"resourceType": "Patient"})
    response = fhir.post(
        f"Patient/{patient['id']}/$set-accounts",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "accounts", "valueReference": {"reference": f"Organization/{org['id']}"}},
                {"name": "propagate", "valueBoolean": True},
            ],
        },
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202
    url = response.json()["issue"][0]["diagnostics"]
    assert url == f"{medplum.fhir_base_url}job/{url.split('/')[-2]}/status"
    assert response.headers["content-location"] == url
    job = poll_until_done(fhir, url)
    assert job.status_code == 200
    assert job.json()["resourceType"] == "AsyncJob"
    assert job.json()["status"] == "completed"
    assert parameter(job.json()["output"], "resourcesUpdated") == 1


# ---- Bots -------------------------------------------------------------------------------------


def deployed_bot(fhir: httpx.Client, code: str = ECHO_BOT, **fields: Any) -> str:
    bot = create(
        fhir, {"resourceType": "Bot", "name": "echo", "runtimeVersion": "vmcontext", **fields}
    )
    deployed = fhir.post(f"Bot/{bot['id']}/$deploy", json={"code": code, "filename": "index.js"})
    assert deployed.status_code == 200, deployed.text
    return str(bot["id"])


def test_deploy_stores_the_code_as_the_bots_executable_binary(fhir: httpx.Client) -> None:
    bot_id = deployed_bot(fhir)
    bot = fhir.get(f"Bot/{bot_id}").json()
    executable = bot["executableCode"]
    assert (executable["contentType"], executable["title"]) == ("text/javascript", "index.js")
    assert fhir.get(executable["url"]).text == ECHO_BOT


def test_deploy_without_code_is_400(fhir: httpx.Client) -> None:
    bot = create(fhir, {"resourceType": "Bot", "name": "b"})
    response = fhir.post(f"Bot/{bot['id']}/$deploy", json={})
    assert response.status_code == 400
    assert response.json()["issue"][0]["details"]["text"] == "Missing code"


def test_execute_runs_the_handler_with_the_input_and_content_type(fhir: httpx.Client) -> None:
    bot_id = deployed_bot(fhir)
    response = fhir.post(f"Bot/{bot_id}/$execute", json={"hello": "world"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"echoed": {"hello": "world"}, "contentType": "application/json"}


def test_execute_with_text_input(fhir: httpx.Client) -> None:
    bot_id = deployed_bot(fhir)
    response = fhir.post(
        f"Bot/{bot_id}/$execute", content=b"plain", headers={"Content-Type": "text/plain"}
    )
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.json() == {"echoed": "plain", "contentType": "text/plain"}


def test_execute_by_identifier(fhir: httpx.Client) -> None:
    deployed_bot(fhir, identifier=[{"system": "http://example.org/bots", "value": "echo-1"}])
    response = fhir.post(
        "Bot/$execute", params={"identifier": "http://example.org/bots|echo-1"}, json={"a": 1}
    )
    assert response.status_code == 200
    assert response.json()["echoed"] == {"a": 1}


def test_bot_can_use_the_medplum_client(fhir: httpx.Client) -> None:
    code = """
    exports.handler = async (medplum, event) => {
      const name = [{ family: event.input.family }];
      const p = await medplum.createResource({ resourceType: 'Patient', name });
      return (await medplum.readResource('Patient', p.id)).name[0].family;
    };"""
    bot_id = deployed_bot(fhir, code)
    response = fhir.post(f"Bot/{bot_id}/$execute", json={"family": "FromBot"})
    assert response.text == "FromBot"


def test_bot_that_throws_is_400_with_the_log(fhir: httpx.Client) -> None:
    bot_id = deployed_bot(fhir, "exports.handler = async () => { throw new Error('boom'); };")
    response = fhir.post(f"Bot/{bot_id}/$execute", json={})
    assert response.status_code == 400
    assert "boom" in response.json()["issue"][0]["details"]["text"]


def test_bot_without_runtime_is_unsupported(fhir: httpx.Client) -> None:
    bot = create(fhir, {"resourceType": "Bot", "name": "no runtime"})
    fhir.post(f"Bot/{bot['id']}/$deploy", json={"code": ECHO_BOT})
    response = fhir.post(f"Bot/{bot['id']}/$execute", json={})
    assert response.status_code == 400
    assert response.json()["issue"][0]["details"]["text"] == "Unsupported bot runtime"


def test_bots_need_the_project_feature(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    bot_id = deployed_bot(fhir)
    medplum.set_project(features=[])
    response = fhir.post(f"Bot/{bot_id}/$execute", json={})
    assert response.json()["issue"][0]["details"]["text"] == "Bots not enabled"


def test_execute_async_returns_a_job_with_the_response_body(fhir: httpx.Client) -> None:
    bot_id = deployed_bot(fhir)
    response = fhir.post(
        f"Bot/{bot_id}/$execute", json={"x": 1}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202
    job = poll_until_done(fhir, response.headers["content-location"]).json()
    assert json.loads(parameter(job["output"], "responseBody")) == {
        "echoed": {"x": 1},
        "contentType": "application/json",
    }


# ---- operations ---------------------------------------------------------------------------


def test_patient_everything_returns_the_compartment(fhir: httpx.Client) -> None:
    patient = create(fhir, {"resourceType": "Patient"})
    for _ in range(3):
        create(
            fhir,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": f"Patient/{patient['id']}"},
            },
        )
    create(fhir, {"resourceType": "Patient"})
    body = fhir.get(f"Patient/{patient['id']}/$everything").json()
    assert body["type"] == "searchset"
    types = [e["resource"]["resourceType"] for e in body["entry"]]
    assert types == ["Patient", "Observation", "Observation", "Observation"]


def test_patient_everything_pages_with_count(fhir: httpx.Client) -> None:
    patient = create(fhir, {"resourceType": "Patient"})
    for _ in range(3):
        create(
            fhir,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": f"Patient/{patient['id']}"},
            },
        )
    first = fhir.get(f"Patient/{patient['id']}/$everything", params={"_count": 3}).json()
    assert len(first["entry"]) == 3
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = fhir.get(next_url).json()
    assert len(second["entry"]) == 1
    assert not any(link["relation"] == "next" for link in second["link"])


def test_expunge_needs_a_super_admin_project(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    patient = create(fhir, {"resourceType": "Patient"})
    assert fhir.post(f"Patient/{patient['id']}/$expunge").status_code == 403
    medplum.set_project(super_admin=True)
    assert fhir.post(f"Patient/{patient['id']}/$expunge").status_code == 200
    assert fhir.get(f"Patient/{patient['id']}").status_code == 404
    assert fhir.get(f"Patient/{patient['id']}/_history").status_code == 404


def test_expunge_everything_is_an_async_job(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.set_project(super_admin=True)
    patient = create(fhir, {"resourceType": "Patient"})
    obs = create(
        fhir,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{patient['id']}"},
        },
    )
    response = fhir.post(f"Patient/{patient['id']}/$expunge", params={"everything": "true"})
    assert response.status_code == 202
    poll_until_done(fhir, response.headers["content-location"])
    assert fhir.get(f"Observation/{obs['id']}").status_code == 404


def test_ccda_export_answers_xml(fhir: httpx.Client) -> None:
    patient = create(
        fhir, {"resourceType": "Patient", "name": [{"given": ["Ada"], "family": "Xml"}]}
    )
    response = fhir.get(f"Patient/{patient['id']}/$ccda-export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/cda+xml"
    assert "<ClinicalDocument" in response.text and "<family>Xml</family>" in response.text


def test_clone_is_not_a_medplum_operation_for_ordinary_resources(fhir: httpx.Client) -> None:
    patient = create(fhir, {"resourceType": "Patient"})
    assert fhir.post(f"Patient/{patient['id']}/$clone").status_code == 404


def test_set_accounts_sets_meta_accounts_and_propagates(fhir: httpx.Client) -> None:
    org = create(fhir, {"resourceType": "Organization", "name": "Tenant"})
    patient = create(fhir, {"resourceType": "Patient"})
    obs = create(
        fhir,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{patient['id']}"},
        },
    )
    response = fhir.post(
        f"Patient/{patient['id']}/$set-accounts",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "accounts", "valueReference": {"reference": f"Organization/{org['id']}"}},
                {"name": "propagate", "valueBoolean": True},
            ],
        },
    )
    assert response.status_code == 200
    assert parameter(response.json(), "resourcesUpdated") == 2
    for path in (f"Patient/{patient['id']}", f"Observation/{obs['id']}"):
        assert fhir.get(path).json()["meta"]["accounts"] == [
            {"reference": f"Organization/{org['id']}"}
        ]


def test_set_accounts_is_for_project_admins(medplum: LocalMedplumServer) -> None:
    token = medplum.access_token("user")
    response = httpx.post(
        f"{medplum.fhir_base_url}Patient/x/$set-accounts",
        json={"resourceType": "Parameters", "parameter": []},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403


def test_admin_create_with_meta_accounts_keeps_them(fhir: httpx.Client) -> None:
    accounts = [{"reference": "Organization/tenant-a"}]
    patient = create(fhir, {"resourceType": "Patient", "meta": {"accounts": accounts}})
    assert patient["meta"]["accounts"] == accounts
    extended = fhir.get(f"Patient/{patient['id']}", headers={"X-Medplum": "extended"}).json()
    assert {"reference": "Organization/tenant-a"} in extended["meta"]["compartment"]


def test_update_by_a_non_admin_keeps_existing_accounts(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    patient = create(
        fhir, {"resourceType": "Patient", "meta": {"accounts": [{"reference": "Organization/a"}]}}
    )
    token = medplum.access_token("user")
    changed = {**patient, "active": True, "meta": {"accounts": [{"reference": "Organization/b"}]}}
    response = httpx.put(
        f"{medplum.fhir_base_url}Patient/{patient['id']}",
        json=changed,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert response.json()["meta"]["accounts"] == [{"reference": "Organization/a"}]


def test_invite_user_creates_user_profile_and_membership(
    medplum: LocalMedplumServer, fhir: httpx.Client, admin_token: str
) -> None:
    response = httpx.post(
        f"{medplum.base_url}/admin/projects/{medplum.project_id}/invite",
        json={
            "resourceType": "Practitioner",
            "firstName": "Ines",
            "lastName": "Vited",
            "email": "ines@example.com",
            "sendEmail": False,
            "admin": False,
            "scope": "project",
        },
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 200, response.text
    membership = response.json()
    assert membership["resourceType"] == "ProjectMembership"
    profile = fhir.get(membership["profile"]["reference"]).json()
    assert profile["name"] == [{"given": ["Ines"], "family": "Vited"}]


def test_invite_by_a_non_admin_is_403(medplum: LocalMedplumServer) -> None:
    token = medplum.access_token("user")
    response = httpx.post(
        f"{medplum.base_url}/admin/projects/{medplum.project_id}/invite",
        json={"resourceType": "Practitioner", "firstName": "A", "lastName": "B", "email": "a@b.c"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403


# ---- terminology --------------------------------------------------------------------------


def test_valueset_expand_by_url_with_filter(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    url = medplum.terminology["value_set"]["url"]
    body = fhir.get("ValueSet/$expand", params={"url": url}).json()
    assert [c["code"] for c in body["expansion"]["contains"]] == ["red", "orange"]
    filtered = fhir.post(
        "ValueSet/$expand",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "url", "valueUri": url},
                {"name": "filter", "valueString": "ora"},
            ],
        },
    ).json()
    assert [c["display"] for c in filtered["expansion"]["contains"]] == ["Orange"]


def test_codesystem_lookup(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    system = medplum.terminology["code_system"]["url"]
    body = fhir.get("CodeSystem/$lookup", params={"system": system, "code": "red"}).json()
    assert parameter(body, "name") == "SDK test colors"
    assert parameter(body, "display") == "Red"
    prop = parameter(body, "property")
    assert {"name": "value", "valueBoolean": True} in prop
    missing = fhir.get("CodeSystem/$lookup", params={"system": system, "code": "nope"})
    assert missing.status_code == 404


def test_conceptmap_translate(medplum: LocalMedplumServer, fhir: httpx.Client) -> None:
    terminology = medplum.terminology
    body = fhir.post(
        f"ConceptMap/{terminology['concept_map']['id']}/$translate",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "code", "valueCode": "red"},
                {"name": "system", "valueUri": terminology["code_system"]["url"]},
            ],
        },
    ).json()
    assert parameter(body, "result") is True
    match = parameter(body, "match")
    assert {
        "name": "concept",
        "valueCoding": {
            "system": terminology["target_system"],
            "code": "R",
            "display": "Legacy red",
        },
    } in match


def test_valueset_and_codesystem_validate_code(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    terminology = medplum.terminology
    system = terminology["code_system"]["url"]
    in_set = fhir.post(
        "ValueSet/$validate-code",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "url", "valueUri": terminology["value_set"]["url"]},
                {"name": "coding", "valueCoding": {"system": system, "code": "orange"}},
            ],
        },
    ).json()
    assert in_set["parameter"][0] == {"name": "result", "valueBoolean": True}
    assert parameter(in_set, "display") == "Orange"
    not_in_set = fhir.get(
        f"ValueSet/{terminology['value_set']['id']}/$validate-code",
        params={"system": system, "code": "blue"},
    ).json()
    assert parameter(not_in_set, "result") is False
    in_system = fhir.get("CodeSystem/$validate-code", params={"url": system, "code": "blue"}).json()
    assert parameter(in_system, "result") is True


# ---- conditional writes and history ----------------------------------------------------------

IDENTIFIER = "http://example.org/mrn|cond-1"


def test_conditional_update_creates_then_updates(fhir: httpx.Client) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": "cond-1"}],
    }
    first = fhir.put("Patient", params={"identifier": IDENTIFIER}, json=patient)
    assert first.status_code == 201
    second = fhir.put(
        "Patient", params={"identifier": IDENTIFIER}, json={**patient, "active": True}
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["active"] is True


def test_conditional_update_with_several_matches_is_412(fhir: httpx.Client) -> None:
    for _ in range(2):
        create(fhir, {"resourceType": "Patient", "name": [{"family": "Twin"}]})
    response = fhir.put("Patient", params={"name": "Twin"}, json={"resourceType": "Patient"})
    assert response.status_code == 412


def test_conditional_patch_and_delete(fhir: httpx.Client) -> None:
    patient = create(
        fhir,
        {
            "resourceType": "Patient",
            "identifier": [{"system": "http://example.org/mrn", "value": "cond-1"}],
        },
    )
    patched = fhir.patch(
        "Patient",
        params={"identifier": IDENTIFIER},
        content=json.dumps([{"op": "add", "path": "/active", "value": False}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is False
    assert fhir.delete("Patient", params={"identifier": IDENTIFIER}).status_code == 200
    assert fhir.get(f"Patient/{patient['id']}").status_code == 410


def test_history_pages_with_count_and_offset_and_any_version_vreads(fhir: httpx.Client) -> None:
    patient = create(fhir, {"resourceType": "Patient"})
    versions = [patient["meta"]["versionId"]]
    for i in range(3):
        updated = fhir.put(
            f"Patient/{patient['id']}", json={**patient, "birthDate": f"200{i}-01-01"}
        )
        versions.append(updated.json()["meta"]["versionId"])
    page = fhir.get(f"Patient/{patient['id']}/_history", params={"_count": 2, "_offset": 1}).json()
    assert page["total"] == 4
    assert [e["resource"]["meta"]["versionId"] for e in page["entry"]] == versions[::-1][1:3]
    for version in versions:
        assert fhir.get(f"Patient/{patient['id']}/_history/{version}").status_code == 200


def test_history_order_is_stable(fhir: httpx.Client) -> None:
    patient = create(fhir, {"resourceType": "Patient"})
    fhir.put(f"Patient/{patient['id']}", json={**patient, "active": True})
    first = fhir.get(f"Patient/{patient['id']}/_history").json()
    second = fhir.get(f"Patient/{patient['id']}/_history").json()
    assert first["entry"] == second["entry"]
    assert first["entry"][0]["request"]["method"] == "GET"


# ---- RateLimit ---------------------------------------------------------------------------------


def test_every_fhir_answer_carries_the_rate_limit_budgets(
    medplum: LocalMedplumServer, fhir: httpx.Client
) -> None:
    medplum.set_rate_limit(requests=120, fhir_interactions=7, reset_seconds=42)
    for response in (
        fhir.get("Patient"),
        fhir.post("Binary", content=b"x", headers={"Content-Type": "text/plain"}),
        fhir.get("$export"),
    ):
        assert response.headers.get_list("ratelimit") == [
            '"requests";r=120;t=42',
            '"fhirInteractions";r=7;t=42',
        ]
