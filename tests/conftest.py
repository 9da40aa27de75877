"""Fixtures for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pymedplum._token_cache import forget_shared_tokens

# `pytester` runs a user's test file in a subprocess (tests of the pymedplum pytest plugin).
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_shared_tokens() -> Iterator[None]:
    """Each test starts with an empty process-wide token cache and no refresh record.

    Clients with the same base URL and credentials share tokens across the whole process;
    without this, a test's first login could be served by an earlier test's token.
    """
    forget_shared_tokens()
    yield
    forget_shared_tokens()
