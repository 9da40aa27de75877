"""Talk to `pymedplum mcp` the way an AI assistant does (docs/mcp.md).

Starts `pymedplum mcp` as a subprocess with the official MCP client over stdio, lists its
tools, validates a resource offline, and reads and searches the server. Reads the server
and credentials from the environment (MEDPLUM_BASE_URL, MEDPLUM_CLIENT_ID,
MEDPLUM_CLIENT_SECRET), which the subprocess inherits. Needs `pip install 'pymedplum[mcp]'`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client

SETTINGS = ("MEDPLUM_BASE_URL", "MEDPLUM_CLIENT_ID", "MEDPLUM_CLIENT_SECRET")


def text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def pymedplum_command() -> str:
    """The console script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "pymedplum"
    return str(beside) if beside.exists() else (shutil.which("pymedplum") or "pymedplum")


async def tour(env: Mapping[str, str]) -> int:
    params = StdioServerParameters(
        command=pymedplum_command(),
        args=["mcp"],  # read-only; add "--allow-writes" to offer create/update/delete
        env={k: env[k] for k in SETTINGS},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        print("Tools:", ", ".join(sorted(tool.name for tool in tools)))

        draft = {"resourceType": "Patient", "birthDate": "1985-13-01"}
        checked = await session.call_tool("validate_resource", {"resource": draft})
        print("validate_resource ->", text(checked).replace("\n", " "))

        found = await session.call_tool(
            "search_resources", {"resource_type": "Patient", "query": "_count=5", "limit": 5}
        )
        page = json.loads(text(found))
        print(f"search_resources -> {page['returned']} Patients (more: {page['more']})")
        if page["resources"]:
            first = page["resources"][0]
            read = await session.call_tool(
                "read_resource", {"resource_type": "Patient", "resource_id": first["id"]}
            )
            print("read_resource ->", json.loads(text(read))["resourceType"], first["id"])
        missing = await session.call_tool(
            "read_resource", {"resource_type": "Patient", "resource_id": "no-such-id"}
        )
        print("an error, as the model sees it ->", text(missing).splitlines()[0])
    return 0


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    missing = [k for k in SETTINGS if not env.get(k)]
    if missing:
        print(f"set {', '.join(missing)} (see the docstring)", file=sys.stderr)
        return 1
    return asyncio.run(tour(env))


if __name__ == "__main__":
    raise SystemExit(main())
