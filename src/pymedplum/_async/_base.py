"""The I/O shell shared by the client and its groups of methods.

Sends requests (attempts, token refresh, hooks, sleeping between retries); every
decision is made in the no-I/O core (pymedplum._core and siblings). Written once as
async code; codegen/unasync.py generates the sync twin in pymedplum/_sync/.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, overload

import httpx
from pydantic import BaseModel

from pymedplum import (
    _autobatch,  # async-only
    _backend,
    _binary,
    _budget,
    _core,
    _hooks,
    _security,
)
from pymedplum._binary import DownloadSink, UploadBody
from pymedplum._budget import RateLimitBudget
from pymedplum._core import BaseClient, Call, CallState
from pymedplum._obo import OnBehalfOfContext
from pymedplum._security import PrivateKey, RedactedStr
from pymedplum._token_cache import Flight, TokenCache
from pymedplum.exceptions import NetworkError

R = TypeVar("R")


async def _send_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A streamed request body, as the transport reads it: one chunk at a time."""
    for chunk in chunks:  # noqa: UP028 - the sync twin is a plain generator
        yield chunk


class AsyncClientBase(_backend.AsyncCloseName, BaseClient):
    """Transport, authentication and hooks; the methods live in subclasses and mixins."""

    def __init__(
        self,
        base_url: str = "https://api.medplum.com/",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        access_token: str | None = None,
        project_id: str | None = None,
        fhir_url_path: str = "fhir/R4/",
        timeout: float | None = 30.0,
        http_client: httpx.AsyncClient | None = None,
        before_request: Callable[..., Any] | None = None,
        on_request_complete: Callable[..., Any] | None = None,
        allow_insecure_http: bool = False,
        failed_refresh_cooldown: float = 1.0,
        default_on_behalf_of: str | None = None,
        token_cache: TokenCache | None = None,
        max_response_bytes: int | None = _core.DEFAULT_MAX_RESPONSE_BYTES,
        private_key: str | bytes | PrivateKey | None = None,
        key_id: str | None = None,
        algorithm: str | None = None,
        subject_token: str | None = None,
        rate_limit_budget: RateLimitBudget | None = None,
        auto_batch_ms: float | None = None,  # async-only
    ) -> None:
        # Redacted first thing, so that no traceback through this frame shows them.
        client_secret = RedactedStr.wrap(client_secret)
        access_token = RedactedStr.wrap(access_token)
        private_key = _security.redact_key(private_key)
        subject_token = RedactedStr.wrap(subject_token)
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
            async_hooks=_hooks.ASYNC_HOOKS_ALLOWED,
            token_cache=token_cache,
            rate_limit_budget=rate_limit_budget,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
            private_key=private_key,
            key_id=key_id,
            algorithm=algorithm,
            subject_token=subject_token,
        )
        if http_client is not None:
            _security.check_http_client(http_client, httpx.AsyncClient)
        self._owns_http = http_client is None
        self._http: httpx.AsyncClient = http_client or _backend.new_async_http_client(
            {"verify": _security.default_ssl_context(), **self._default_http_options(timeout)}
        )
        self._batcher: _autobatch.ReadBatcher | None = None  # async-only
        if auto_batch_ms:  # async-only
            self._batcher = _autobatch.ReadBatcher(self, auto_batch_ms)

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (not a caller-supplied http_client)."""
        if self._batcher is not None:  # async-only
            await self._batcher.drain()  # the reads gathered so far go out first
        if self._owns_http:
            await self._http.aclose()

    def on_behalf_of(
        self, membership: str | Mapping[str, Any] | BaseModel | None
    ) -> OnBehalfOfContext:
        """Act as `membership` for every request in the block.

        Example:
            async with client.on_behalf_of("ProjectMembership/abc"):
                patient = await client.read_resource("Patient", "123")

        `membership` is a ProjectMembership id (sent as `ProjectMembership/<id>`),
        `"ProjectMembership/<id>"`, a ProjectMembership resource, or the membership's profile
        (`"Practitioner/<id>"`, ...). None acts as the client itself inside the block. An
        empty or malformed value raises ValueError at once. A per-call `on_behalf_of=` still
        wins; admin calls ignore the block (see docs/on_behalf_of.md).
        """
        return self._obo.scope(membership)

    # ------------------------------------------------------------ credentials

    @property
    def fhir_url_path(self) -> str:
        """The FHIR base path under `base_url` (`fhir/R4/`)."""
        return self.fhir_base_url[len(self.base_url) :]

    @property
    def client_id(self) -> str | None:
        """The OAuth client id (read-only)."""
        return self._token.client_id

    @property
    def client_secret(self) -> str | None:
        """The OAuth client secret (read-only; never in a repr, a log or an exception)."""
        return self._token.client_secret

    @property
    def access_token(self) -> str | None:
        """The bearer token the next request sends, or None before the first login.

        Reading it never logs in or refreshes. Clients logging in with the same base URL
        and credentials share it (see docs/reliability.md).
        """
        return self._token.access_token

    @property
    def token_expires_at(self) -> datetime | None:
        """When the current token expires (UTC): from the login's `expires_in`, or the
        `expires_at` given to `set_access_token`. None when unknown: a token passed as
        `access_token=` (or to `set_access_token` without an expiry) is used until the
        server answers 401, and then refreshed if the client has credentials."""
        return self._token.expires_at

    def set_access_token(self, token: str, expires_at: datetime | None = None) -> None:
        """Send `token` from now on (a token obtained elsewhere), for this client only.

        Example:
            client.set_access_token(token, expires_at=datetime.now(timezone.utc) + ttl)

        `expires_at` (timezone-aware) lets a client with credentials refresh shortly before
        it; without it the token is used until the server refuses it.
        """
        self._token.set_access_token(token, expires_at, self._clock())

    # ------------------------------------------------------------ the wire

    async def _bearer(self, state: CallState) -> str | None:
        """The token for the next attempt: cached, or from the one refresh in flight.

        Every client logging in with the same credentials shares the cache and the flight
        (pymedplum._token_cache): one caller leads the refresh, the others wait for it.
        A credential-less call (a presigned URL) gets none.
        """
        if not state.call.credentials:
            return None
        tokens = self._token
        force = state.force_refresh
        while True:
            if not force:
                state.ticket = tokens.generation
                token = tokens.fresh(self._clock())
                if token is not None or not tokens.can_refresh:
                    return token
            step = tokens.join(state.ticket, force, self._clock(), _backend.ASYNC_WAIT_BLOCKS)
            if step.flight is None:
                token = step.token
            elif step.lead:
                token = await self._refresh(step.flight)
            else:
                token = await _backend.async_wait(step.flight)
            if token is not None:  # else the leader gave up (cancelled): try again
                state.force_refresh = False
                state.ticket = tokens.generation
                return token

    async def _refresh(self, flight: Flight) -> str:
        """Lead one client-credentials login for every client sharing these credentials.

        With a token cache shared across processes (pymedplum.redis), the store is asked
        first: for a token another process logged in for, else for its lock, so that one
        process at a time logs in. A 429 from the token endpoint (Medplum: `RateLimit:
        "requests";r=0;t=55`, no Retry-After) is waited out as a FHIR 429 is, within the same
        limits (holding the lock); every waiter keeps waiting meanwhile instead of calling
        the endpoint itself.
        """
        tokens = self._token
        shared = tokens.shared
        lease = None
        try:
            if shared is not None and tokens.key is not None:
                found, lease = await shared.acquire_async(tokens.key, flight.refused)
                if found is not None:
                    return tokens.adopt(flight, found)
            url, headers, body = tokens.token_request()
            retries = 0
            while True:
                await self._wait_for_budget(self._auth_scope, None)
                failure = None
                try:
                    # Never followed, whatever the httpx client says: a 307/308 would post
                    # the form (the secret, the assertion) to wherever it points.
                    response = await self._http.post(
                        url, headers=headers, content=body, follow_redirects=False
                    )
                except httpx.RequestError as exc:
                    failure = self._token_transport_error(exc)
                if failure is not None:
                    raise failure
                await self._note_budget(
                    self._auth_scope, response, response.headers.get("ratelimit")
                )
                delay = tokens.retry_delay(response.status_code, response.headers, retries)
                if delay is None:
                    break
                retries += 1
                if shared is not None and lease is not None:
                    await shared.extend_async(lease, delay)
                await _backend.async_sleep(delay)
            token = tokens.finish(
                flight, response.status_code, response.headers, response.content, self._clock()
            )
            cached = tokens.cached()
            if shared is not None and lease is not None and cached is not None:
                await shared.publish_async(lease, cached, self._clock())
                lease = None
            return token
        except BaseException as exc:
            tokens.fail(flight, exc, self._clock())  # the waiters get it (or try again)
            raise
        finally:
            if shared is not None and lease is not None:
                await shared.release_async(lease)

    async def _wait_for_budget(self, scope: str, state: CallState | None) -> None:
        """Wait while the rate-limit budget says the quota of `scope` is spent (at most
        MAX_RETRY_DELAY_SECONDS); the wait goes into the next attempt's audit record."""
        budget = self._budget
        if budget is None:
            return
        now = self._clock()
        pause = _budget.pause_seconds(await budget.spent_until_async(scope, now), now)
        if pause > 0:
            if state is not None:
                state.rate_limit_wait = pause
            await _backend.async_sleep(pause)

    async def _note_budget(
        self, scope: str, response: httpx.Response, ratelimit: str | None
    ) -> None:
        """Tell the rate-limit budget when an answer (its `RateLimit` header: `ratelimit`)
        says the quota of `scope` is spent."""
        budget = self._budget
        if budget is None:
            return
        now = self._clock()
        status, headers = response.status_code, response.headers
        until = _budget.spent_after(status, ratelimit, headers, now, budget.reserve)
        if until is not None:
            await budget.record_spent_async(scope, until, now)

    async def _prepare_attempt(self, state: CallState) -> None:
        hook = self._before_request
        if hook is not None:
            original = self._prepared(state.call)
            returned = await _hooks.run_before_request_async(hook, original)
            state.attempt_call = self._apply_hook_result(state.call, original, returned)

    @overload
    async def _send(
        self,
        call: Call,
        on_behalf_of: str | None,
        *,
        upload: UploadBody | None = None,
        sink: DownloadSink | None = None,
        decode: None = None,
    ) -> httpx.Response: ...
    @overload
    async def _send(
        self,
        call: Call,
        on_behalf_of: str | None,
        *,
        upload: UploadBody | None = None,
        sink: DownloadSink | None = None,
        decode: Callable[[httpx.Response], R],
    ) -> R: ...
    async def _send(
        self,
        call: Call,
        on_behalf_of: str | None,
        *,
        upload: UploadBody | None = None,
        sink: DownloadSink | None = None,
        decode: Callable[[httpx.Response], Any] | None = None,
    ) -> Any:
        """Run one logical call through its attempts; fire on_request_complete once.

        Each attempt, body included, is bounded by the client's `timeout`, and a body
        larger than `max_response_bytes` is refused. With `decode`, the call's result is
        `decode(response)`, run inside the call so that a body it cannot use fails the
        call and its audit event (InvalidResponseError).

        With `upload`, every attempt streams its request body from it; with `sink`, the
        body of the final successful response is streamed into it before the call ends
        (so the audit event covers the download, failures included). Neither body is
        ever held in memory whole, and both are bounded per network read, not in all.
        """
        try:
            async with self._exchange(
                call, on_behalf_of, upload=upload, stream=sink is not None
            ) as (response, state):
                if sink is not None:
                    await self._receive(response, sink, state)
                return response if decode is None else state.decode(response, decode)
        except BaseException:
            if sink is not None:
                sink.abandon()
            raise

    async def _stream(
        self,
        call: Call,
        on_behalf_of: str | None,
        on_start: Callable[[httpx.Headers], None] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The body of `call`'s successful response, chunk by chunk as the caller reads it.

        One logical call like `_send` (same attempts, hooks and errors); its audit event
        fires when the body has been read to its end, or when the caller stops reading.
        `on_start` sees the response headers before the first chunk.
        """
        async with self._exchange(call, on_behalf_of, stream=True) as (response, state):
            if on_start is not None:
                try:
                    on_start(response.headers)
                except BaseException:
                    await response.aclose()
                    raise
            async with aclosing(self._body_chunks(response, state)) as chunks:
                async for chunk in chunks:  # noqa: UP028 - the sync twin is a plain generator
                    yield chunk

    @asynccontextmanager
    async def _exchange(
        self,
        call: Call,
        on_behalf_of: str | None,
        *,
        upload: UploadBody | None = None,
        stream: bool = False,
        state: CallState | None = None,
    ) -> AsyncIterator[tuple[httpx.Response, CallState]]:
        """The attempts of one logical call; yields its final response (body unread when
        `stream`), then fires on_request_complete once, after the caller's block.

        `state`: a call state made by the caller, who keeps it (auto-batching reads the
        batch request's attempts from it)."""
        state = state or self._begin(call, on_behalf_of)
        streamed = upload is not None or stream
        try:
            while True:
                if self._budget is not None:
                    await self._wait_for_budget(self._fhir_scope, state)
                with state.traced():
                    token = await self._bearer(state)
                await self._prepare_attempt(state)
                request = state.request(self._http, token)
                if upload is not None:
                    request = httpx.Request(
                        request.method,
                        request.url,
                        headers=_binary.stream_headers(request.headers, upload.size),
                        content=_send_chunks(upload.open_attempt()),
                        extensions=request.extensions,
                    )
                try:
                    async with _backend.AsyncDeadline(state.attempt_timeout(streamed)):
                        with state.traced():
                            response = await self._http.send(
                                request,
                                stream=True,
                                follow_redirects=False,
                                auth=_core.send_auth(call),
                            )
                        if not stream or not 200 <= response.status_code < 300:
                            await self._read_body(response, state)
                except httpx.RequestError as exc:
                    delay = state.after_transport_error(exc)
                else:
                    delay = state.after_response(response)
                    if self._budget is not None:
                        await self._note_budget(self._fhir_scope, response, state.rate_limit_header)
                finally:
                    if upload is not None:
                        upload.close_attempt()
                if delay is None:
                    break
                if delay:
                    await _backend.async_sleep(delay)
            yield state.result(), state
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):  # GeneratorExit: the caller stopped reading
                state.final_exception = exc
            raise
        finally:
            event = state.event()
            if event is not None:
                state.finish(event)
                hook = self._on_request_complete
                if hook is not None:
                    await _hooks.run_complete_async(hook, event)

    async def _read_body(self, response: httpx.Response, state: CallState) -> None:
        """Read a response body (into `response.content`), chunk by chunk, so that one
        larger than `max_response_bytes` is refused before it is all in memory."""
        chunks: list[bytes] = []
        try:
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                state.received(response, len(chunk))
        finally:
            await response.aclose()
        response._content = b"".join(chunks)

    async def _receive(
        self, response: httpx.Response, sink: DownloadSink, state: CallState
    ) -> None:
        """Stream a response body into `sink`."""
        try:
            sink.start(response.headers)
            async for chunk in self._body_chunks(response, state):
                sink.write(chunk)
            sink.finish()
        finally:
            await response.aclose()

    async def _body_chunks(
        self, response: httpx.Response, state: CallState
    ) -> AsyncGenerator[bytes, None]:
        """A streamed response body; a connection lost meanwhile is a NetworkError."""
        try:
            async for chunk in response.aiter_bytes(_binary.CHUNK_SIZE):  # noqa: UP028 - sync twin
                yield chunk
        except httpx.RequestError as exc:
            template = state.route.template
            raise NetworkError(
                f"{type(exc).__name__} while reading the response body | "
                f"{state.call.method} {template}",
                possibly_committed=state.call.method != "GET",
                method=state.call.method,
                path_template=template,
            ) from None
        finally:
            await response.aclose()

    async def _json(
        self,
        call: Call,
        on_behalf_of: str | None,
        as_fhir: type[BaseModel] | None = None,
        *,
        empty: Any = _core.REFUSE_EMPTY,
        select: Callable[[Any], Any] | None = None,
    ) -> Any:
        """The call's JSON answer, or with `as_fhir` that model (see JsonReader). An empty
        body is an error unless `empty` says what it stands for."""
        if as_fhir is None and empty is _core.REFUSE_EMPTY and select is None:
            reader = _core.JSON
        else:
            reader = _core.JsonReader(as_fhir, empty, select)
        return await self._send(call, on_behalf_of, decode=reader)

    async def _read(
        self, call: Call, on_behalf_of: str | None, as_fhir: type[BaseModel] | None
    ) -> Any:
        """A read's parsed JSON, or its `as_fhir` model (on the async client, possibly
        gathered into a batch)."""
        if self._batcher is not None:  # async-only
            return _core.as_result(await self._batcher.read(call, on_behalf_of), as_fhir)
        return await self._json(call, on_behalf_of, as_fhir)

    async def _pages(
        self,
        call: Call,
        on_behalf_of: str | None,
        as_fhir: type[BaseModel] | None,
        *,
        prefetch: bool,
    ) -> AsyncIterator[Any]:
        """Every resource of a Bundle and of the pages its `next` links lead to (each link
        checked to be on the client's origin, and not to lead back to a page already
        read). The acting membership is resolved once, at the first page, and used for
        every page.

        With `prefetch`, the next page is fetched while the caller works through this one
        (in a task; in a worker thread on the sync client): one page ahead, never more.
        A caller that stops early (break, close(), an exception, garbage collection)
        cancels that fetch; its error, if any, is raised only when the caller asks for
        the page.
        """
        first, acting = self._acting(call, on_behalf_of)
        acting = acting or ""
        read: set[str] = set()
        reader = _core.PageReader(as_fhir)
        read.add(first.url)
        page: tuple[Any, list[Any]] | None = await self._send(first, acting, decode=reader)
        while page is not None:
            bundle, resources = page
            ahead = (
                _backend.AsyncPrefetch(self._page_after, bundle, acting, read, reader)
                if prefetch
                else None
            )
            try:
                for resource in resources:  # noqa: UP028 - the sync twin is a plain generator
                    yield resource
            except BaseException:  # GeneratorExit included: the caller stopped reading
                if ahead is not None:
                    await ahead.cancel()
                raise
            page = await (
                ahead.result()
                if ahead is not None
                else self._page_after(bundle, acting, read, reader)
            )

    async def _page_after(
        self, bundle: Any, acting: str, read: set[str], reader: _core.PageReader
    ) -> tuple[Any, list[Any]] | None:
        """The page a Bundle's `next` link leads to, as (bundle, its resources), or None
        after the last page."""
        page = self._build_next_page(bundle, read)
        if page is None:
            return None
        read.add(page.url)
        return await self._send(page, acting, decode=reader)
