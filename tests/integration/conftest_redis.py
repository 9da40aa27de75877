"""Fixtures for the tests of pymedplum.redis: a real redis-server started by the tests.

- ``redis_server`` (session): one `redis-server` on 127.0.0.1, a free port and a temporary
  directory; the tests that use it skip, saying why, when the binary is not installed.
- ``redis_url`` (function): its URL, emptied (FLUSHALL) before the test, with the process's
  shared token records forgotten, so each test starts from nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import MISSING_REASON, LocalRedisServer, redis_server_binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedisServer]:
    """A redis-server for the whole session."""
    if redis_server_binary() is None:
        pytest.skip(MISSING_REASON)
    pytest.importorskip("redis", reason="redis-py is not installed: pip install -e '.[dev]'")
    with LocalRedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedisServer) -> str:
    """The session's Redis, empty, and this process's token records forgotten."""
    import redis

    from pymedplum._token_cache import forget_shared_tokens

    if redis_server.process is None:  # a test stopped it
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    forget_shared_tokens()
    return redis_server.url
