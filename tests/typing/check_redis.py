"""Typing checks (mypy --strict): the Redis classes are what the clients' arguments expect."""

from __future__ import annotations

from pymedplum import (
    AsyncMedplumClient,
    MedplumClient,
    MemoryRateLimitBudget,
    RateLimitBudget,
    SharedTokenCache,
    TokenCache,
)
from pymedplum.redis import RedisRateLimitBudget, RedisTokenCache

shared: SharedTokenCache = RedisTokenCache("redis://127.0.0.1:6379/0")
cache: TokenCache = shared
budget: RateLimitBudget = RedisRateLimitBudget("redis://127.0.0.1:6379/0", reserve=3)
in_process: RateLimitBudget = MemoryRateLimitBudget()

MedplumClient(token_cache=shared, rate_limit_budget=budget)
AsyncMedplumClient(token_cache=cache, rate_limit_budget=in_process)
