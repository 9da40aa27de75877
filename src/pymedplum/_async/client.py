"""AsyncMedplumClient: the I/O shell around the shared core.

Written once as async code in pymedplum/_async/client.py; codegen/unasync.py generates
the sync client in pymedplum/_sync/ from it (`make generate`). Every decision (URLs,
OBO, retries, token bookkeeping, errors, hooks, events) lives in pymedplum._core and
its siblings; this module only sends requests, sleeps and holds the refresh lock.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel

from pymedplum import _core, _obo
from pymedplum._async._base import AsyncClientBase
from pymedplum._async.binary import AsyncBinaryMethods
from pymedplum._async.bots import AsyncBotMethods
from pymedplum._async.bulk import AsyncBulkExportMethods
from pymedplum._async.bundles import AsyncBundleMethods
from pymedplum._async.history import AsyncHistoryMethods
from pymedplum._async.jobs import AsyncJobMethods
from pymedplum._async.operations import AsyncOperationMethods
from pymedplum._async.projects import AsyncProjectMethods
from pymedplum._async.subscriptions import AsyncSubscriptionMethods
from pymedplum._core import Query, Resource, UpdateResult
from pymedplum._generated.async_search import AsyncTypedSearch
from pymedplum.bundle import FHIRBundle
from pymedplum.exceptions import PreconditionFailedError

if TYPE_CHECKING:
    from pymedplum._generated.search_params import ResourceType

__all__ = ["AsyncMedplumClient"]

M = TypeVar("M", bound=BaseModel)


class AsyncMedplumClient(
    AsyncTypedSearch,
    AsyncProjectMethods,
    AsyncBulkExportMethods,
    AsyncJobMethods,
    AsyncBinaryMethods,
    AsyncOperationMethods,
    AsyncBotMethods,
    AsyncBundleMethods,
    AsyncHistoryMethods,
    AsyncSubscriptionMethods,
    AsyncClientBase,
):
    """A Medplum FHIR R4 client.

    Example:
        async with AsyncMedplumClient(
            base_url="https://api.medplum.com/",
            client_id="YOUR_CLIENT_ID",
            client_secret="YOUR_CLIENT_SECRET",
        ) as client:
            patient = await client.read_resource("Patient", "123")

    Authentication is lazy: the first request logs in with the client credentials
    (`POST {base_url}/oauth2/token`); the token is refreshed shortly before it expires,
    and once more when the server answers 401 (the request is then replayed once).
    Every client in the process that logs in with the same base URL and credentials shares
    the token and one refresh at a time, so a fresh client per task logs in once. A 429 from
    the token endpoint is waited out as any 429 is. After a failed refresh, calls needing a
    token raise TokenRefreshCooldownError for `failed_refresh_cooldown` seconds.

    Args:
        base_url: the Medplum server. https, unless loopback or `allow_insecure_http`.
        client_id: OAuth client id (with `client_secret`) for the client-credentials flow.
        client_secret: OAuth client secret.
        access_token: a bearer token obtained elsewhere (refreshed only with credentials).
        project_id: the Medplum project, kept for callers that need it.
        fhir_url_path: the FHIR base under `base_url`.
        timeout: seconds per request, for the httpx client this client creates.
        http_client: your own httpx.AsyncClient; it must not follow redirects.
        before_request: hook run before every wire attempt (see pymedplum.hooks).
        on_request_complete: hook run once per logical call with a RequestEvent.
        allow_insecure_http: permit plain http to a non-loopback host (logs a WARNING).
        failed_refresh_cooldown: seconds without refresh attempts after one fails.
        default_on_behalf_of: the ProjectMembership every request acts as by default.
        token_cache: where tokens are kept (a `pymedplum.TokenCache`); by default the
            process-wide one, shared by every client with the same base URL and credentials.
            `pymedplum.redis.RedisTokenCache` shares it, and one login at a time, across
            processes.
        rate_limit_budget: a `pymedplum.RateLimitBudget` shared with other clients: once an
            answer says Medplum's quota is spent (`RateLimit: ...;r=0;t=60`, or a 429), every
            client sharing it waits for the reset before sending (at most
            MAX_RETRY_DELAY_SECONDS per attempt). None (the default): each client only waits
            out the 429s it gets. `MemoryRateLimitBudget` shares it within a process,
            `pymedplum.redis.RedisRateLimitBudget` across processes (docs/redis.md).
        max_response_bytes: the largest response body read (64 MiB; None: no cap).
        auto_batch_ms: gather reads issued within this many ms into batches (async client only)
    """

    # ------------------------------------------------------------ create

    @overload
    async def create_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def create_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def create_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Create a resource (a dict or any Pydantic model); return what the server stored.

        `accounts` sets `meta.accounts` (one reference or several). A create is a plain
        POST: it is never replayed after a failure that may have committed it.
        """
        call = self._build_create(resource, headers, accounts)
        return await self._json(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    @overload
    async def create_resource_if_none_exist(
        self,
        resource: Resource,
        if_none_exist: str,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def create_resource_if_none_exist(
        self,
        resource: Resource,
        if_none_exist: str,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def create_resource_if_none_exist(
        self,
        resource: Resource,
        if_none_exist: str,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Create unless a resource matches `if_none_exist`; return the new or existing one.

        `if_none_exist` is a search query (`identifier=http://mrn|123`, a leading `?` is
        dropped; a same-origin URL's query is used, another origin's raises
        UnsafeRedirectError). Several matches raise PreconditionFailedError. Being
        conditional, the request is safe to replay after an ambiguous failure.
        """
        criteria = self._if_none_exist_query(if_none_exist)
        call = self._build_create(resource, headers, accounts, criteria)
        return await self._json(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ read

    @overload
    async def read_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        as_fhir: None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def read_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        as_fhir: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def read_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        as_fhir: type[M] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Read a resource: a dict, or an `as_fhir` model.

        Raises NotFoundError (404), GoneError (410, deleted; a NotFoundError too).
        """
        parts = (_core._check_id(resource_id, "resource_id"),)
        call = self._build_read(resource_type, parts, headers)
        return await self._read(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    @overload
    async def vread_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        version_id: str,
        as_fhir: None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def vread_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        version_id: str,
        as_fhir: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def vread_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        version_id: str,
        as_fhir: type[M] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Read one version of a resource (`meta.versionId`)."""
        parts = (
            _core._check_id(resource_id, "resource_id"),
            "_history",
            _core._check_id(version_id, "version_id"),
        )
        call = self._build_read(resource_type, parts, headers)
        return await self._read(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ update, patch, delete

    @overload
    async def update_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
        if_match: bool | str = True,
    ) -> dict[str, Any]: ...
    @overload
    async def update_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
        if_match: bool | str = True,
    ) -> M: ...
    async def update_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
        if_match: bool | str = True,
    ) -> dict[str, Any] | M:
        """Replace a resource (it needs an id), guarded by If-Match by default.

        `if_match`: True sends `W/"<meta.versionId>"` when the resource has one; "required"
        raises MissingVersionIdError when it has none; False sends no guard; any other
        string is sent as is. An `If-Match` in `headers` wins. A stale version raises
        PreconditionFailedError.
        """
        call = self._build_update(resource, headers, accounts, if_match)
        return await self._json(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    async def update_with_retry(
        self,
        resource_type: ResourceType,
        resource_id: str,
        mutator: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        max_retries: int = 1,
        force: bool = False,
        on_behalf_of: str | None = None,
    ) -> UpdateResult:
        """Read, apply `mutator`, write back guarded by the read's version; retry on 412.

        The mutator gets a copy of the resource (change it in place or return a new one)
        and may run more than once. No write is sent when nothing changed, unless `force`.
        """
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        for attempt in range(max_retries + 1):
            current = await self.read_resource(
                resource_type, resource_id, on_behalf_of=on_behalf_of
            )
            desired = _core.apply_mutator(current, mutator, resource_type, resource_id)
            if desired == current and not force:
                return UpdateResult(False, _core._version_id(current), current)
            try:
                written = await self.update_resource(
                    desired, if_match="required", on_behalf_of=on_behalf_of
                )
            except PreconditionFailedError:
                if attempt == max_retries:
                    raise
                continue
            return UpdateResult(True, _core._version_id(written), written)
        raise AssertionError("unreachable")  # pragma: no cover

    @overload
    async def patch_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
        if_match: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def patch_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
        if_match: str | None = None,
    ) -> M: ...
    async def patch_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
        if_match: str | None = None,
    ) -> dict[str, Any] | M:
        """Apply JSON Patch operations; `if_match` sends an explicit ETag (`W/"3"`)."""
        call = self._build_patch(resource_type, resource_id, operations, headers, if_match)
        return await self._json(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    async def delete_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> None:
        """Delete a resource (a later read raises GoneError)."""
        await self._send(self._build_delete(resource_type, resource_id, headers), on_behalf_of)

    # ------------------------------------------------------------ search

    # The public search_resources, search_one and search_resource_pages, with one overload
    # per resource type, are generated (pymedplum._generated.async_search); these are
    # their implementations.

    async def _search_resources(
        self,
        resource_type: str,
        query: Query | None,
        return_bundle: bool,
        as_fhir: type[M] | None,
        on_behalf_of: str | None,
    ) -> dict[str, Any] | FHIRBundle[Any]:
        bundle = await self._json(self._build_search(resource_type, query), on_behalf_of)
        return FHIRBundle(bundle, as_fhir) if return_bundle else bundle

    async def _search_one(
        self,
        resource_type: str,
        query: Query | None,
        as_fhir: type[M] | None,
        on_behalf_of: str | None,
    ) -> Any:
        call = self._build_search(resource_type, _core.search_one_query(query))
        return await self._json(call, on_behalf_of, as_fhir, select=_core.first_match)

    def _search_resource_pages(
        self,
        resource_type: str,
        query: Query | None,
        as_fhir: type[M] | None,
        on_behalf_of: str | None,
        prefetch: bool,
    ) -> collections.abc.AsyncIterator[Any]:
        call = self._build_search(resource_type, query)
        return self._pages(call, on_behalf_of, as_fhir, prefetch=prefetch)

    @overload
    async def search_with_options(
        self,
        resource_type: ResourceType,
        query: Query | None = None,
        *,
        summary: str | None = None,
        elements: Sequence[str] | None = None,
        total: str | None = None,
        at: str | None = None,
        count: int | None = None,
        offset: int | None = None,
        sort: str | Sequence[str] | None = None,
        include: str | Sequence[str] | None = None,
        include_iterate: str | Sequence[str] | None = None,
        revinclude: str | Sequence[str] | None = None,
        revinclude_iterate: str | Sequence[str] | None = None,
        return_bundle: Literal[False] = False,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def search_with_options(
        self,
        resource_type: ResourceType,
        query: Query | None = None,
        *,
        summary: str | None = None,
        elements: Sequence[str] | None = None,
        total: str | None = None,
        at: str | None = None,
        count: int | None = None,
        offset: int | None = None,
        sort: str | Sequence[str] | None = None,
        include: str | Sequence[str] | None = None,
        include_iterate: str | Sequence[str] | None = None,
        revinclude: str | Sequence[str] | None = None,
        revinclude_iterate: str | Sequence[str] | None = None,
        return_bundle: Literal[True],
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> FHIRBundle[Any]: ...
    async def search_with_options(
        self,
        resource_type: ResourceType,
        query: Query | None = None,
        *,
        summary: str | None = None,
        elements: Sequence[str] | None = None,
        total: str | None = None,
        at: str | None = None,
        count: int | None = None,
        offset: int | None = None,
        sort: str | Sequence[str] | None = None,
        include: str | Sequence[str] | None = None,
        include_iterate: str | Sequence[str] | None = None,
        revinclude: str | Sequence[str] | None = None,
        revinclude_iterate: str | Sequence[str] | None = None,
        return_bundle: bool = False,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | FHIRBundle[Any]:
        """Search with named result controls: `summary="count"`, `include=...`, `sort=[...]`.

        Each maps to its FHIR parameter (`_summary`, `_elements`, `_total`, `_at`,
        `_count`, `_offset`, `_sort`, `_include`, `_include:iterate`, `_revinclude`,
        `_revinclude:iterate`) after the parameters in `query`.
        """
        pairs = _core.search_options(
            query,
            summary=summary,
            elements=elements,
            total=total,
            at=at,
            count=count,
            offset=offset,
            sort=sort,
            include=include,
            include_iterate=include_iterate,
            revinclude=revinclude,
            revinclude_iterate=revinclude_iterate,
        )
        bundle = await self._json(self._build_search(resource_type, pairs), on_behalf_of)
        return FHIRBundle(bundle, as_fhir) if return_bundle else bundle

    searchWithOptions = search_with_options  # noqa: N815 - the TypeScript SDK's name

    # ------------------------------------------------------------ bundles, GraphQL

    async def execute_batch(
        self,
        bundle: Resource,
        *,
        accounts: str | Sequence[str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Send a batch Bundle; return the batch-response (check it with FHIRBundle).

        Each entry succeeds or fails on its own. `accounts` stamps every entry's
        resource's `meta.accounts`. The caller's bundle is never modified.
        """
        call = self._build_bundle(bundle, "batch", accounts)
        return await self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    async def execute_transaction(
        self,
        bundle: Resource,
        *,
        accounts: str | Sequence[str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Send a transaction Bundle (`urn:uuid:` references resolve across entries).

        Medplum can answer 200 with some entries committed and others failed: inspect
        `FHIRBundle(result).raise_for_entry_errors()` rather than assume atomicity.
        """
        call = self._build_bundle(bundle, "transaction", accounts)
        return await self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    async def execute_graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Run a GraphQL query against `$graphql`; return `{"data": ..., "errors": ...}`."""
        call = self._build_graphql(query, variables)
        return await self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ low level

    async def get(
        self,
        path: str,
        *,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """GET a path relative to base_url (`fhir/R4/Patient/123`, `auth/me`): parsed JSON.

        A path under `admin/` (Medplum's admin API) acts as the client: the ambient and
        default on-behalf-of do not apply to it, an explicit `on_behalf_of=` does. The same
        holds for `post`, `put` and `delete`.
        """
        acting = self._raw_on_behalf_of(path, on_behalf_of)
        call = self._build_raw("GET", path, params, headers)
        return await self._json(call, acting, empty=None)

    async def post(
        self,
        path: str,
        json: Any = None,
        *,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """POST JSON (or raw `content`) to a path relative to base_url: parsed JSON or None."""
        call = self._build_raw("POST", path, params, headers, json, content)
        return await self._json(call, self._raw_on_behalf_of(path, on_behalf_of), empty=None)

    async def put(
        self,
        path: str,
        json: Any = None,
        *,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """PUT JSON (or raw `content`) to a path relative to base_url: parsed JSON or None."""
        call = self._build_raw("PUT", path, params, headers, json, content)
        return await self._json(call, self._raw_on_behalf_of(path, on_behalf_of), empty=None)

    async def delete(
        self,
        path: str,
        *,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """DELETE a path relative to base_url: parsed JSON or None."""
        call = self._build_raw("DELETE", path, params, headers)
        return await self._json(call, self._raw_on_behalf_of(path, on_behalf_of), empty=None)

    def _raw_on_behalf_of(self, path: str, on_behalf_of: str | None) -> str | None:
        """The per-call value of a low-level call: admin API paths act as the client."""
        if _obo.is_admin_path(self.base_url, path):
            return _obo.admin_on_behalf_of(on_behalf_of)
        return on_behalf_of
