"""Bots against the local Medplum server, with both clients: CRUD, code, $deploy, $execute."""

from __future__ import annotations

import pytest

from pymedplum import GoneError, PreconditionFailedError
from pymedplum.fhir import Bot
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

ECHO = """
exports.handler = async function (medplum, event) {
  return { resourceType: 'Parameters', parameter: [
    { name: 'contentType', valueString: event.contentType },
    { name: 'input',
      valueString: typeof event.input === 'string' ? event.input : JSON.stringify(event.input) },
  ] };
};
"""
UPPER = """
exports.handler = async function (medplum, event) {
  return String(event.input).toUpperCase();
};
"""


def test_bot_crud(client: Driver) -> None:
    bot = client.create_bot("Intake", description="Reads forms", runtime_version="vmcontext")
    assert bot["name"] == "Intake" and bot["runtimeVersion"] == "vmcontext"
    assert isinstance(client.read_bot(bot["id"], Bot), Bot)
    listed = client.list_bots(name="Intake")
    assert [e["resource"]["id"] for e in listed["entry"]] == [bot["id"]]
    updated = client.update_bot({**bot, "description": "Reads all forms"})
    assert updated["description"] == "Reads all forms"
    with pytest.raises(PreconditionFailedError):
        client.update_bot(bot)  # the first version is stale now
    client.delete_bot(bot["id"])
    with pytest.raises(GoneError):
        client.read_bot(bot["id"])


def test_create_bot_with_extra_elements(client: Driver) -> None:
    bot = client.create_bot(
        "Tagged",
        runtime_version="vmcontext",
        identifier=[{"system": "https://example.com/bots", "value": "tagged"}],
    )
    assert bot["identifier"][0]["value"] == "tagged"
    assert "description" not in bot


def test_save_bot_code(client: Driver) -> None:
    bot = client.create_bot("Saver", runtime_version="vmcontext")
    saved = client.save_bot_code(bot["id"], "export const x = 1;")
    assert saved["code"] == "export const x = 1;"
    assert saved["meta"]["versionId"] != bot["meta"]["versionId"]
    again = client.save_bot_code(bot["id"], "export const x = 1;")
    assert again["meta"]["versionId"] == saved["meta"]["versionId"]  # nothing to write


def test_deploy_and_execute_by_id_with_json(client: Driver) -> None:
    bot = client.create_bot("Echo", runtime_version="vmcontext")
    deployed = client.deploy_bot(bot["id"], ECHO)
    assert deployed["resourceType"] == "OperationOutcome"
    answer = client.execute_bot(bot["id"], {"resourceType": "Patient", "active": True})
    values = {p["name"]: p["valueString"] for p in answer["parameter"]}
    assert values["contentType"].startswith("application/json")
    assert values["input"] == '{"resourceType":"Patient","active":true}'


def test_execute_by_identifier_with_text(client: Driver) -> None:
    bot = client.create_bot(
        "Upper",
        runtime_version="vmcontext",
        identifier=[{"system": "https://example.com/bots", "value": "upper"}],
    )
    client.deploy_bot(bot["id"], UPPER, filename="upper.js")
    answer = client.execute_bot(
        identifier="https://example.com/bots|upper", input_data="hello", content_type="text/plain"
    )
    assert answer == "HELLO"
    by_model = client.execute_bot(
        identifier={"system": "https://example.com/bots", "value": "upper"},
        input_data=b"bytes",
        content_type="text/plain",
    )
    assert by_model == "BYTES"


def test_save_and_deploy_bot(client: Driver) -> None:
    bot = client.create_bot("Both", runtime_version="vmcontext")
    saved, deployed = client.save_and_deploy_bot(bot["id"], "// source", UPPER)
    assert saved["code"] == "// source"
    assert deployed["resourceType"] == "OperationOutcome"
    assert client.execute_bot(bot["id"], "abc", "text/plain") == "ABC"


def test_deploy_needs_the_bots_feature(client: Driver, medplum: LocalMedplumServer) -> None:
    from pymedplum import ValidationError

    medplum.set_project(features=[])
    bot = client.create_bot("Off", runtime_version="vmcontext")
    with pytest.raises(ValidationError):
        client.deploy_bot(bot["id"], UPPER)
