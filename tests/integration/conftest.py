"""Fixtures for tests that run against the local Medplum server.

- ``medplum_server`` (session), ``medplum_reset``: from the pymedplum pytest plugin
  (`pymedplum.testing.pytest_plugin`): one server process for the whole test session.
- ``medplum`` (function): the same server, reset to its seed before the test (data, request
  log, faults, token settings): the plugin's ``medplum_reset``. Use it, or make it autouse in
  a module with ``pytestmark = pytest.mark.usefixtures("medplum")``.
- ``admin_token`` / ``fhir`` (function): a bearer token of the seeded admin client and a raw
  ``httpx.Client`` on the FHIR base URL that sends it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pymedplum.testing.local_server import READ_TIMEOUT, LocalMedplumServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def medplum(medplum_reset: LocalMedplumServer) -> LocalMedplumServer:
    """The session's server (the plugin's ``medplum_server``), reset to its seed for this test."""
    return medplum_reset


@pytest.fixture
def admin_token(medplum: LocalMedplumServer) -> str:
    """A bearer token of the seeded admin ClientApplication."""
    return medplum.access_token("admin")


@pytest.fixture
def fhir(medplum: LocalMedplumServer, admin_token: str) -> Iterator[httpx.Client]:
    """Raw httpx on the FHIR base URL, authenticated as the admin client."""
    with httpx.Client(
        base_url=medplum.fhir_base_url,
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=READ_TIMEOUT,
        trust_env=False,
    ) as client:
        yield client


# The client end-to-end fixtures (client, make_client, flavour, no_sleep, anyio_backend).
from tests.integration.conftest_clients import (  # noqa: E402, F401
    anyio_backend,
    client_fixture,
    flavour,
    make_client,
    no_sleep,
)

# Redis for the tests of pymedplum.redis (redis_server, redis_url).
from tests.integration.conftest_redis import redis_server, redis_url  # noqa: E402, F401
