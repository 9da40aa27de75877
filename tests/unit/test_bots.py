"""Bots: the Bot resource, code saving, $deploy and $execute (content types, answers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from pymedplum import PreconditionFailedError, ServerError
from pymedplum.fhir import Bot

from .conftest import Driver, FakeMedplum, query

FHIR = "/fhir/R4/"


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_create_bot_builds_the_resource(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().create_bot("Intake", description="", runtime_version="awslambda", timeout=10)
    assert body(fake.api_requests[0]) == {
        "resourceType": "Bot",
        "name": "Intake",
        "runtimeVersion": "awslambda",
        "timeout": 10,
    }


def test_create_bot_refuses_an_id(make: Callable[..., Driver]) -> None:
    with pytest.raises(ValueError, match="id"):
        make().create_bot("Intake", id="chosen")


def test_read_list_update_delete(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    driver = make()
    assert isinstance(driver.read_bot("b1", Bot), Bot)
    driver.list_bots(name="intake", _count=5)
    driver.update_bot({"resourceType": "Bot", "id": "b1", "meta": {"versionId": "3"}, "name": "x"})
    driver.delete_bot("b1")
    read, search, update, delete = fake.api_requests
    assert read.url.path == FHIR + "Bot/b1"
    assert search.url.path == FHIR + "Bot" and query(search) == {
        "name": ["intake"],
        "_count": ["5"],
    }
    assert update.method == "PUT" and update.headers["if-match"] == 'W/"3"'
    assert delete.method == "DELETE" and delete.url.path == FHIR + "Bot/b1"


def test_update_bot_refuses_another_type(make: Callable[..., Driver]) -> None:
    with pytest.raises(ValueError, match="not a Bot"):
        make().update_bot({"resourceType": "Patient", "id": "x"})


def test_save_bot_code_writes_under_if_match(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    saved = make().save_bot_code("b1", "export async function handler() {}")
    read, write = fake.api_requests
    assert write.method == "PUT" and write.headers["if-match"] == 'W/"1"'
    assert body(write)["code"] == "export async function handler() {}"
    assert saved["code"] == "export async function handler() {}"


def test_save_bot_code_skips_an_unchanged_write(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    current = {"resourceType": "Bot", "id": "b1", "meta": {"versionId": "2"}, "code": "same"}
    fake.script("GET", FHIR + "Bot/b1", httpx.Response(200, json=current))
    assert make().save_bot_code("b1", "same") == current
    assert len(fake.api_requests) == 1


def test_save_bot_code_rereads_once_after_a_412(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("PUT", FHIR + "Bot/b1", httpx.Response(412), httpx.Response(412))
    with pytest.raises(PreconditionFailedError):
        make().save_bot_code("b1", "code")
    assert [r.method for r in fake.api_requests] == ["GET", "PUT", "GET", "PUT"]


def test_deploy_bot(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "POST",
        FHIR + "Bot/b1/$deploy",
        httpx.Response(200, json={"resourceType": "OperationOutcome"}),
    )
    make().deploy_bot("b1", "exports.handler = async () => 1;")
    request = fake.api_requests[0]
    assert request.headers["content-type"] == "application/json"
    assert body(request) == {"code": "exports.handler = async () => 1;", "filename": "index.js"}


def test_save_and_deploy(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "Bot/b1/$deploy", httpx.Response(200, json={"ok": True}))
    bot, deployed = make().save_and_deploy_bot("b1", "src", "compiled", filename="bot.js")
    assert bot["code"] == "src" and deployed == {"ok": True}
    assert body(fake.api_requests[-1]) == {"code": "compiled", "filename": "bot.js"}


def test_execute_by_id_sends_json(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "POST",
        FHIR + "Bot/b1/$execute",
        httpx.Response(
            200, content=b'{"answer":1.50}', headers={"content-type": "application/json"}
        ),
    )
    answer = make().execute_bot("b1", {"value": Decimal("1.50")})
    request = fake.api_requests[0]
    assert request.content == b'{"value":1.50}'
    assert request.headers["content-type"] == "application/json"
    assert answer == {"answer": Decimal("1.50")}


def test_execute_by_identifier(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "POST",
        FHIR + "Bot/$execute",
        httpx.Response(200, text="done", headers={"content-type": "text/plain"}),
    )
    answer = make().execute_bot(
        identifier={"system": "https://example.com/bots", "value": "1"},
        input_data="MSH|^~\\&|A",
        content_type="x-application/hl7-v2+er7",
    )
    request = fake.api_requests[0]
    assert query(request) == {"identifier": ["https://example.com/bots|1"]}
    assert request.content == b"MSH|^~\\&|A"
    assert request.headers["content-type"] == "x-application/hl7-v2+er7"
    assert answer == "done"


def test_execute_needs_one_target(make: Callable[..., Driver]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        make().execute_bot("b1", {}, identifier="s|v")
    with pytest.raises(ValueError, match="exactly one"):
        make().execute_bot(input_data={})


def test_execute_refuses_a_dict_as_text(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    with pytest.raises(TypeError, match="text/plain"):
        make().execute_bot("b1", {"a": 1}, content_type="text/plain")
    assert fake.api_requests == []


def test_execute_form_fields(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "Bot/b1/$execute", httpx.Response(200))
    assert make().execute_bot("b1", {"a": "1 2"}, "application/x-www-form-urlencoded") is None
    assert fake.api_requests[0].content == b"a=1+2"


def test_a_bot_run_is_never_replayed(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "Bot/b1/$execute", httpx.Response(503), httpx.Response(200))
    with pytest.raises(ServerError):
        make().execute_bot("b1", {})
    assert len(fake.api_requests) == 1
