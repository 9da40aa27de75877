"""A RateLimit budget shared by clients: once Medplum says a quota is spent, wait for its reset
instead of sending into a 429 (no I/O).

Medplum reports its quotas on every answer (`RateLimit: "requests";r=59935;t=60,
"fhirInteractions";r=280;t=60`) and answers `r=0` on the request that spends the last unit,
before anyone is refused. A client given a `RateLimitBudget` (`rate_limit_budget=`) records
"spent until" when an answer says so (or on a 429), and every client sharing that budget
checks it before each attempt and waits until the reset, bounded by MAX_RETRY_DELAY_SECONDS.

The budget is kept per scope: FHIR calls of one base URL and client id share one (the
project's quota; the header does not say whether the acting user's or the project's quota
ran out, so all of them wait), and token requests of one base URL another (Medplum limits
/oauth2 per IP). `MemoryRateLimitBudget` shares it between the clients of one process;
`pymedplum.redis.RedisRateLimitBudget` between processes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

from pymedplum import _retry

__all__ = [
    "MemoryRateLimitBudget",
    "RateLimitBudget",
    "SpentView",
    "budget_scope",
    "pause_seconds",
    "spent_after",
]


@runtime_checkable
class RateLimitBudget(Protocol):
    """Where clients share what they learnt of Medplum's quotas. Safe across threads.

    Times are Unix times (seconds). `reserve` is how many units Medplum may still report
    (`r`) for the quota to count as spent already: 0 waits only once nothing is left; a
    fleet of N single-request workers can keep N - 1 in hand so that the requests already
    in flight when it runs low are not refused.
    """

    reserve: int

    def spent_until(self, scope: str, now: float) -> float | None:
        """Until when the quota of `scope` is spent (None: it is not, as far as known)."""

    async def spent_until_async(self, scope: str, now: float) -> float | None:
        """`spent_until`, without blocking the event loop."""

    def record_spent(self, scope: str, until: float, now: float) -> None:
        """The quota of `scope` is spent until `until` (a later time already known wins)."""

    async def record_spent_async(self, scope: str, until: float, now: float) -> None:
        """`record_spent`, without blocking the event loop."""


def budget_scope(kind: Literal["fhir", "auth"], base_url: str, client_id: str | None) -> str:
    """The scope of a budget: `fhir` (per base URL and client id) or `auth` (per base URL:
    Medplum limits /oauth2 per IP). A digest, so a shared store never shows the URL or id."""
    material = base_url if kind == "auth" else f"{base_url}\n{client_id or ''}"
    return f"{kind}:{hashlib.sha256(material.encode('utf-8')).hexdigest()[:32]}"


def spent_after(
    status: int, ratelimit: str | None, headers: Mapping[str, str], now: float, reserve: int
) -> float | None:
    """Until when an answer says the quota is spent, or None when it does not.

    `ratelimit` is the answer's `RateLimit` header (read once by the caller: a header lookup
    costs more than the rest). A 429 is spent for the delay the server asks (`Retry-After`,
    else `RateLimit`), the one the retry waits; any other answer when a `RateLimit` policy has
    `r <= reserve` left, until the longest such `t`.
    """
    if status == 429:
        delay = _retry.server_delay(headers, now)
        return None if delay is None else now + delay
    value = ratelimit
    # Most answers have plenty left: skip the parse unless an `r=0` could be there.
    if not value or (reserve <= 0 and "r=0" not in value):
        return None
    longest: float | None = None
    for item in value.split(","):
        params = dict(_retry._RATE_LIMIT_PARAM.findall(item))
        try:
            remaining, reset = float(params["r"]), float(params["t"])
        except (KeyError, ValueError):
            continue
        if remaining <= reserve and reset >= 0 and (longest is None or reset > longest):
            longest = reset
    return None if longest is None else now + longest


def pause_seconds(until: float | None, now: float) -> float:
    """How long to wait before sending: until the reset, capped by MAX_RETRY_DELAY_SECONDS."""
    if until is None or until <= now:
        return 0.0
    return min(until - now, _retry.MAX_RETRY_DELAY_SECONDS)


class MemoryRateLimitBudget:
    """A RateLimitBudget for the clients of one process (give them the same instance).

    Example:
        budget = MemoryRateLimitBudget()
        client = MedplumClient(..., rate_limit_budget=budget)
    """

    __slots__ = ("reserve", "_until", "_lock")

    def __init__(self, *, reserve: int = 0) -> None:
        if isinstance(reserve, bool) or not isinstance(reserve, int) or reserve < 0:
            raise ValueError("reserve must be an int >= 0")
        self.reserve = reserve
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def spent_until(self, scope: str, now: float) -> float | None:
        """Until when the quota of `scope` is spent, or None."""
        until = self._until.get(scope)
        return until if until is not None and until > now else None

    async def spent_until_async(self, scope: str, now: float) -> float | None:
        """Same as `spent_until` (no I/O)."""
        return self.spent_until(scope, now)

    def record_spent(self, scope: str, until: float, now: float) -> None:
        """Remember that the quota of `scope` is spent until `until`."""
        with self._lock:
            if until > self._until.get(scope, 0.0):
                self._until[scope] = until

    async def record_spent_async(self, scope: str, until: float, now: float) -> None:
        """Same as `record_spent` (no I/O)."""
        self.record_spent(scope, until, now)

    def __repr__(self) -> str:
        return f"<MemoryRateLimitBudget scopes={len(self._until)} reserve={self.reserve}>"


class SpentView:
    """One process's view of a shared budget, so that checking it costs no round trip.

    It remembers, per scope, until when the quota is spent and when the shared store was
    last read. While the store's change notifications arrive (`listening`), a scope read once
    since they started is current; otherwise a read older than `max_age` seconds is stale.
    """

    __slots__ = ("max_age", "listening", "_until", "_read_at", "_lock")

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self.listening = False
        self._until: dict[str, float] = {}
        self._read_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def known(self, scope: str, now: float) -> tuple[float | None, bool]:
        """`(spent until, current)`: when not current, read the store (`read`) first."""
        until = self._until.get(scope)
        if until is not None and until > now:
            return until, True  # spent: nothing newer can shorten it
        read_at = self._read_at.get(scope)
        if read_at is None:
            return None, False
        return None, self.listening or now - read_at < self.max_age

    def note(self, scope: str, until: float) -> None:
        """The quota of `scope` is spent until `until` (recorded here or announced)."""
        with self._lock:
            if until > self._until.get(scope, 0.0):
                self._until[scope] = until

    def read(self, scope: str, until: float | None, now: float) -> None:
        """What the store said of `scope` at `now`."""
        with self._lock:
            self._read_at[scope] = now
            if until is not None and until > self._until.get(scope, 0.0):
                self._until[scope] = until

    def forget_reads(self) -> None:
        """Every scope must be read again (notifications may have been missed)."""
        with self._lock:
            self._read_at.clear()

    def reset(self) -> None:
        """Forget everything (a forked child starts with its parent's view, unsynchronised)."""
        with self._lock:
            self._until.clear()
            self._read_at.clear()
            self.listening = False
