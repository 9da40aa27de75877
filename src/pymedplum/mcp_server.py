"""`pymedplum mcp`: a Model Context Protocol server over stdio, on the async client.

Tools for an AI assistant: `read_resource`, `search_resources` and `validate_resource`
(offline), plus `create_resource`, `update_resource` and `delete_resource` only when the
server was started with writes allowed. Results are FHIR JSON text with exact decimals.

On-behalf-of is decided by whoever starts the server, never by the model alone: every call
acts as the server-wide membership (`--on-behalf-of`, `MEDPLUM_ON_BEHALF_OF`, the config
profile), and tools take an `on_behalf_of` argument only when memberships were allowed
with `--allow-on-behalf-of`, and then only one of those.

Errors reach the model as tool errors carrying the SDK's messages (status, route template,
issue codes and texts): no token, no secret, no request. See docs/mcp.md.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl

from pydantic import ValidationError as PydanticValidationError

from pymedplum import __version__, _json
from pymedplum._obo import membership_reference
from pymedplum.cli._output import describe_error, validation_messages
from pymedplum.exceptions import MedplumError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from pymedplum import AsyncMedplumClient
    from pymedplum.cli._config import Settings

__all__ = ["INSTALL_HINT", "MAX_SEARCH_RESULTS", "build_server", "require_mcp", "serve"]

INSTALL_HINT = "`pymedplum mcp` needs the mcp package: pip install 'pymedplum[mcp]'"

#: The most resources one search_resources call returns (a model's context is finite).
MAX_SEARCH_RESULTS = 200
INSTRUCTIONS = """\
Tools over a Medplum FHIR R4 server. Resources are FHIR JSON. Search parameters are FHIR
search parameters as a query string, e.g. "name=Smith&birthdate=ge1990-01-01". Use
validate_resource before writing. Every call acts as the membership the server was started
with{writes}."""

ClientFactory = Callable[[], "AsyncMedplumClient"]


class _Holder:
    client: AsyncMedplumClient | None = None


def require_mcp() -> None:
    """Raise an ImportError naming the extra when the `mcp` package is missing."""
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT, name="mcp") from None


def _tool_error(exc: BaseException) -> Exception:
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError("\n".join(describe_error(exc)))


def _dumps(value: Any) -> str:
    return _json.dumps(value, indent=True).decode()


def _parse_query(query: str) -> list[tuple[str, str]]:
    text = query.strip().lstrip("?")
    return parse_qsl(text, keep_blank_values=True) if text else []


def build_server(
    client_factory: ClientFactory,
    *,
    allow_writes: bool = False,
    allowed_memberships: Sequence[str] = (),
) -> MCPServer:
    """The MCP server with its tools; `client_factory` makes the client it uses while it runs.

    `allowed_memberships`: when given, tools take an `on_behalf_of` argument that must be
    one of them; otherwise they have no such argument and act as the client's default.
    """
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    allowed = tuple(membership_reference(m) for m in allowed_memberships)
    holder = _Holder()

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        async with client_factory() as client:
            holder.client = client
            try:
                yield
            finally:
                holder.client = None

    writes = ". Writes (create, update, delete) are enabled" if allow_writes else ""
    server: MCPServer = MCPServer(
        name="pymedplum",
        version=__version__,
        instructions=INSTRUCTIONS.format(writes=writes),
        lifespan=lifespan,
    )

    def client() -> AsyncMedplumClient:
        if holder.client is None:  # pragma: no cover - only outside the server's lifespan
            raise RuntimeError("the Medplum client is not open")
        return holder.client

    def acting(on_behalf_of: str | None) -> str | None:
        """The per-call membership, checked against the allowed ones (None: the default)."""
        if on_behalf_of is None:
            return None
        if membership_reference(on_behalf_of) not in allowed:
            raise _tool_error(
                MedplumError("on_behalf_of must be one of the memberships this server allows")
            )
        return on_behalf_of

    async def call(work: Awaitable[Any]) -> Any:
        try:
            return await work
        except (MedplumError, PydanticValidationError) as exc:
            raise _tool_error(exc) from None
        except (ValueError, TypeError) as exc:  # bad arguments, refused before any request
            raise _tool_error(MedplumError(str(exc))) from None

    # ---------------------------------------------------------------- read-only tools

    async def read_resource(
        resource_type: str, resource_id: str, on_behalf_of: str | None = None
    ) -> str:
        """Read one FHIR resource by type and id (e.g. Patient, 123); returns its JSON."""
        resource = await call(
            client().read_resource(
                cast(Any, resource_type), resource_id, on_behalf_of=acting(on_behalf_of)
            )
        )
        return _dumps(resource)

    async def search_resources(
        resource_type: str,
        query: str = "",
        limit: int = 20,
        on_behalf_of: str | None = None,
    ) -> str:
        """Search resources of a type with FHIR search parameters as a query string
        ("name=Smith&birthdate=ge1990-01-01"); reads further pages up to `limit` (at most
        200) and returns {"resources": [...], "returned": n, "more": true|false}."""
        limit = max(1, min(int(limit), MAX_SEARCH_RESULTS))
        pairs = _parse_query(query)

        async def collect() -> dict[str, Any]:
            found: list[Any] = []
            more = False
            pages = client().search_resource_pages(
                cast(Any, resource_type), pairs, on_behalf_of=acting(on_behalf_of)
            )
            async for resource in pages:
                if len(found) == limit:
                    more = True
                    break
                found.append(resource)
            return {"resources": found, "returned": len(found), "more": more}

        return _dumps(await call(collect()))

    async def validate_resource(resource: dict[str, Any]) -> str:
        """Validate a FHIR resource (JSON object) against the FHIR R4 and Medplum models,
        offline; returns "valid" or each problem with its FHIR path."""
        from pymedplum.helpers import parse_resource

        try:
            parse_resource(resource)
        except PydanticValidationError as exc:
            return "invalid:\n" + "\n".join(validation_messages(exc))
        except (ValueError, TypeError) as exc:
            return f"invalid: {exc}"
        return "valid"

    # ---------------------------------------------------------------- writes

    async def create_resource(resource: dict[str, Any], on_behalf_of: str | None = None) -> str:
        """Create a FHIR resource (JSON object with resourceType); returns what was stored."""
        stored = await call(client().create_resource(resource, on_behalf_of=acting(on_behalf_of)))
        return _dumps(stored)

    async def update_resource(resource: dict[str, Any], on_behalf_of: str | None = None) -> str:
        """Replace a FHIR resource (JSON object with resourceType and id). With
        meta.versionId, the update fails if the resource changed since that version."""
        stored = await call(client().update_resource(resource, on_behalf_of=acting(on_behalf_of)))
        return _dumps(stored)

    async def delete_resource(
        resource_type: str, resource_id: str, on_behalf_of: str | None = None
    ) -> str:
        """Delete a FHIR resource by type and id."""
        await call(
            client().delete_resource(
                cast(Any, resource_type), resource_id, on_behalf_of=acting(on_behalf_of)
            )
        )
        return f"deleted {resource_type}/{resource_id}"

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    tools: list[tuple[Callable[..., Awaitable[str]], ToolAnnotations]] = [
        (read_resource, read_only),
        (search_resources, read_only),
    ]
    if allow_writes:
        tools += [
            (create_resource, ToolAnnotations(read_only_hint=False, destructive_hint=False)),
            (update_resource, ToolAnnotations(read_only_hint=False, destructive_hint=True)),
            (delete_resource, ToolAnnotations(read_only_hint=False, destructive_hint=True)),
        ]
    for fn, hints in tools:
        server.add_tool(_with_on_behalf_of(fn, allowed), annotations=hints, structured_output=False)
    server.add_tool(validate_resource, annotations=read_only, structured_output=False)
    return server


def _with_on_behalf_of(
    fn: Callable[..., Awaitable[str]], allowed: tuple[str, ...]
) -> Callable[..., Awaitable[str]]:
    """The tool as the model sees it: `on_behalf_of` limited to the allowed memberships
    (an enum in its schema), or no such argument at all when none are allowed."""
    signature = inspect.signature(fn, eval_str=True)
    parameters = list(signature.parameters.values())
    if allowed:
        choice = Literal[allowed]  # type: ignore[valid-type]
        parameters = [
            p.replace(annotation=choice | None) if p.name == "on_behalf_of" else p
            for p in parameters
        ]
    else:
        parameters = [p for p in parameters if p.name != "on_behalf_of"]

    async def tool(**kwargs: Any) -> str:
        return await fn(**kwargs)

    tool.__name__ = fn.__name__
    tool.__qualname__ = fn.__qualname__
    tool.__doc__ = (fn.__doc__ or "") + (
        " on_behalf_of: act as one of the allowed memberships instead of the default."
        if allowed
        else ""
    )
    tool.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return tool


def serve(
    settings: Settings,
    *,
    allow_writes: bool = False,
    allowed_memberships: Sequence[str] = (),
) -> None:
    """Run the server over stdio until the client disconnects.

    stdout carries the protocol; logs go to stderr. httpx's request logs are silenced:
    their URLs can hold search values (PHI).
    """
    from pymedplum import AsyncMedplumClient

    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def factory() -> AsyncMedplumClient:
        return AsyncMedplumClient(
            settings.base_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            default_on_behalf_of=settings.on_behalf_of,
        )

    server = build_server(
        factory, allow_writes=allow_writes, allowed_memberships=allowed_memberships
    )
    server.run("stdio")
