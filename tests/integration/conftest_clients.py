"""Fixtures for the client end-to-end tests: both clients on the local Medplum server.

`client` is parametrized over `MedplumClient` and `AsyncMedplumClient`: a test written once
against a `Driver` runs for both (coroutines are run on the driver's own event loop, async
iterators collected into lists). `make_client` builds more drivers of the same flavour (the
non-admin client, a client default OBO, hooks). `no_sleep` records retry waits instead of
sleeping, as the unit tests do. These fixtures are registered in conftest.py.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from pymedplum import AsyncMedplumClient, MedplumClient, _backend
from pymedplum.testing.local_server import LocalMedplumServer

Flavour = Literal["sync", "async"]


class Driver:
    """Calls a sync or an async client the same way, so one test body covers both."""

    def __init__(self, client: MedplumClient | AsyncMedplumClient) -> None:
        self.client = client
        self.is_async = isinstance(client, AsyncMedplumClient)
        self.loop = asyncio.new_event_loop()

    def run(self, value: Any) -> Any:
        """The value of a call: awaited, an async iterator collected, an iterator listed."""
        if inspect.isawaitable(value):
            return self.loop.run_until_complete(value)
        if isinstance(value, collections.abc.AsyncIterator):

            async def collect() -> list[Any]:
                return [item async for item in value]

            return self.loop.run_until_complete(collect())
        if isinstance(value, collections.abc.Iterator):
            return list(value)
        return value

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.run(method(*args, **kwargs))

        return call

    def in_obo(self, membership: str | None, fn: Callable[[], Any]) -> Any:
        """Run `fn` (which calls this driver) inside `client.on_behalf_of(membership)`.

        The async client enters the context manager with `async with` inside one task, so
        the ambient value is seen by the calls made in that task.
        """
        if not self.is_async:
            with self.client.on_behalf_of(membership):
                return fn()
        client = self.client

        async def scoped() -> Any:
            async with client.on_behalf_of(membership):
                return await fn()

        return self.loop.run_until_complete(scoped())

    def close(self) -> None:
        if self.is_async:
            self.loop.run_until_complete(self.client.aclose())  # type: ignore[union-attr]
        else:
            self.client.close()  # type: ignore[union-attr]
        self.loop.close()


def new_client(
    server: LocalMedplumServer, flavour: Flavour, *, user: bool = False, **kw: Any
) -> MedplumClient | AsyncMedplumClient:
    """A client of `flavour` on the local server, logging in as the admin (or user) client."""
    creds = server.user_client if user else server.admin_client
    kw.setdefault("client_id", creds.client_id)
    kw.setdefault("client_secret", creds.client_secret)
    cls = MedplumClient if flavour == "sync" else AsyncMedplumClient
    return cls(server.base_url + "/", **kw)


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """`sync` or `async`: the test runs once for each client."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_client(medplum: LocalMedplumServer, flavour: Flavour) -> Iterator[Callable[..., Driver]]:
    """A factory of drivers of this test's flavour (`user=True` for the non-admin client)."""
    made: list[Driver] = []

    def factory(**kw: Any) -> Driver:
        driver = Driver(new_client(medplum, flavour, **kw))
        made.append(driver)
        return driver

    yield factory
    for driver in made:
        driver.close()


@pytest.fixture(name="client")
def client_fixture(make_client: Callable[..., Driver]) -> Driver:
    """The admin client of this test's flavour, on a server reset to its seed."""
    return make_client()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every retry wait of either client, recorded instead of slept."""
    waited: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waited.append(seconds)

    def sync_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(_backend, "async_sleep", async_sleep)
    monkeypatch.setattr(_backend, "sync_sleep", sync_sleep)
    return waited


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
