"""`timeout=` bounds the whole attempt, against a real loopback server that drips its answer.

The server sends a complete, valid answer one byte every 0.15 s: every network read is
quick, so a per-read timeout never fires and the answer would arrive after seconds. With
`timeout=1.0` the attempt must fail instead. No timing is asserted: the old behaviour
returns the resource, the bounded one raises (and the server sees the client leave).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pymedplum import AsyncMedplumClient, MedplumClient, NetworkError, RequestEvent

BODY = b'{"resourceType":"Patient","id":"dripped"}'
HEAD = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/fhir+json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
)
INTERVAL = 0.15


class DrippingServer:
    """Answers each request with HEAD + BODY, one part of it (`drip`: "head" or "body")
    sent one byte every INTERVAL seconds, the other in one piece.

    `answered_in_full` counts answers sent to the end: a client that gives up at its
    timeout closes the connection first, and the rest of the answer fails to send.
    """

    def __init__(self, *, drip: str) -> None:
        self.drip = drip
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.answered_in_full = 0
        self.stopped = threading.Event()
        self.handlers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            handler = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            self.handlers.append(handler)
            handler.start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(body) < length:
                body += connection.recv(65536)
            self.requests += 1
            if self.drip == "head":
                pieces = [*(HEAD[i : i + 1] for i in range(len(HEAD))), BODY]
            else:
                pieces = [HEAD, *(BODY[i : i + 1] for i in range(len(BODY)))]
            try:
                for index, piece in enumerate(pieces):
                    if index:
                        self.stopped.wait(INTERVAL)
                    connection.sendall(piece)
            except OSError:  # the client gave up and closed the connection
                return
            self.answered_in_full += 1

    def finish_answers(self) -> None:
        """Wait until every answer was sent to the end or failed to send."""
        for handler in self.handlers:
            handler.join(timeout=60)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.listener.close()


@pytest.fixture(params=["head", "body"], ids=["head dripped", "body dripped"])
def server(request: pytest.FixtureRequest) -> Iterator[DrippingServer]:
    dripping = DrippingServer(drip=request.param)
    yield dripping
    dripping.close()


def _check(error: NetworkError, events: list[RequestEvent], server: DrippingServer) -> None:
    assert "timeout" in str(error).lower()
    assert error.possibly_committed is True  # the create may have reached the server
    # Not replayed (a create), and given up before the answer was complete.
    server.finish_answers()
    assert server.requests == 1 and server.answered_in_full == 0
    (event,) = events
    assert event.outcome == "error" and event.final_exception is error


def test_sync_create_is_bounded_by_timeout(server: DrippingServer) -> None:
    events: list[RequestEvent] = []
    with (
        MedplumClient(
            server.base_url, access_token="t", timeout=1.0, on_request_complete=events.append
        ) as client,
        pytest.raises(NetworkError) as caught,
    ):
        client.create_resource({"resourceType": "Patient"})
    _check(caught.value, events, server)


def test_async_create_is_bounded_by_timeout(server: DrippingServer) -> None:
    events: list[RequestEvent] = []

    async def main() -> Any:
        async with AsyncMedplumClient(
            server.base_url, access_token="t", timeout=1.0, on_request_complete=events.append
        ) as client:
            return await client.create_resource({"resourceType": "Patient"})

    with pytest.raises(NetworkError) as caught:
        asyncio.run(main())
    _check(caught.value, events, server)


def test_sync_with_its_own_http_client_checks_the_deadline_between_body_chunks() -> None:
    """A caller's httpx.Client has no deadline-aware sockets: a dripped body is still cut
    short, between the chunks it arrives in."""
    server = DrippingServer(drip="body")
    events: list[RequestEvent] = []
    try:
        with (
            httpx.Client(timeout=30.0) as http,
            MedplumClient(
                server.base_url,
                access_token="t",
                timeout=1.0,
                http_client=http,
                on_request_complete=events.append,
            ) as client,
            pytest.raises(NetworkError) as caught,
        ):
            client.create_resource({"resourceType": "Patient"})
        _check(caught.value, events, server)
    finally:
        server.close()


def test_a_prompt_answer_is_unaffected() -> None:
    """The same server, dripping nothing: the call succeeds under the same timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            received = b""
            while b"\r\n\r\n" not in received:
                received += connection.recv(65536)
            connection.sendall(HEAD + BODY)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with MedplumClient(f"http://127.0.0.1:{port}/", access_token="t", timeout=1.0) as client:
            assert client.read_resource("Patient", "dripped")["id"] == "dripped"
    finally:
        thread.join(timeout=5)
        listener.close()
