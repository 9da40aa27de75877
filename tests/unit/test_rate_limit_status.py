"""Medplum's RateLimit header parsed into RateLimitStatus (no client, no I/O)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from pymedplum._ratelimit import (
    RateLimitPolicy,
    RateLimitStatus,
    parse_rate_limit_header,
    status_from,
)

SEEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def names(value: str) -> list[tuple[str, int, int]]:
    return [(p.name, p.remaining, p.reset_seconds) for p in parse_rate_limit_header(value)]


def test_medplums_two_policies_as_documented() -> None:
    assert names('"requests";r=59999;t=60, "fhirInteractions";r=49894;t=60') == [
        ("requests", 59999, 60),
        ("fhirInteractions", 49894, 60),
    ]


def test_the_fhir_quota_alone_as_the_server_sends_it() -> None:
    assert names('"fhirInteractions";r=0;t=60') == [("fhirInteractions", 0, 60)]


def test_repeated_headers_joined_by_httpx() -> None:
    joined = '"requests";r=59947;t=60, "fhirInteractions";r=46231;t=60'
    assert [n for n, _, _ in names(joined)] == ["requests", "fhirInteractions"]


def test_whitespace_token_names_and_parameter_order() -> None:
    assert names(' requests ; t=5 ; r=7 ,"a,b";r=1;t=2') == [("requests", 7, 5), ("a,b", 1, 2)]


@pytest.mark.parametrize(
    "value",
    ["", "garbage", '"x";r=1', '"x";t=1', '"x";r=abc;t=1', '"x";r=nan;t=1', ";r=1;t=2"],
)
def test_items_without_both_numbers_are_left_out(value: str) -> None:
    assert parse_rate_limit_header(value) == ()


def test_a_negative_reset_is_read_as_zero() -> None:
    assert names('"x";r=3;t=-4') == [("x", 3, 0)]


def test_status_from_nothing_recorded_is_none() -> None:
    assert status_from(None) is None


def test_status_keeps_the_header_and_when_it_was_seen() -> None:
    header = '"requests";r=10;t=60, "fhirInteractions";r=0;t=30'
    status = status_from((header, SEEN.timestamp()))
    assert status is not None
    assert status.header == header and status.observed_at == SEEN
    assert status.requests == RateLimitPolicy("requests", 10, 60)
    assert status.fhir_interactions == RateLimitPolicy("fhirInteractions", 0, 30)
    assert status.policy("other") is None
    assert status.exhausted and status.fhir_interactions.exhausted
    assert not status.requests.exhausted
    assert status.most_constrained == status.fhir_interactions
    assert status.resets_at("fhirInteractions") == SEEN + timedelta(seconds=30)
    assert status.resets_at("other") is None


def test_an_empty_status_has_no_constraint() -> None:
    status = RateLimitStatus((), SEEN, "junk")
    assert status.most_constrained is None and not status.exhausted
    assert "no policies" in repr(status)


def test_status_is_frozen_and_slotted() -> None:
    status = RateLimitStatus((RateLimitPolicy("requests", 1, 2),), SEEN, "h")
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.header = "x"  # type: ignore[misc]
    assert not hasattr(status, "__dict__")
    assert not hasattr(status.policies[0], "__dict__")
    assert repr(status) == "<RateLimitStatus requests: r=1 t=2>"
