# Generated from src/pymedplum/_async/_base.py by codegen/unasync.py: run `make generate`.
"""The I/O shell shared by the client and its groups of methods.

Sends requests (attempts, token refresh, hooks, sleeping between retries); every
decision is made in the no-I/O core (pymedplum._core and siblings). Written once as
async code; codegen/unasync.py generates the sync twin in pymedplum/_sync/.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing, contextmanager
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import BaseModel

from pymedplum import (
    _backend,
    _binary,
    _core,
    _hooks,
    _security,
)
from pymedplum._binary import DownloadSink, UploadBody
from pymedplum._core import BaseClient, Call, CallState
from pymedplum._obo import OnBehalfOfContext
from pymedplum.exceptions import NetworkError


def _send_chunks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A streamed request body, as the transport reads it: one chunk at a time."""
    for chunk in chunks:  # noqa: UP028 - the sync twin is a plain generator
        yield chunk


class ClientBase(BaseClient):
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

    def __enter__(self) -> Self:
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
        if not state.call.credentials:
            return None
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

    def _send(
        self,
        call: Call,
        on_behalf_of: str | None,
        *,
        upload: UploadBody | None = None,
        sink: DownloadSink | None = None,
    ) -> httpx.Response:
        """Run one logical call through its attempts; fire on_request_complete once.

        With `upload`, every attempt streams its request body from it; with `sink`, the
        body of the final successful response is streamed into it before the call ends
        (so the audit event covers the download, failures included). Neither body is
        ever held in memory whole.
        """
        try:
            with self._exchange(call, on_behalf_of, upload=upload, stream=sink is not None) as (
                response,
                state,
            ):
                if sink is not None:
                    self._receive(response, sink, state)
                return response
        except BaseException:
            if sink is not None:
                sink.abandon()
            raise

    def _stream(
        self,
        call: Call,
        on_behalf_of: str | None,
        on_start: Callable[[httpx.Headers], None] | None = None,
    ) -> Generator[bytes, None]:
        """The body of `call`'s successful response, chunk by chunk as the caller reads it.

        One logical call like `_send` (same attempts, hooks and errors); its audit event
        fires when the body has been read to its end, or when the caller stops reading.
        `on_start` sees the response headers before the first chunk.
        """
        with self._exchange(call, on_behalf_of, stream=True) as (response, state):
            if on_start is not None:
                try:
                    on_start(response.headers)
                except BaseException:
                    response.close()
                    raise
            with closing(self._body_chunks(response, state)) as chunks:
                for chunk in chunks:  # noqa: UP028 - the sync twin is a plain generator
                    yield chunk

    @contextmanager
    def _exchange(
        self,
        call: Call,
        on_behalf_of: str | None,
        *,
        upload: UploadBody | None = None,
        stream: bool = False,
        state: CallState | None = None,
    ) -> Iterator[tuple[httpx.Response, CallState]]:
        """The attempts of one logical call; yields its final response (body unread when
        `stream`), then fires on_request_complete once, after the caller's block.

        `state`: a call state made by the caller, who keeps it (auto-batching reads the
        batch request's attempts from it)."""
        state = state or self._begin(call, on_behalf_of)
        try:
            while True:
                token = self._bearer(state)
                self._prepare_attempt(state)
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
                    response = self._http.send(
                        request, stream=stream, follow_redirects=False, auth=_core.send_auth(call)
                    )
                    if stream and not 200 <= response.status_code < 300:
                        response.read()  # an error body: small, and parsed for the error
                except httpx.RequestError as exc:
                    delay = state.after_transport_error(exc)
                else:
                    delay = state.after_response(response)
                finally:
                    if upload is not None:
                        upload.close_attempt()
                if delay is None:
                    break
                if delay:
                    _backend.sync_sleep(delay)
            yield state.result(), state
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):  # GeneratorExit: the caller stopped reading
                state.final_exception = exc
            raise
        finally:
            hook = self._on_request_complete
            if hook is not None:
                event = state.event()
                if event is not None:
                    _hooks.run_complete(hook, event)

    def _receive(self, response: httpx.Response, sink: DownloadSink, state: CallState) -> None:
        """Stream a response body into `sink`."""
        try:
            sink.start(response.headers)
            for chunk in self._body_chunks(response, state):
                sink.write(chunk)
            sink.finish()
        finally:
            response.close()

    def _body_chunks(self, response: httpx.Response, state: CallState) -> Generator[bytes, None]:
        """A streamed response body; a connection lost meanwhile is a NetworkError."""
        try:
            for chunk in response.iter_bytes(_binary.CHUNK_SIZE):  # noqa: UP028 - sync twin
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
            response.close()

    def _json(self, call: Call, on_behalf_of: str | None) -> Any:
        return _core.parse_json(self._send(call, on_behalf_of))

    def _read(self, call: Call, on_behalf_of: str | None) -> Any:
        """A read's parsed JSON (on the async client, possibly gathered into a batch)."""
        return self._json(call, on_behalf_of)

    def _pages(
        self,
        call: Call,
        on_behalf_of: str | None,
        as_fhir: type[BaseModel] | None,
        *,
        prefetch: bool,
    ) -> Iterator[Any]:
        """Every resource of a Bundle and of the pages its `next` links lead to (each link
        checked to be on the client's origin). The acting membership is resolved once, at
        the first page, and used for every page.

        With `prefetch`, the next page is fetched while the caller works through this one
        (in a task; in a worker thread on the sync client): one page ahead, never more.
        A caller that stops early (break, close(), an exception, garbage collection)
        cancels that fetch; its error, if any, is raised only when the caller asks for
        the page.
        """
        acting = self._obo.resolve(on_behalf_of) or ""
        bundle = self._json(call, acting)
        while bundle is not None:
            ahead = _backend.SyncPrefetch(self._page_after, bundle, acting) if prefetch else None
            try:
                for resource in _core.page_resources(bundle, as_fhir):  # noqa: UP028 - async twin
                    yield resource
            except BaseException:  # GeneratorExit included: the caller stopped reading
                if ahead is not None:
                    ahead.cancel()
                raise
            bundle = ahead.result() if ahead is not None else self._page_after(bundle, acting)

    def _page_after(self, bundle: Any, acting: str) -> Any:
        """The page a Bundle's `next` link leads to, or None after the last page."""
        page = self._build_next_page(bundle)
        return None if page is None else self._json(page, acting)
