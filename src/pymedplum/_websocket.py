"""The socket of a subscription stream: the one piece that differs between the two clients.

`AsyncWebSocketConnection` (on websockets' asyncio client) and `WebSocketConnection` (on its
threaded client) have the same methods, so codegen/unasync.py maps the async stream onto
the sync one by name. Every failure to open, send or receive is a `WebSocketClosed` whose
message names only the exception type: a socket message can carry a binding token or PHI.
websockets' frame-level DEBUG logs (which would show both) are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, Self

import httpx

from pymedplum._core import USER_AGENT

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection as AsyncClientConnection
    from websockets.sync.client import ClientConnection

__all__ = [
    "AsyncWebSocketConnection",
    "WebSocketClosed",
    "WebSocketConnection",
    "require_websockets",
]

#: The largest message accepted (a notification carries one resource).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
INSTALL_HINT = (
    "client.subscribe() needs the 'websockets' package: pip install 'pymedplum[subscriptions]'"
)


class _NoFrames(logging.Filter):
    """Drops websockets' per-frame DEBUG records: frames hold binding tokens and resources."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg in ("> %s", "< %s"))


_wire_logger = logging.getLogger("pymedplum.websocket")
_wire_logger.addFilter(_NoFrames())


class WebSocketClosed(Exception):
    """The socket could not be opened, or was lost."""


def _closed(exc: BaseException) -> WebSocketClosed:
    return WebSocketClosed(f"WebSocket connection lost ({type(exc).__name__})")


def _connection_errors() -> tuple[type[BaseException], ...]:
    from websockets.exceptions import WebSocketException

    return (WebSocketException, OSError, EOFError, TimeoutError)


def _options(url: str, open_timeout: float) -> dict[str, Any]:
    """Connection options common to both clients: our own keepalive, no frame logs."""
    options: dict[str, Any] = {
        "open_timeout": open_timeout,
        # Medplum's protocol has its own ping message; the stream sends it.
        "ping_interval": None,
        "ping_timeout": None,
        "max_size": MAX_MESSAGE_BYTES,
        "user_agent_header": USER_AGENT,
        "logger": _wire_logger,
    }
    if url.lower().startswith("wss:"):
        # The same certificate store as the client's httpx connections (certifi).
        context: ssl.SSLContext = httpx.create_ssl_context()
        options["ssl"] = context
    return options


def require_websockets() -> None:
    """Raise an ImportError naming the extra when the websockets package is missing."""
    try:
        import websockets  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT, name="websockets") from None


class AsyncWebSocketConnection:
    """A text WebSocket on asyncio: open, send, receive with a timeout, close."""

    def __init__(self, connection: AsyncClientConnection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, url: str, *, open_timeout: float) -> Self:
        require_websockets()
        from websockets.asyncio.client import connect

        try:
            connection = await connect(url, **_options(url, open_timeout))
        except _connection_errors() as exc:
            raise _closed(exc) from None
        return cls(connection)

    async def send(self, text: str) -> None:
        try:
            await self._connection.send(text)
        except _connection_errors() as exc:
            raise _closed(exc) from None

    async def receive(self, timeout: float) -> bytes | None:
        """The next message, or None when `timeout` seconds pass without one."""
        try:
            async with asyncio.timeout(timeout):
                return await self._connection.recv(decode=False)
        except TimeoutError:
            return None
        except _connection_errors() as exc:
            raise _closed(exc) from None

    async def aclose(self) -> None:
        try:
            await self._connection.close()
        except _connection_errors():
            pass


class WebSocketConnection:
    """A text WebSocket on a background thread: open, send, receive with a timeout, close."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    @classmethod
    def open(cls, url: str, *, open_timeout: float) -> Self:
        require_websockets()
        from websockets.sync.client import connect

        try:
            # Entered by hand: the stream, not a `with` block, decides when it closes.
            connection = connect(url, **_options(url, open_timeout)).__enter__()
        except _connection_errors() as exc:
            raise _closed(exc) from None
        return cls(connection)

    def send(self, text: str) -> None:
        try:
            self._connection.send(text)
        except _connection_errors() as exc:
            raise _closed(exc) from None

    def receive(self, timeout: float) -> bytes | None:
        """The next message, or None when `timeout` seconds pass without one."""
        try:
            return self._connection.recv(timeout, decode=False)
        except TimeoutError:
            return None
        except _connection_errors() as exc:
            raise _closed(exc) from None

    def close(self) -> None:
        try:
            self._connection.close()
        except _connection_errors():
            pass
