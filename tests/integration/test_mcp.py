"""`pymedplum mcp` driven by the official MCP client over stdio, against the local server.

Each test spawns the installed console script (`pymedplum mcp ...`) as an MCP server with
the stdio client, and calls its tools as an assistant would.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from pymedplum.testing.local_server import LocalMedplumServer

pytestmark = pytest.mark.anyio

PYMEDPLUM = Path(sys.executable).parent / "pymedplum"
READ_TOOLS = {"read_resource", "search_resources", "validate_resource"}
WRITE_TOOLS = {"create_resource", "update_resource", "delete_resource"}


@asynccontextmanager
async def mcp_session(
    server: LocalMedplumServer, *args: str, home: Path, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[ClientSession, Any]]:
    """An initialized client session with `pymedplum mcp *args`, and its stderr file."""
    admin = server.admin_client
    params = StdioServerParameters(
        command=str(PYMEDPLUM),
        args=["mcp", *args],
        env={
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "cfg"),
            "MEDPLUM_BASE_URL": server.base_url + "/",
            "MEDPLUM_CLIENT_ID": admin.client_id,
            "MEDPLUM_CLIENT_SECRET": admin.client_secret,
            **(env or {}),
        },
    )
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session, errlog


def text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def create_patient(server: LocalMedplumServer, **fields: Any) -> dict[str, Any]:
    body = {"resourceType": "Patient", "name": [{"family": "Mcp"}], **fields}
    token = server.access_token()
    response = httpx.post(
        server.fhir_base_url + "Patient",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def assert_no_secrets(server: LocalMedplumServer, *outputs: str) -> None:
    for output in outputs:
        assert server.admin_client.client_secret not in output
        assert "eyJ" not in output  # no bearer or other JWT


async def test_read_only_by_default_with_read_search_and_offline_validation(
    medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    first = create_patient(medplum, birthDate="1990-01-01")
    for _ in range(4):
        create_patient(medplum)
    async with mcp_session(medplum, home=tmp_path) as (session, errlog):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == READ_TOOLS
        assert all("on_behalf_of" not in t.input_schema["properties"] for t in tools.values())
        assert tools["read_resource"].annotations.read_only_hint is True

        read = await session.call_tool(
            "read_resource", {"resource_type": "Patient", "resource_id": first["id"]}
        )
        assert not read.is_error
        assert json.loads(text(read)) == first

        search = await session.call_tool(
            "search_resources",
            {"resource_type": "Patient", "query": "name=Mcp&_count=2", "limit": 3},
        )
        found = json.loads(text(search))
        assert (found["returned"], found["more"]) == (3, True)  # read across pages of 2
        everything = await session.call_tool(
            "search_resources", {"resource_type": "Patient", "query": "?name=Mcp", "limit": 50}
        )
        assert json.loads(text(everything))["returned"] == 5

        missing = await session.call_tool(
            "read_resource", {"resource_type": "Patient", "resource_id": "nope"}
        )
        assert missing.is_error and "HTTP 404" in text(missing)
        bad_param = await session.call_tool(
            "search_resources", {"resource_type": "Patient", "query": "nonsense=1"}
        )
        assert bad_param.is_error and "HTTP 400" in text(bad_param)

        invalid = await session.call_tool(
            "validate_resource", {"resource": {"resourceType": "Observation", "status": "done"}}
        )
        assert text(invalid).startswith("invalid:") and "Observation.status" in text(invalid)
        valid = await session.call_tool("validate_resource", {"resource": first})
        assert text(valid) == "valid"

        refused = await session.call_tool("delete_resource", {"resource_type": "Patient"})
        assert refused.is_error
        errlog.seek(0)
        outputs = [text(r) for r in (read, search, missing, bad_param, refused)]
        assert_no_secrets(medplum, *outputs, errlog.read())
    assert medplum.fhir_requests()[-1]["method"] == "GET"  # nothing was written


async def test_writes_when_allowed_all_act_as_the_server_wide_membership(
    medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    alice = medplum.practitioners["alice"]
    medplum.clear_requests()
    async with mcp_session(
        medplum, "--allow-writes", "--on-behalf-of", alice.membership, home=tmp_path
    ) as (session, errlog):
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == READ_TOOLS | WRITE_TOOLS

        created = await session.call_tool(
            "create_resource", {"resource": {"resourceType": "Patient", "gender": "female"}}
        )
        patient = json.loads(text(created))
        assert patient["meta"]["onBehalfOf"]["reference"] == alice.practitioner
        patient["gender"] = "male"
        updated = await session.call_tool("update_resource", {"resource": patient})
        assert json.loads(text(updated))["gender"] == "male"
        stale = await session.call_tool("update_resource", {"resource": patient})
        assert stale.is_error and "412" in text(stale)  # If-Match on the old versionId
        deleted = await session.call_tool(
            "delete_resource", {"resource_type": "Patient", "resource_id": patient["id"]}
        )
        assert text(deleted) == f"deleted Patient/{patient['id']}"
        errlog.seek(0)
        assert_no_secrets(medplum, errlog.read())

    calls = [r for r in medplum.fhir_requests() if r["path"].startswith("/fhir/R4/Patient")]
    assert [r["method"] for r in calls] == ["POST", "PUT", "PUT", "DELETE"]
    assert {r["on_behalf_of"] for r in calls} == {alice.membership}


async def test_tools_may_pick_only_an_allowed_membership(
    medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    restricted = medplum.practitioners["restricted"].membership
    bob = medplum.practitioners["bob"].membership
    untagged = create_patient(medplum)
    async with mcp_session(medplum, "--allow-on-behalf-of", restricted, home=tmp_path) as (
        session,
        _errlog,
    ):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        choice = tools["read_resource"].input_schema["properties"]["on_behalf_of"]
        assert {"const": restricted, "type": "string"} in choice["anyOf"]

        args = {"resource_type": "Patient", "resource_id": untagged["id"]}
        as_default = await session.call_tool("read_resource", args)
        assert not as_default.is_error  # the server-wide identity: the admin client
        as_restricted = await session.call_tool(
            "read_resource", {**args, "on_behalf_of": restricted}
        )
        assert as_restricted.is_error and "HTTP 404" in text(as_restricted)  # its policy
        as_bob = await session.call_tool("read_resource", {**args, "on_behalf_of": bob})
        assert as_bob.is_error  # not allowed: refused before any request

    reads = [r for r in medplum.fhir_requests() if r["path"].endswith(untagged["id"])]
    assert [r["on_behalf_of"] for r in reads] == [None, restricted]
