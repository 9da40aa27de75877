# Generated from src/pymedplum/_async/client.py by codegen/unasync.py: run `make generate`.
"""MedplumClient: the I/O shell around the shared core.

Written once as async code in pymedplum/_async/client.py; codegen/unasync.py generates
the sync client in pymedplum/_sync/ from it (`make generate`). Every decision (URLs,
OBO, retries, token bookkeeping, errors, hooks, events) lives in pymedplum._core and
its siblings; this module only sends requests, sleeps and holds the refresh lock.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel

from pymedplum import _backend, _core, _hooks, _security
from pymedplum._core import BaseClient, Call, CallState, Query, Resource, UpdateResult
from pymedplum._generated.sync_search import TypedSearch
from pymedplum._obo import OnBehalfOfContext
from pymedplum.bundle import FHIRBundle
from pymedplum.exceptions import PreconditionFailedError

if TYPE_CHECKING:
    from pymedplum._generated.search_params import ResourceType

__all__ = ["MedplumClient"]

M = TypeVar("M", bound=BaseModel)


class MedplumClient(TypedSearch, BaseClient):
    """A Medplum FHIR R4 client.

    Example:
        with MedplumClient(
            base_url="https://api.medplum.com/",
            client_id="YOUR_CLIENT_ID",
            client_secret="YOUR_CLIENT_SECRET",
        ) as client:
            patient = client.read_resource("Patient", "123")

    Authentication is lazy: the first request logs in with the client credentials
    (`POST {base_url}/oauth2/token`); the token is refreshed shortly before it expires,
    and once more when the server answers 401 (the request is then replayed once).
    Concurrent callers share one refresh. After a failed refresh, calls needing a token
    raise TokenRefreshCooldownError for `failed_refresh_cooldown` seconds.

    Args:
        base_url: the Medplum server. https, unless loopback or `allow_insecure_http`.
        client_id: OAuth client id (with `client_secret`) for the client-credentials flow.
        client_secret: OAuth client secret.
        access_token: a bearer token obtained elsewhere (refreshed only with credentials).
        project_id: the Medplum project, kept for callers that need it.
        fhir_url_path: the FHIR base under `base_url`.
        timeout: seconds per request, for the httpx client this client creates.
        http_client: your own httpx.Client; it must not follow redirects.
        before_request: hook run before every wire attempt (see pymedplum.hooks).
        on_request_complete: hook run once per logical call with a RequestEvent.
        allow_insecure_http: permit plain http to a non-loopback host (logs a WARNING).
        failed_refresh_cooldown: seconds without refresh attempts after one fails.
        default_on_behalf_of: the ProjectMembership every request acts as by default.
    """

    def __init__(
        self,
        base_url: str = "https://api.medplum.com/",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        access_token: str | None = None,
        project_id: str | None = None,
        fhir_url_path: str = "fhir/R4/",
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        before_request: Callable[..., Any] | None = None,
        on_request_complete: Callable[..., Any] | None = None,
        allow_insecure_http: bool = False,
        failed_refresh_cooldown: float = 1.0,
        default_on_behalf_of: str | None = None,
    ) -> None:
        self._configure(
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            access_token=access_token,
            project_id=project_id,
            fhir_url_path=fhir_url_path,
            before_request=before_request,
            on_request_complete=on_request_complete,
            allow_insecure_http=allow_insecure_http,
            failed_refresh_cooldown=failed_refresh_cooldown,
            default_on_behalf_of=default_on_behalf_of,
            async_hooks=_hooks.SYNC_HOOKS_ONLY,
        )
        if http_client is not None:
            _security.check_http_client(http_client, httpx.Client)
        self._owns_http = http_client is None
        self._http: httpx.Client = http_client or httpx.Client(
            **self._default_http_options(timeout)
        )
        self._refresh_lock = _backend.SyncLock()

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> MedplumClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (not a caller-supplied http_client)."""
        if self._owns_http:
            self._http.close()

    def on_behalf_of(self, membership: str | Mapping[str, Any] | BaseModel) -> OnBehalfOfContext:
        """Act as `membership` (a `ProjectMembership/<id>`) for every request in the block.

        Example:
            with client.on_behalf_of("ProjectMembership/abc"):
                patient = client.read_resource("Patient", "123")

        A per-call `on_behalf_of=` still wins; `""` clears the ambient value in the block.
        """
        return self._obo.scope(membership)

    # ------------------------------------------------------------ the wire

    def _bearer(self, state: CallState) -> str | None:
        """The token for the next attempt: cached, or from one shared refresh."""
        tokens = self._token
        if not state.force_refresh:
            token = tokens.fresh(self._clock())
            if token is not None or not tokens.can_refresh:
                state.ticket = tokens.ticket
                return token
            state.ticket = tokens.ticket
        with self._refresh_lock:
            token = tokens.settle(state.ticket, state.force_refresh, self._clock())
            if token is None and tokens.can_refresh:
                token = self._refresh()
            state.force_refresh = False
            state.ticket = tokens.ticket
        return token

    def _refresh(self) -> str:
        """One client-credentials login; called under the refresh lock."""
        url, headers, body = self._token.token_request()
        failure = None
        try:
            response = self._http.post(url, headers=headers, content=body)
        except httpx.RequestError as exc:
            failure = self._token_transport_error(exc)
        if failure is not None:
            raise failure
        return self._token.accept(
            response.status_code, response.headers, response.content, self._clock()
        )

    def _prepare_attempt(self, state: CallState) -> None:
        hook = self._before_request
        if hook is not None:
            original = self._prepared(state.call)
            returned = _hooks.run_before_request(hook, original)
            state.attempt_call = self._apply_hook_result(state.call, original, returned)

    def _send(self, call: Call, on_behalf_of: str | None) -> httpx.Response:
        """Run one logical call through its attempts; fire on_request_complete once."""
        state = self._begin(call, on_behalf_of)
        try:
            while True:
                token = self._bearer(state)
                self._prepare_attempt(state)
                request = state.request(self._http, token)
                try:
                    response = self._http.send(request, follow_redirects=False)
                except httpx.RequestError as exc:
                    delay = state.after_transport_error(exc)
                else:
                    delay = state.after_response(response)
                if delay is None:
                    return state.result()
                if delay:
                    _backend.sync_sleep(delay)
        except BaseException as exc:
            state.final_exception = exc
            raise
        finally:
            hook = self._on_request_complete
            if hook is not None:
                event = state.event()
                if event is not None:
                    _hooks.run_complete(hook, event)

    def _json(self, call: Call, on_behalf_of: str | None) -> Any:
        return _core.parse_json(self._send(call, on_behalf_of))

    # ------------------------------------------------------------ create

    @overload
    def create_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    def create_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    def create_resource(
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
        return _core.as_result(self._json(call, on_behalf_of), as_fhir)  # type: ignore[no-any-return]

    @overload
    def create_resource_if_none_exist(
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
    def create_resource_if_none_exist(
        self,
        resource: Resource,
        if_none_exist: str,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    def create_resource_if_none_exist(
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
        return _core.as_result(self._json(call, on_behalf_of), as_fhir)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ read

    @overload
    def read_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        as_fhir: None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    def read_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        as_fhir: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> M: ...
    def read_resource(
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
        return _core.as_result(self._json(call, on_behalf_of), as_fhir)  # type: ignore[no-any-return]

    @overload
    def vread_resource(
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
    def vread_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        version_id: str,
        as_fhir: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> M: ...
    def vread_resource(
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
        return _core.as_result(self._json(call, on_behalf_of), as_fhir)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ update, patch, delete

    @overload
    def update_resource(
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
    def update_resource(
        self,
        resource: Resource,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
        if_match: bool | str = True,
    ) -> M: ...
    def update_resource(
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
        return _core.as_result(self._json(call, on_behalf_of), as_fhir)  # type: ignore[no-any-return]

    def update_with_retry(
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
            current = self.read_resource(resource_type, resource_id, on_behalf_of=on_behalf_of)
            desired = _core.apply_mutator(current, mutator, resource_type, resource_id)
            if desired == current and not force:
                return UpdateResult(False, _core._version_id(current), current)
            try:
                written = self.update_resource(
                    desired, if_match="required", on_behalf_of=on_behalf_of
                )
            except PreconditionFailedError:
                if attempt == max_retries:
                    raise
                continue
            return UpdateResult(True, _core._version_id(written), written)
        raise AssertionError("unreachable")  # pragma: no cover

    @overload
    def patch_resource(
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
    def patch_resource(
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
    def patch_resource(
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
        return _core.as_result(self._json(call, on_behalf_of), as_fhir)  # type: ignore[no-any-return]

    def delete_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> None:
        """Delete a resource (a later read raises GoneError)."""
        self._send(self._build_delete(resource_type, resource_id, headers), on_behalf_of)

    # ------------------------------------------------------------ search

    # The public search_resources, search_one and search_resource_pages, with one overload
    # per resource type, are generated (pymedplum._generated.async_search); these are
    # their implementations.

    def _search_resources(
        self,
        resource_type: str,
        query: Query | None,
        return_bundle: bool,
        as_fhir: type[M] | None,
        on_behalf_of: str | None,
    ) -> dict[str, Any] | FHIRBundle[Any]:
        bundle = self._json(self._build_search(resource_type, query), on_behalf_of)
        return FHIRBundle(bundle, as_fhir) if return_bundle else bundle

    def _search_one(
        self,
        resource_type: str,
        query: Query | None,
        as_fhir: type[M] | None,
        on_behalf_of: str | None,
    ) -> Any:
        call = self._build_search(resource_type, _core.search_one_query(query))
        bundle = self._json(call, on_behalf_of)
        return _core.as_result(_core.first_match(bundle), as_fhir)

    def _search_resource_pages(
        self,
        resource_type: str,
        query: Query | None,
        as_fhir: type[M] | None,
        on_behalf_of: str | None,
    ) -> collections.abc.Iterator[Any]:
        # The acting membership is resolved once, at the first page, for every page.
        acting = self._obo.resolve(on_behalf_of) or ""
        call: Call | None = self._build_search(resource_type, query)
        while call is not None:
            bundle = self._json(call, acting)
            for resource in _core.page_resources(bundle, as_fhir):  # noqa: UP028 - async twin
                yield resource
            call = self._build_next_page(bundle)

    @overload
    def search_with_options(
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
    def search_with_options(
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
    def search_with_options(
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
        bundle = self._json(self._build_search(resource_type, pairs), on_behalf_of)
        return FHIRBundle(bundle, as_fhir) if return_bundle else bundle

    searchWithOptions = search_with_options  # noqa: N815 - the TypeScript SDK's name

    # ------------------------------------------------------------ bundles, GraphQL

    def execute_batch(
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
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    def execute_transaction(
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
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    def execute_graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Run a GraphQL query against `$graphql`; return `{"data": ..., "errors": ...}`."""
        call = self._build_graphql(query, variables)
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ low level

    def get(
        self,
        path: str,
        *,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """GET a path relative to base_url (`fhir/R4/Patient/123`, `auth/me`): parsed JSON."""
        return self._json(self._build_raw("GET", path, params, headers), on_behalf_of)

    def post(
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
        return self._json(call, on_behalf_of)

    def put(
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
        return self._json(call, on_behalf_of)

    def delete(
        self,
        path: str,
        *,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """DELETE a path relative to base_url: parsed JSON or None."""
        return self._json(self._build_raw("DELETE", path, params, headers), on_behalf_of)
