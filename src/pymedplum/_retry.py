"""Retry decisions, without I/O: which failures to replay, and how long to wait first.

Two rules govern replays:
- A 429 is a front-door rejection (nothing was processed), so every method is retried,
  after the server's requested delay (`Retry-After` in seconds or as an HTTP-date, or
  Medplum's `RateLimit: "fhirInteractions";r=0;t=60`), capped by MAX_RETRY_DELAY_SECONDS.
- A 502/503/504, or a connection lost after the request was sent, may arrive after the
  server committed a write. Those are replayed only for replay-safe requests (idempotent
  methods, or a conditional create); a plain POST is never replayed.
Connect-phase failures (the request never left) are retried for every method.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime

import httpx

__all__ = [
    "MAX_RETRY_DELAY_SECONDS",
    "MAX_RETRIES",
    "INITIAL_BACKOFF_SECONDS",
    "MAX_BACKOFF_SECONDS",
    "backoff_delay",
    "parse_retry_after",
    "parse_rate_limit",
    "server_delay",
    "delay_after_status",
    "is_retried_status",
    "delay_after_transport_error",
    "was_sent",
    "is_replay_safe",
    "AttemptTimeout",
]

#: The longest the client waits before a retry, whatever the server asks for.
MAX_RETRY_DELAY_SECONDS = 60.0
#: Retries after the first attempt (so at most MAX_RETRIES + 1 wire attempts).
MAX_RETRIES = 3
INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Statuses where the server may or may not have acted on the request.
AMBIGUOUS_STATUSES = frozenset({502, 503, 504})
# Transport failures that provably happened before a byte of the request left.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NEVER_SENT_OTHER = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)


class AttemptTimeout(httpx.TimeoutException):
    """An attempt ran past the client's `timeout`, which bounds the whole attempt (sending,
    waiting and reading the body), not each network read. The request may have been sent."""


_RATE_LIMIT_PARAM = re.compile(r";\s*([a-z]+)\s*=\s*([^;,\s]+)")


def is_replay_safe(method: str, headers: Mapping[str, str]) -> bool:
    """Whether replaying this request after an ambiguous failure cannot duplicate a write.

    Idempotent methods are; a POST is only when it is a conditional create
    (`If-None-Exist` with a query: the replay finds what the first attempt made).
    """
    if method in IDEMPOTENT_METHODS:
        return True
    if method == "POST":
        return any(k.lower() == "if-none-exist" and v.strip() for k, v in headers.items())
    return False


def backoff_delay(retry_number: int, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter: half fixed, half random ("equal jitter").

    `retry_number` counts from 0 for the first retry.
    """
    ceiling = min(INITIAL_BACKOFF_SECONDS * (2.0**retry_number), MAX_BACKOFF_SECONDS)
    return ceiling / 2 + rand() * ceiling / 2


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value: delay-seconds or an HTTP-date.

    `now` is the current Unix time (for the date form). None when absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is always GMT
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if seconds != seconds or seconds < 0:  # NaN or negative: not a delay
        return None
    return seconds


def parse_rate_limit(value: str | None) -> float | None:
    """Seconds until an exhausted quota resets, from the `RateLimit` header.

    Medplum sends one item per policy (`"requests";r=59920;t=60, "fhirInteractions";r=0;t=60`,
    httpx joins repeated headers with commas). Only a policy with no remaining quota
    (`r=0`) says how long to wait; the longest such `t` wins. None when nothing is exhausted.
    """
    if not value:
        return None
    longest: float | None = None
    for item in value.split(","):
        params = dict(_RATE_LIMIT_PARAM.findall(item))
        try:
            remaining = float(params["r"])
            reset = float(params["t"])
        except (KeyError, ValueError):
            continue
        if remaining <= 0 and reset >= 0 and (longest is None or reset > longest):
            longest = reset
    return longest


def server_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The delay the server asked for, uncapped: `Retry-After` first, then `RateLimit`."""
    delay = parse_retry_after(headers.get("retry-after"), now)
    if delay is None:
        delay = parse_rate_limit(headers.get("ratelimit"))
    return delay


def is_retried_status(status: int, *, replay_safe: bool) -> bool:
    """Whether a call answered `status` is retried (while retries are left): the statuses
    `delay_after_status` waits after."""
    return status == 429 or (status in AMBIGUOUS_STATUSES and replay_safe)


def delay_after_status(
    status: int,
    headers: Mapping[str, str],
    *,
    replay_safe: bool,
    retries_done: int,
    max_retries: int = MAX_RETRIES,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """How long to wait before replaying after `status`, or None to stop here."""
    if retries_done >= max_retries:
        return None
    if status == 429:
        requested = server_delay(headers)
        if requested is None:
            return backoff_delay(retries_done, rand)
        return min(requested, MAX_RETRY_DELAY_SECONDS)
    if status in AMBIGUOUS_STATUSES and replay_safe:
        requested = server_delay(headers) if status == 503 else None
        if requested is not None:
            return min(requested, MAX_RETRY_DELAY_SECONDS)
        return backoff_delay(retries_done, rand)
    return None


def was_sent(exc: httpx.RequestError) -> bool:
    """Whether the request may have reached the server before this failure."""
    return not isinstance(exc, _NOT_SENT + _NEVER_SENT_OTHER)


def delay_after_transport_error(
    exc: httpx.TransportError,
    *,
    replay_safe: bool,
    retries_done: int,
    max_retries: int = MAX_RETRIES,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """How long to wait before replaying after a transport failure, or None to stop."""
    if retries_done >= max_retries or isinstance(exc, _NEVER_SENT_OTHER):
        return None
    if isinstance(exc, _NOT_SENT) or replay_safe:
        return backoff_delay(retries_done, rand)
    return None
