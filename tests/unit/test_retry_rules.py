"""Pure retry decisions: Retry-After, RateLimit, backoff, replay safety."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from pymedplum import _retry
from pymedplum._retry import (
    MAX_BACKOFF_SECONDS,
    MAX_RETRY_DELAY_SECONDS,
    backoff_delay,
    delay_after_status,
    delay_after_transport_error,
    is_replay_safe,
    parse_rate_limit,
    parse_retry_after,
    was_sent,
)

NOW = datetime(2026, 11, 21, 5, 26, 23, tzinfo=UTC)


def test_retry_after_seconds() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5


def test_retry_after_http_date_is_seconds_from_now() -> None:
    value = format_datetime(NOW + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(value, now=NOW.timestamp()) == pytest.approx(42.0)


def test_retry_after_date_in_the_past_is_zero() -> None:
    value = format_datetime(NOW - timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(value, now=NOW.timestamp()) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "nan"])
def test_retry_after_unreadable_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_rate_limit_exhausted_policy_gives_its_reset() -> None:
    # Exactly what Medplum sent with its 429 (rate-limit.yaml), joined as httpx joins them.
    assert parse_rate_limit('"requests";r=59920;t=60, "fhirInteractions";r=0;t=60') == 60.0


def test_rate_limit_with_quota_left_gives_nothing() -> None:
    assert parse_rate_limit('"requests";r=59999;t=60, "fhirInteractions";r=49900;t=60') is None


def test_rate_limit_longest_exhausted_reset_wins() -> None:
    assert parse_rate_limit('"a";r=0;t=5, "b";r=0;t=12, "c";r=3;t=99') == 12.0


def test_retry_after_preferred_over_rate_limit() -> None:
    headers = httpx.Headers({"retry-after": "3", "ratelimit": '"x";r=0;t=60'})
    assert _retry.server_delay(headers) == 3.0


def test_backoff_is_exponential_then_capped() -> None:
    lows = [backoff_delay(n, rand=lambda: 0.0) for n in range(8)]
    highs = [backoff_delay(n, rand=lambda: 1.0) for n in range(8)]
    assert highs[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(highs) == MAX_BACKOFF_SECONDS
    assert all(low == high / 2 for low, high in zip(lows, highs, strict=True))


def test_backoff_jitter_varies_within_bounds() -> None:
    values = {backoff_delay(2) for _ in range(50)}
    assert len(values) > 1
    assert all(1.0 <= v <= 2.0 for v in values)


def test_429_honours_server_delay_below_cap() -> None:
    headers = httpx.Headers({"retry-after": "2"})
    assert delay_after_status(429, headers, replay_safe=False, retries_done=0) == 2.0


def test_429_server_delay_is_capped() -> None:
    headers = httpx.Headers({"retry-after": "86400"})
    delay = delay_after_status(429, headers, replay_safe=False, retries_done=0)
    assert delay == MAX_RETRY_DELAY_SECONDS


def test_429_without_hint_backs_off() -> None:
    delay = delay_after_status(
        429, httpx.Headers(), replay_safe=False, retries_done=1, rand=lambda: 1
    )
    assert delay == 1.0


def test_503_honours_server_delay_below_cap_when_replay_safe() -> None:
    headers = httpx.Headers({"retry-after": "7"})
    assert delay_after_status(503, headers, replay_safe=True, retries_done=0) == 7.0


def test_503_server_delay_is_capped() -> None:
    headers = httpx.Headers({"retry-after": "600"})
    delay = delay_after_status(503, headers, replay_safe=True, retries_done=0)
    assert delay == MAX_RETRY_DELAY_SECONDS


def test_503_server_delay_does_not_make_a_write_replayable() -> None:
    headers = httpx.Headers({"retry-after": "7"})
    assert delay_after_status(503, headers, replay_safe=False, retries_done=0) is None


@pytest.mark.parametrize("status", [502, 504])
def test_502_and_504_ignore_a_server_delay(status: int) -> None:
    headers = httpx.Headers({"retry-after": "7"})
    delay = delay_after_status(status, headers, replay_safe=True, retries_done=0, rand=lambda: 1)
    assert delay == backoff_delay(0, rand=lambda: 1)


def test_retries_stop_at_the_limit() -> None:
    assert delay_after_status(429, httpx.Headers(), replay_safe=True, retries_done=3) is None


@pytest.mark.parametrize("status", [502, 503, 504])
def test_ambiguous_status_replayed_only_when_replay_safe(status: int) -> None:
    assert delay_after_status(status, httpx.Headers(), replay_safe=True, retries_done=0)
    assert delay_after_status(status, httpx.Headers(), replay_safe=False, retries_done=0) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 412, 500])
def test_other_errors_are_not_retried(status: int) -> None:
    assert delay_after_status(status, httpx.Headers(), replay_safe=True, retries_done=0) is None


def test_replay_safety_by_method_and_conditional_create() -> None:
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        assert is_replay_safe(method, {})
    assert not is_replay_safe("POST", {})
    assert not is_replay_safe("PATCH", {})
    assert is_replay_safe("POST", {"If-None-Exist": "identifier=a|1"})
    assert not is_replay_safe("POST", {"If-None-Exist": "  "})


@pytest.mark.parametrize("name", ["if-none-exist", "IF-NONE-EXIST"])
def test_a_conditional_create_is_replay_safe_in_any_header_spelling(name: str) -> None:
    # A caller's own `headers=` keep their spelling; a plain dict is case-sensitive.
    assert is_replay_safe("POST", {name: "identifier=a|1"})


def test_connect_failures_were_not_sent_and_retry_for_any_method() -> None:
    exc = httpx.ConnectError("refused")
    assert not was_sent(exc)
    assert delay_after_transport_error(exc, replay_safe=False, retries_done=0) is not None


def test_lost_connection_after_sending_replays_only_safe_requests() -> None:
    for exc in (
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("gone"),
        httpx.ReadTimeout("t"),
    ):
        assert was_sent(exc)
        assert delay_after_transport_error(exc, replay_safe=False, retries_done=0) is None
        assert delay_after_transport_error(exc, replay_safe=True, retries_done=0) is not None
