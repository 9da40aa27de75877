"""Fixtures: a scripted fake Medplum behind httpx.MockTransport, both clients, no sleeping."""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

try:  # the package is installed editable by `make install`; plain checkouts use src/
    import pymedplum  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from pymedplum import AsyncMedplumClient, MedplumClient, _backend, _json

BASE = "https://medplum.test/"
Reply = httpx.Response | BaseException | Callable[[httpx.Request], Any]


class FakeMedplum:
    """A scripted Medplum: queued replies per (method, path), sensible defaults otherwise.

    Records every request it receives; the token endpoint issues `tok-1`, `tok-2`, ...
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.scripts: dict[tuple[str, str], list[Reply]] = {}
        self.token_replies: list[Reply] = []
        self.tokens_issued = 0
        self.token_lifetime: float | None = 3600

    # -- scripting

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Queue replies for the next requests to `method path` (path without query)."""
        self.scripts.setdefault((method, path), []).extend(replies)

    @property
    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/oauth2/token"]

    @property
    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != "/oauth2/token"]

    # -- serving

    def _reply(self, reply: Reply, request: httpx.Request) -> httpx.Response:
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        result = reply(request)
        assert isinstance(result, httpx.Response)
        return result

    def issue_token(self, request: httpx.Request) -> httpx.Response:
        self.tokens_issued += 1
        body: dict[str, Any] = {"access_token": f"tok-{self.tokens_issued}", "token_type": "Bearer"}
        if self.token_lifetime is not None:
            body["expires_in"] = self.token_lifetime
        return httpx.Response(200, json=body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if request.url.path == "/oauth2/token":
            if self.token_replies:
                return self._reply(self.token_replies.pop(0), request)
            return self.issue_token(request)
        queue = self.scripts.get((request.method, request.url.path))
        if queue:
            return self._reply(queue.pop(0), request)
        return self.default(request)

    def default(self, request: httpx.Request) -> httpx.Response:
        parts = [p for p in request.url.path.split("/") if p][2:]  # after fhir/R4
        if request.method == "GET" and len(parts) == 1:
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})
        if request.method == "GET" and len(parts) >= 2:
            resource = {"resourceType": parts[0], "id": parts[1], "meta": {"versionId": "1"}}
            return httpx.Response(200, json=resource)
        if request.method in ("POST", "PUT", "PATCH") and request.content:
            body = _json.loads(request.content)
            if isinstance(body, dict):
                body.setdefault("id", "new-id")
                body["meta"] = {**body.get("meta", {}), "versionId": "2"}
            status = 201 if request.method == "POST" else 200
            return httpx.Response(status, content=_json.dumps(body))
        return httpx.Response(200)

    # -- clients

    def sync_client(self, **kw: Any) -> MedplumClient:
        kw.setdefault("client_id", "cid")
        kw.setdefault("client_secret", "secret")
        http = httpx.Client(transport=httpx.MockTransport(self.handle))
        return MedplumClient(kw.pop("base_url", BASE), http_client=http, **kw)

    def async_client(self, **kw: Any) -> AsyncMedplumClient:
        kw.setdefault("client_id", "cid")
        kw.setdefault("client_secret", "secret")
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle))
        return AsyncMedplumClient(kw.pop("base_url", BASE), http_client=http, **kw)


def header(request: httpx.Request, name: str) -> str | None:
    """One request header, or None."""
    return request.headers.get(name)


def query(request: httpx.Request) -> dict[str, list[str]]:
    """A request's parsed query."""
    return parse_qs(request.url.query.decode(), keep_blank_values=True)


class Driver:
    """Calls a sync or an async client the same way, so one test body covers both.

    Coroutines run on a loop owned by the driver; async iterators are collected to lists.
    """

    def __init__(self, client: MedplumClient | AsyncMedplumClient) -> None:
        self.client = client
        self.is_async = isinstance(client, AsyncMedplumClient)
        self.loop = asyncio.new_event_loop()

    def run(self, value: Any) -> Any:
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

    def close(self) -> None:
        if self.is_async:
            self.loop.run_until_complete(self.client.aclose())  # type: ignore[union-attr]
        else:
            self.client.close()  # type: ignore[union-attr]
        self.loop.close()


@pytest.fixture
def fake() -> FakeMedplum:
    return FakeMedplum()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every retry wait, recorded instead of slept."""
    waited: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waited.append(seconds)

    def sync_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(_backend, "async_sleep", async_sleep)
    monkeypatch.setattr(_backend, "sync_sleep", sync_sleep)
    return waited


@pytest.fixture(params=["sync", "async"])
def make(
    request: pytest.FixtureRequest, fake: FakeMedplum, sleeps: list[float]
) -> Iterator[Callable[..., Driver]]:
    """A factory of drivers over the sync or the async client (the test runs for both)."""
    made: list[Driver] = []

    def factory(**kw: Any) -> Driver:
        client = fake.sync_client(**kw) if request.param == "sync" else fake.async_client(**kw)
        driver = Driver(client)
        made.append(driver)
        return driver

    yield factory
    for driver in made:
        driver.close()
