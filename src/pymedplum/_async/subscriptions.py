"""Subscriptions: live changes over Medplum's WebSocket protocol, caught up after a reconnect.

Written once as async code; codegen/unasync.py generates the sync twin in pymedplum/_sync/.
The protocol and the exactly-once bookkeeping are in pymedplum._subscriptions (no I/O);
this module sends the REST calls and moves socket messages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

from pydantic import BaseModel

from pymedplum import _backend, _core, _subscriptions
from pymedplum._async._base import AsyncClientBase
from pymedplum._subscriptions import Binding, Ledger, Liveness, Message, TokenSchedule
from pymedplum._websocket import AsyncWebSocketConnection, WebSocketClosed, require_websockets
from pymedplum.exceptions import (
    MedplumError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TokenRefreshCooldownError,
)
from pymedplum.subscriptions import SubscriptionError, SubscriptionEvent

logger = logging.getLogger("pymedplum")

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

# Failures after which the stream connects again (after a backoff) instead of raising.
_TRANSIENT = (WebSocketClosed, NetworkError, ServerError, RateLimitError, TokenRefreshCooldownError)
# A receive timeout never shorter than this: a due ping must not starve buffered messages.
_MIN_WAIT_SECONDS = 0.05


class AsyncSubscriptionStream(Generic[R]):
    """Changes to the resources matching `criteria`, as `SubscriptionEvent`s, until closed.

    Made by `client.subscribe(...)`; nothing is sent until it is entered or iterated.
    Entering creates a Subscription (channel `websocket`), fetches a binding token and binds
    a socket; iterating waits for notifications, pings the server when the socket is quiet,
    renews the binding token before it expires, and after a lost socket connects again
    (with backoff) and searches for what changed meanwhile. All of that happens while you
    iterate: between two events nothing runs, and a long pause is made up on the next
    iteration. Closing deletes the Subscriptions it created and closes the socket; closing
    from another task (or thread, for the sync stream) ends an iteration waiting for events.

    Example:
        async with client.subscribe("Observation?subject=Patient/123") as events:
            async for event in events:
                print(event.resource_id, event.version_id)
    """

    def __init__(
        self,
        client: AsyncClientBase,
        criteria: str,
        *,
        as_fhir: type[BaseModel] | None,
        on_behalf_of: str | None,
        ping_interval: float,
        catch_up_margin: float,
        since: str | None,
        max_reconnect_delay: float,
    ) -> None:
        if ping_interval <= 0:
            raise ValueError("ping_interval must be > 0")
        if catch_up_margin < 0:
            raise ValueError("catch_up_margin must be >= 0")
        if since is not None and _subscriptions.parse_instant(since) is None:
            raise ValueError("since must be a FHIR instant such as '2026-01-31T09:30:00Z'")
        require_websockets()
        self._client = client
        self._criteria = _subscriptions.parse_criteria(criteria)
        self._as_fhir = as_fhir
        # Resolved here, so the stream acts as whoever subscribe() was called as.
        self._acting = client._obo.resolve(on_behalf_of) or ""
        self._ping_interval = ping_interval
        self._max_reconnect_delay = max_reconnect_delay
        self._ledger = Ledger(catch_up_margin)
        self._catch_up_from = since
        self._socket: AsyncWebSocketConnection | None = None
        self._subscription_id: str | None = None
        self._stale: list[str] = []  # Subscriptions of lost sockets, deleted once reconnected
        self._liveness = Liveness(ping_interval, 0.0)
        self._token = TokenSchedule(None, None, 0.0)
        self._renewal: Binding | None = None  # a new token sent, its handshake not yet back
        self._renewal_late = False
        self._drop_requested = False
        self._started = False
        self._closed = False
        #: How many times the stream connected again after losing its socket.
        self.reconnects = 0

    @property
    def criteria(self) -> str:
        """The search criteria this stream follows."""
        return self._criteria.text

    @property
    def subscription_id(self) -> str | None:
        """The id of the Subscription the socket is bound to now (None while disconnected)."""
        return self._subscription_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._criteria.resource_type} subscription>"

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[SubscriptionEvent[R]]:
        return self._events()

    async def aclose(self) -> None:
        """Delete the Subscriptions this stream created, then close its socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        socket, self._socket = self._socket, None
        created = [*self._stale, *([self._subscription_id] if self._subscription_id else [])]
        self._stale, self._subscription_id = [], None
        try:
            for subscription_id in created:
                await self._delete(subscription_id)
        finally:
            if socket is not None:
                await socket.aclose()

    async def _start(self) -> None:
        if self._closed:
            raise RuntimeError("this subscription stream is closed; call subscribe() again")
        if not self._started:
            self._started = True
            await self._connect_until_bound(first=True)

    # ------------------------------------------------------------ the event loop

    async def _events(self) -> AsyncIterator[SubscriptionEvent[R]]:
        try:
            await self._start()
            while not self._closed:
                if self._socket is None:
                    await self._connect_until_bound(first=False)
                    await self._delete_stale()
                    continue
                if self._catch_up_from is not None:
                    async for caught_up in self._catch_up():  # noqa: UP028 - the sync twin
                        yield caught_up
                    continue
                event = await self._next_from_socket()
                if event is not None:
                    yield event
        finally:
            await self.aclose()

    async def _next_from_socket(self) -> SubscriptionEvent[R] | None:
        """Wait for one socket message and handle it; an event when it brought one."""
        socket = self._socket
        assert socket is not None
        clock = self._client._clock
        if self._token.due(clock()):
            await self._renew_token(socket)
            return None
        wait = min(self._liveness.wait(clock()), self._token.renew_at - clock())
        try:
            data = await socket.receive(max(wait, _MIN_WAIT_SECONDS))
            if data is None:
                action = self._liveness.on_quiet(clock())
                if action == "ping":
                    await socket.send(_subscriptions.PING_MESSAGE)
                elif action == "dead":
                    logger.info("pymedplum: subscription socket stopped answering; reconnecting")
                    await self._drop()
                return None
        except WebSocketClosed:
            logger.info("pymedplum: subscription socket lost; reconnecting")
            await self._drop()
            return None
        event = self._handle(_subscriptions.parse_message(data))
        if self._drop_requested:
            logger.info("pymedplum: renewed subscription token refused; reconnecting")
            await self._drop()
        return event

    def _handle(self, message: Message) -> SubscriptionEvent[R] | None:
        if message.kind == "pong":
            self._liveness.on_pong()
        elif message.kind == "error":
            if self._renewal is None:
                raise SubscriptionError(
                    "the server refused the subscription binding", outcome=message.outcome
                )
            # A renewed token refused (it may have expired in flight): bind anew instead.
            self._drop_requested = True
        elif message.kind in ("handshake", "heartbeat"):
            self._ledger.observe(message.timestamp)
            if message.kind == "handshake" and self._renewal is not None:
                self._renewed(message)
        elif message.kind == "notification" and message.subscription_id == self._subscription_id:
            self._ledger.observe(message.timestamp)
            if message.resource is None:
                # Only a reference came: the catch-up search reads what changed.
                self._catch_up_from = self._ledger.catch_up_since()
                return None
            return self._event(message.resource, message)
        return None

    def _event(
        self, resource: dict[str, Any], message: Message | None
    ) -> SubscriptionEvent[R] | None:
        """The event for a resource, or None when it was delivered already (or superseded)."""
        if resource.get("resourceType") != self._criteria.resource_type:
            return None
        if not self._ledger.accept(resource):
            return None
        meta = resource.get("meta") or {}
        return SubscriptionEvent(
            resource=_core.as_result(resource, self._as_fhir),
            resource_type=self._criteria.resource_type,
            resource_id=str(resource.get("id")),
            version_id=meta.get("versionId"),
            last_updated=meta.get("lastUpdated"),
            source="notification" if message is not None else "catch-up",
            subscription_id=message.subscription_id if message is not None else None,
            timestamp=message.timestamp if message is not None else None,
        )

    async def _catch_up(self) -> AsyncIterator[SubscriptionEvent[R]]:
        """What matched and changed since `_catch_up_from`, oldest first, minus what was seen.

        A failed page restarts the search (after a backoff): the ledger drops the repeats.
        """
        since = self._catch_up_from
        assert since is not None
        client = self._client
        call = client._build_search(
            self._criteria.resource_type, _subscriptions.catch_up_query(self._criteria, since)
        )
        attempt = 0
        while True:
            try:
                async for resource in client._pages(call, self._acting, None, prefetch=False):
                    event = self._event(resource, None) if isinstance(resource, dict) else None
                    if event is not None:
                        yield event
            except _TRANSIENT as exc:
                logger.warning(
                    "pymedplum: subscription catch-up search failed (%s); retrying",
                    type(exc).__name__,
                )
                await _backend.async_sleep(self._delay(attempt))
                attempt += 1
                continue
            break
        self._catch_up_from = None

    # ------------------------------------------------------------ connecting

    def _delay(self, attempt: int) -> float:
        return _subscriptions.reconnect_delay(attempt, maximum=self._max_reconnect_delay)

    async def _connect_until_bound(self, *, first: bool) -> None:
        """Bind a new socket, retrying transient failures with backoff; others raise."""
        attempt = 0
        while not self._closed:
            if not (first and attempt == 0):
                await _backend.async_sleep(self._delay(attempt))
            try:
                await self._connect()
            except _TRANSIENT as exc:
                logger.warning(
                    "pymedplum: subscription connect failed (%s); retrying", type(exc).__name__
                )
                attempt += 1
                continue
            break
        if not first:
            self.reconnects += 1

    async def _connect(self) -> None:
        """Create a Subscription, get its binding token, open and bind a socket."""
        client = self._client
        call = client._build_create(
            _subscriptions.subscription_resource(self._criteria), None, None
        )
        created = await client._json(call, self._acting)
        subscription_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(subscription_id, str) or not subscription_id:
            raise SubscriptionError("the server created a Subscription without an id")
        try:
            binding = await self._binding(subscription_id)
            url = _subscriptions.check_websocket_url(binding.url, client._origin)
            socket = await AsyncWebSocketConnection.open(url, open_timeout=self._open_timeout())
            try:
                handshake = await self._bind(socket, binding, subscription_id)
            except BaseException:
                await socket.aclose()
                raise
        except Exception:
            await self._delete(subscription_id)
            raise
        if self._closed:  # closed meanwhile (from another task or thread)
            await socket.aclose()
            await self._delete(subscription_id)
            return
        now = client._clock()
        self._socket = socket
        self._subscription_id = subscription_id
        self._liveness = Liveness(self._ping_interval, now)
        self._token = TokenSchedule(binding.expiration, handshake.timestamp, now)
        self._renewal = None

    def _open_timeout(self) -> float:
        connect = self._client._http.timeout.connect
        return connect if connect is not None else _subscriptions.BIND_TIMEOUT_SECONDS

    async def _binding(self, subscription_id: str) -> Binding:
        client = self._client
        call = client._build_read("Subscription", (subscription_id, "$get-ws-binding-token"), None)
        return _subscriptions.read_binding(await client._json(call, self._acting))

    async def _bind(
        self, socket: AsyncWebSocketConnection, binding: Binding, subscription_id: str
    ) -> Message:
        """Send the binding token and wait for the handshake naming this Subscription."""
        await socket.send(_subscriptions.bind_message(binding.token))
        clock = self._client._clock
        deadline = clock() + _subscriptions.BIND_TIMEOUT_SECONDS
        while clock() < deadline:
            data = await socket.receive(max(deadline - clock(), _MIN_WAIT_SECONDS))
            if data is None:
                break
            message = _subscriptions.parse_message(data)
            if message.kind == "error":
                raise SubscriptionError(
                    "the server refused the subscription binding", outcome=message.outcome
                )
            if message.kind == "handshake" and message.subscription_id == subscription_id:
                self._ledger.observe(message.timestamp)
                return message
        raise WebSocketClosed("no handshake after the binding token was sent")

    async def _renew_token(self, socket: AsyncWebSocketConnection) -> None:
        """Send a fresh binding token on the open socket; its handshake completes the renewal.

        A renewal after the old token expired may have missed notifications: the handshake
        then starts a catch-up.
        """
        clock = self._client._clock
        late = self._token.expired(clock())
        subscription_id = self._subscription_id
        assert subscription_id is not None
        try:
            binding = await self._binding(subscription_id)
            await socket.send(_subscriptions.bind_message(binding.token))
        except _TRANSIENT:
            await self._drop()
            return
        self._renewal = binding
        self._renewal_late = self._renewal_late or late
        self._token = TokenSchedule.awaiting_handshake(clock(), expired=late)

    def _renewed(self, handshake: Message) -> None:
        binding, self._renewal = self._renewal, None
        assert binding is not None
        self._token = TokenSchedule(binding.expiration, handshake.timestamp, self._client._clock())
        if self._renewal_late:
            self._renewal_late = False
            self._catch_up_from = self._ledger.catch_up_since()

    async def _drop(self) -> None:
        """Forget a lost socket; the next iteration connects again and catches up."""
        socket, self._socket = self._socket, None
        self._drop_requested = False
        if self._subscription_id is not None:
            self._stale.append(self._subscription_id)
            self._subscription_id = None
        self._renewal = None
        since = self._ledger.catch_up_since()
        if since is not None:
            self._catch_up_from = _earliest(self._catch_up_from, since)
        if socket is not None:
            await socket.aclose()

    async def _delete_stale(self) -> None:
        stale, self._stale = self._stale, []
        for subscription_id in stale:
            await self._delete(subscription_id)

    async def _delete(self, subscription_id: str) -> None:
        """Delete a Subscription this stream created; never raises (Medplum drops it anyway
        when its socket closes, so it is usually gone already)."""
        client = self._client
        try:
            await client._send(
                client._build_delete("Subscription", subscription_id, None), self._acting
            )
        except NotFoundError:
            pass
        except MedplumError as exc:
            logger.warning(
                "pymedplum: could not delete Subscription/%s (%s)",
                subscription_id,
                type(exc).__name__,
            )


def _earliest(current: str | None, candidate: str) -> str:
    if current is None:
        return candidate
    a, b = _subscriptions.parse_instant(current), _subscriptions.parse_instant(candidate)
    return current if a is not None and b is not None and a <= b else candidate


class AsyncSubscriptionMethods(AsyncClientBase):
    """Live changes: WebSocket subscriptions with catch-up after a reconnect."""

    @overload
    def subscribe(
        self,
        criteria: str,
        *,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
        since: str | None = None,
        ping_interval: float = 10.0,
        catch_up_margin: float = 30.0,
        max_reconnect_delay: float = 30.0,
    ) -> AsyncSubscriptionStream[dict[str, Any]]: ...
    @overload
    def subscribe(
        self,
        criteria: str,
        *,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
        since: str | None = None,
        ping_interval: float = 10.0,
        catch_up_margin: float = 30.0,
        max_reconnect_delay: float = 30.0,
    ) -> AsyncSubscriptionStream[M]: ...
    def subscribe(
        self,
        criteria: str,
        *,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
        since: str | None = None,
        ping_interval: float = 10.0,
        catch_up_margin: float = 30.0,
        max_reconnect_delay: float = 30.0,
    ) -> AsyncSubscriptionStream[Any]:
        """Follow changes to the resources matching `criteria` over a WebSocket.

        Example:
            async with client.subscribe("Observation?subject=Patient/123") as events:
                async for event in events:
                    print(event.resource_id, event.version_id, event.source)

        Each created or updated version of a matching resource arrives once, as a
        `SubscriptionEvent` (`event.resource` is a dict, or an `as_fhir` model). After a
        lost socket the stream connects again with backoff (at most `max_reconnect_delay`
        seconds apart) and searches `_lastUpdated` from `catch_up_margin` seconds before
        the last server time it saw, so changes made meanwhile still arrive; versions
        already delivered are dropped. With `since` (a FHIR instant), changes from then on
        are searched for first. The socket is pinged after `ping_interval` quiet seconds
        and replaced when a ping goes unanswered as long.

        The acting membership (`on_behalf_of`, the ambient `client.on_behalf_of(...)`, the
        client default) is resolved now and used for every REST call the stream makes:
        the Subscription belongs to it, and Medplum notifies only what it may read.

        Nothing is sent until the stream is entered or iterated; leaving `async with` (or
        `aclose()`) deletes the Subscriptions it created. Needs the `websockets` package
        (`pip install 'pymedplum[subscriptions]'`).
        """
        return AsyncSubscriptionStream(
            self,
            criteria,
            as_fhir=as_fhir,
            on_behalf_of=on_behalf_of,
            ping_interval=ping_interval,
            catch_up_margin=catch_up_margin,
            since=since,
            max_reconnect_delay=max_reconnect_delay,
        )
