"""The pymedplum pytest plugin: a Medplum server and clients for your tests.

Installed with the package and registered through its ``pytest11`` entry point (named
``pymedplum``), so the fixtures are there in any project that has pymedplum installed;
``-p no:pymedplum`` turns it off.

Fixtures:

- ``medplum_server`` (session): the local Medplum server (`LocalMedplumServer`), started
  once per test session on 127.0.0.1 and stopped at its end. Needs Node >= 20.10 and npm.
- ``medplum_reset`` (function): the same server, reset to its seed for this test.
- ``medplum_connection`` (session): where the client fixtures connect: the local server as
  its seeded admin client, or your own Medplum with ``--medplum-base-url`` (or
  ``PYMEDPLUM_TEST_BASE_URL``) and ``PYMEDPLUM_TEST_CLIENT_ID`` / ``PYMEDPLUM_TEST_CLIENT_SECRET``.
- ``medplum_client`` / ``async_medplum_client`` (function): a `MedplumClient` /
  `AsyncMedplumClient` on that connection, closed after the test. On the local server they
  reset it to its seed first. The async one is an ``async`` fixture: use it from tests run by
  anyio (``@pytest.mark.anyio``) or pytest-asyncio.
- ``medplum_vcr`` (function): a vcrpy ``VCR`` (`pymedplum.testing.cassettes.medplum_vcr`)
  keeping cassettes in ``cassettes/`` beside the test module, recording without tokens,
  secrets or PHI; ``--medplum-record-mode`` sets its record mode (default ``once``). It
  matches requests by method, scheme, path and query, not host and port: a cassette recorded
  against the local server (a free port each session) replays in later sessions.

See docs/testing.md.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.testing.local_server import LocalMedplumServer

if TYPE_CHECKING:
    import vcr  # type: ignore[import-untyped]

__all__ = [
    "MedplumConnection",
    "async_medplum_client",
    "medplum_client",
    "medplum_connection",
    "medplum_reset",
    "medplum_server",
    "medplum_vcr",
]

BASE_URL_ENV = "PYMEDPLUM_TEST_BASE_URL"
CLIENT_ID_ENV = "PYMEDPLUM_TEST_CLIENT_ID"
CLIENT_SECRET_ENV = "PYMEDPLUM_TEST_CLIENT_SECRET"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pymedplum", "pymedplum: Medplum server, clients and cassettes")
    group.addoption(
        "--medplum-base-url",
        default=None,
        help=(
            f"run medplum_client/async_medplum_client against this Medplum instead of the "
            f"local server (credentials from ${CLIENT_ID_ENV} and ${CLIENT_SECRET_ENV}; "
            f"default: ${BASE_URL_ENV})"
        ),
    )
    group.addoption(
        "--medplum-record-mode",
        default="once",
        choices=("once", "new_episodes", "none", "all"),
        help="vcrpy record mode of the medplum_vcr fixture (default: once)",
    )


@dataclass(frozen=True, slots=True)
class MedplumConnection:
    """Where the client fixtures connect, and as whom.

    Attributes:
        base_url: the server's base URL (with a trailing slash).
        client_id: the OAuth client id.
        client_secret: the client secret (left out of repr).
        server: the local server when the fixtures use it, else None (your own Medplum).
    """

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    server: LocalMedplumServer | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a client of your own on this connection."""
        return {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }


@pytest.fixture(scope="session")
def medplum_server() -> Iterator[LocalMedplumServer]:
    """The local Medplum server, started once per test session and stopped at its end."""
    server = LocalMedplumServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def medplum_reset(medplum_server: LocalMedplumServer) -> LocalMedplumServer:
    """The session's local server, reset to its seed for this test (data, request log,
    faults, token settings; issued tokens stay valid)."""
    medplum_server.reset()
    return medplum_server


@pytest.fixture(scope="session")
def medplum_connection(request: pytest.FixtureRequest) -> MedplumConnection:
    """The local server as its seeded admin client, or the Medplum named by
    ``--medplum-base-url`` / ``$PYMEDPLUM_TEST_BASE_URL`` with the credentials in
    ``$PYMEDPLUM_TEST_CLIENT_ID`` and ``$PYMEDPLUM_TEST_CLIENT_SECRET``.

    The variables are named for tests on purpose: the CLI's ``MEDPLUM_*`` variables in a
    developer's shell never send a test suite to the server they point at.
    """
    base_url = request.config.getoption("--medplum-base-url") or os.environ.get(BASE_URL_ENV)
    if base_url:
        client_id = os.environ.get(CLIENT_ID_ENV)
        client_secret = os.environ.get(CLIENT_SECRET_ENV)
        if not client_id or not client_secret:
            raise pytest.UsageError(
                f"--medplum-base-url/{BASE_URL_ENV} needs {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}"
            )
        return MedplumConnection(base_url.rstrip("/") + "/", client_id, client_secret)
    server: LocalMedplumServer = request.getfixturevalue("medplum_server")
    admin = server.admin_client
    return MedplumConnection(server.base_url + "/", admin.client_id, admin.client_secret, server)


@pytest.fixture
def _medplum_ready(
    request: pytest.FixtureRequest, medplum_connection: MedplumConnection
) -> MedplumConnection:
    """The connection, with the local server reset to its seed for this test."""
    if medplum_connection.server is not None:
        request.getfixturevalue("medplum_reset")
    return medplum_connection


@pytest.fixture
def medplum_client(_medplum_ready: MedplumConnection) -> Iterator[MedplumClient]:
    """A `MedplumClient` on `medplum_connection`, closed after the test."""
    with MedplumClient(**_medplum_ready.client_kwargs()) as client:
        yield client


@pytest.fixture
async def async_medplum_client(
    _medplum_ready: MedplumConnection,
) -> AsyncIterator[AsyncMedplumClient]:
    """An `AsyncMedplumClient` on `medplum_connection`, closed after the test (an async
    fixture: for tests run by anyio or pytest-asyncio)."""
    async with AsyncMedplumClient(**_medplum_ready.client_kwargs()) as client:
        yield client


@pytest.fixture
def medplum_vcr(request: pytest.FixtureRequest) -> vcr.VCR:
    """A vcrpy ``VCR`` that scrubs tokens, secrets and PHI from what it records, keeping
    cassettes in ``cassettes/`` beside the test module (needs vcrpy)."""
    from pymedplum.testing.cassettes import medplum_vcr as make_vcr

    return make_vcr(
        cassette_library_dir=str(Path(str(request.path)).parent / "cassettes"),
        record_mode=request.config.getoption("--medplum-record-mode"),
        match_on=("method", "scheme", "path", "query"),
    )
