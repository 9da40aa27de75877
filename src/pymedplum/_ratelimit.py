"""Medplum's `RateLimit` response header, parsed (no I/O).

Medplum reports each limit that applies to a request as one item of a `RateLimit` header:
`"requests";r=59999;t=60, "fhirInteractions";r=49894;t=60` (the policy's name, the units
`r`emaining and the seconds `t`ill it resets). `requests` is the per-IP request limit,
`fhirInteractions` the FHIR quota of the user or project (the lower of the two is reported).
The client keeps the last header it saw; `rate_limit_status()` parses it on demand, so a
response costs no parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymedplum import _retry

__all__ = ["RateLimitPolicy", "RateLimitStatus", "parse_rate_limit_header"]

# One list item: a quoted policy name (or a bare token), then its parameters.
_ITEM = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z*][A-Za-z0-9_.:%*/-]*))\s*((?:;[^,]*)?)')


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """One limit reported by the server.

    Attributes:
        name: the policy (`"fhirInteractions"`, `"requests"`).
        remaining: units left in the current window (0 when exhausted).
        reset_seconds: seconds from the response until the window resets.
    """

    name: str
    remaining: int
    reset_seconds: int

    @property
    def exhausted(self) -> bool:
        """Whether no units are left: a request now would be answered 429."""
        return self.remaining <= 0


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """The limits reported with the last response that carried a `RateLimit` header.

    Attributes:
        policies: every limit the header reported, in its order.
        observed_at: when that response arrived (UTC).
        header: the header as received (it never carries PHI or credentials).

    Example:
        status = client.rate_limit_status()
        quota = status.fhir_interactions if status else None
        if quota is not None and quota.remaining < 100:
            time.sleep(quota.reset_seconds)
    """

    policies: tuple[RateLimitPolicy, ...]
    observed_at: datetime
    header: str

    def policy(self, name: str) -> RateLimitPolicy | None:
        """The policy of this name, or None when the server did not report it."""
        for policy in self.policies:
            if policy.name == name:
                return policy
        return None

    @property
    def fhir_interactions(self) -> RateLimitPolicy | None:
        """Medplum's FHIR quota (`"fhirInteractions"`), when reported."""
        return self.policy("fhirInteractions")

    @property
    def requests(self) -> RateLimitPolicy | None:
        """Medplum's request-count limit (`"requests"`), when reported."""
        return self.policy("requests")

    @property
    def exhausted(self) -> bool:
        """Whether any reported limit has no units left."""
        return any(p.exhausted for p in self.policies)

    @property
    def most_constrained(self) -> RateLimitPolicy | None:
        """The policy with the fewest units left (the longest reset breaks a tie)."""
        if not self.policies:
            return None
        return min(self.policies, key=lambda p: (p.remaining, -p.reset_seconds))

    def resets_at(self, name: str) -> datetime | None:
        """When the named policy's window resets (UTC), or None when it was not reported."""
        policy = self.policy(name)
        if policy is None:
            return None
        return self.observed_at + timedelta(seconds=policy.reset_seconds)

    def __repr__(self) -> str:
        shown = ", ".join(f"{p.name}: r={p.remaining} t={p.reset_seconds}" for p in self.policies)
        return f"<RateLimitStatus {shown or 'no policies'}>"


def _number(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value)


def parse_rate_limit_header(value: str) -> tuple[RateLimitPolicy, ...]:
    """The policies of a `RateLimit` header (repeated headers joined with commas).

    The `r`/`t` parameters are read with the same grammar as the retry logic's
    (`pymedplum._retry`); an item without both is left out.
    """
    policies: list[RateLimitPolicy] = []
    for match in _ITEM.finditer(value):
        quoted, token, params = match.groups()
        name = quoted if quoted is not None else token
        if not name:
            continue
        found = dict(_retry._RATE_LIMIT_PARAM.findall(params or ""))
        remaining, reset = _number(found.get("r")), _number(found.get("t"))
        if remaining is None or reset is None:
            continue
        policies.append(RateLimitPolicy(name.replace('\\"', '"'), remaining, max(reset, 0)))
    return tuple(policies)


def status_from(recorded: tuple[str, float] | None) -> RateLimitStatus | None:
    """The status for the client's last recorded `(header, epoch seconds)`, or None."""
    if recorded is None:
        return None
    header, observed_at = recorded
    observed = datetime.fromtimestamp(observed_at, UTC)
    return RateLimitStatus(parse_rate_limit_header(header), observed, header)
