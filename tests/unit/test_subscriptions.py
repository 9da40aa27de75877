"""The subscription protocol and its exactly-once bookkeeping, without I/O."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from pymedplum import (
    InsecureTransportError,
    SubscriptionError,
    SubscriptionEvent,
    UnsafeRedirectError,
    _subscriptions,
)
from pymedplum._security import origin_of
from pymedplum._subscriptions import Ledger, Liveness, TokenSchedule
from pymedplum._websocket import _wire_logger

HTTPS = origin_of("https://api.medplum.com/")
LOOPBACK = origin_of("http://127.0.0.1:8103/")


def observation(oid: str, version: str, updated: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"versionId": version, "lastUpdated": updated},
    }


# ---------------------------------------------------------------- criteria


def test_criteria_are_split_into_type_and_parameters() -> None:
    criteria = _subscriptions.parse_criteria("Observation?subject=Patient/123&code=8867-4")
    assert criteria.resource_type == "Observation"
    assert criteria.params == (("subject", "Patient/123"), ("code", "8867-4"))
    assert _subscriptions.parse_criteria("Patient").params == ()


@pytest.mark.parametrize("bad", ["", "?name=x", "observation?x=1", "Patient\n?x=1", "Pat ient"])
def test_criteria_without_a_resource_type_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        _subscriptions.parse_criteria(bad)


def test_catch_up_searches_last_updated_oldest_first_replacing_paging_controls() -> None:
    criteria = _subscriptions.parse_criteria("Observation?subject=Patient/1&_count=5&_sort=-date")
    pairs = _subscriptions.catch_up_query(criteria, "2026-01-01T00:00:00.000Z")
    assert pairs == [
        ("subject", "Patient/1"),
        ("_lastUpdated", "ge2026-01-01T00:00:00.000Z"),
        ("_sort", "_lastUpdated"),
        ("_count", _subscriptions.CATCH_UP_PAGE_SIZE),
    ]


def test_the_subscription_resource_has_a_websocket_channel() -> None:
    body = _subscriptions.subscription_resource(_subscriptions.parse_criteria("Patient?name=a"))
    assert body["resourceType"] == "Subscription"
    assert body["status"] == "active"
    assert body["criteria"] == "Patient?name=a"
    assert body["channel"] == {"type": "websocket"}
    assert body["reason"]


# ---------------------------------------------------------------- binding token and socket URL


def binding_parameters(**overrides: object) -> dict[str, object]:
    values = {
        "token": {"name": "token", "valueString": "secret-binding-token"},
        "expiration": {"name": "expiration", "valueDateTime": "2026-01-01T01:00:00.000Z"},
        "websocket-url": {"name": "websocket-url", "valueUrl": "wss://api.medplum.com/ws/x"},
    }
    values.update(overrides)  # type: ignore[arg-type]
    return {"resourceType": "Parameters", "parameter": [v for v in values.values() if v]}


def test_a_binding_is_read_from_the_operation_parameters_and_never_shows_its_token() -> None:
    binding = _subscriptions.read_binding(binding_parameters())
    assert binding.token == "secret-binding-token"
    assert binding.url == "wss://api.medplum.com/ws/x"
    assert binding.expiration == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert "secret-binding-token" not in repr(binding)


@pytest.mark.parametrize("missing", ["token", "websocket-url"])
def test_a_binding_without_token_or_url_is_a_subscription_error(missing: str) -> None:
    with pytest.raises(SubscriptionError, match=missing):
        _subscriptions.read_binding(binding_parameters(**{missing: None}))
    with pytest.raises(SubscriptionError):
        _subscriptions.read_binding({"resourceType": "OperationOutcome"})


def test_an_https_client_binds_only_over_wss_on_its_own_origin() -> None:
    url = "wss://api.medplum.com/ws/subscriptions-r4"
    assert _subscriptions.check_websocket_url(url, HTTPS) == url
    assert _subscriptions.check_websocket_url("wss://API.medplum.com:443/ws", HTTPS)
    with pytest.raises(InsecureTransportError):
        _subscriptions.check_websocket_url("ws://api.medplum.com/ws/subscriptions-r4", HTTPS)
    with pytest.raises(UnsafeRedirectError, match="evil.example"):
        _subscriptions.check_websocket_url("wss://evil.example/ws/subscriptions-r4", HTTPS)
    with pytest.raises(UnsafeRedirectError):
        _subscriptions.check_websocket_url("wss://api.medplum.com:8443/ws", HTTPS)
    with pytest.raises(SubscriptionError):
        _subscriptions.check_websocket_url("https://api.medplum.com/ws", HTTPS)


def test_a_loopback_http_client_binds_over_ws_on_the_same_port() -> None:
    assert _subscriptions.check_websocket_url("ws://127.0.0.1:8103/ws/subscriptions-r4", LOOPBACK)
    with pytest.raises(UnsafeRedirectError):
        _subscriptions.check_websocket_url("ws://127.0.0.1:9999/ws/subscriptions-r4", LOOPBACK)


def test_the_bind_message_is_medplums() -> None:
    assert json.loads(_subscriptions.bind_message("t")) == {
        "type": "bind-with-token",
        "payload": {"token": "t"},
    }
    assert json.loads(_subscriptions.PING_MESSAGE) == {"type": "ping"}


# ---------------------------------------------------------------- messages


def status_bundle(kind: str, *extra: dict[str, object]) -> bytes:
    status = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": kind,
        "subscription": {"reference": "Subscription/sub-1"},
    }
    entries = [{"resource": status}, *extra]
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": "2026-01-01T00:00:05.000Z",
        "entry": entries,
    }
    return json.dumps(bundle).encode()


def test_messages_are_classified() -> None:
    parse = _subscriptions.parse_message
    assert parse(b'{"type":"pong"}').kind == "pong"
    handshake = parse(status_bundle("handshake"))
    assert (handshake.kind, handshake.subscription_id) == ("handshake", "sub-1")
    assert handshake.timestamp == "2026-01-01T00:00:05.000Z"
    assert parse(status_bundle("heartbeat")).kind == "heartbeat"
    error = parse(b'{"resourceType":"OperationOutcome","issue":[{"code":"invalid"}]}')
    assert error.kind == "error" and error.outcome is not None
    for junk in (b"not json", b"[1]", b'{"resourceType":"Patient"}', status_bundle("query-event")):
        assert parse(junk).kind == "other"


def test_a_notification_carries_the_resource_with_exact_decimals() -> None:
    resource = {"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": 1.50}}
    raw = status_bundle("event-notification", {"resource": resource}).replace(b"1.5", b"1.50")
    message = _subscriptions.parse_message(raw)
    assert message.kind == "notification"
    assert message.subscription_id == "sub-1"
    assert message.resource is not None
    assert str(message.resource["valueQuantity"]["value"]) == "1.50"
    assert _subscriptions.parse_message(status_bundle("event-notification")).resource is None


# ---------------------------------------------------------------- the ledger


def test_each_version_is_accepted_once() -> None:
    ledger = Ledger(margin=30)
    first = observation("o1", "v1", "2026-01-01T00:00:01.000Z")
    assert ledger.accept(first)
    assert not ledger.accept(dict(first))
    assert ledger.accept(observation("o1", "v2", "2026-01-01T00:00:02.000Z"))
    assert ledger.accept(observation("o2", "v1", "2026-01-01T00:00:01.000Z"))


def test_a_version_older_than_one_delivered_is_superseded() -> None:
    ledger = Ledger(margin=30)
    assert ledger.accept(observation("o1", "v2", "2026-01-01T00:00:02.000Z"))
    assert not ledger.accept(observation("o1", "v1", "2026-01-01T00:00:01.000Z"))


def test_catch_up_starts_the_margin_before_the_newest_server_time() -> None:
    ledger = Ledger(margin=30)
    assert ledger.catch_up_since() is None
    ledger.observe("2026-01-01T00:01:00.000Z")
    ledger.observe("2026-01-01T00:00:10+00:00")  # older: ignored
    ledger.observe(None)
    assert ledger.catch_up_since() == "2026-01-01T00:00:30.000Z"


def test_the_ledger_forgets_versions_far_behind_the_server_time() -> None:
    ledger = Ledger(margin=10)
    ledger.observe("2026-01-01T01:00:00.000Z")
    old = observation("old", "v1", "2026-01-01T00:00:00.000Z")
    assert ledger.accept(old)
    for i in range(999):
        assert ledger.accept(observation(f"n{i}", "v1", "2026-01-01T00:59:59.000Z"))
    assert len(ledger) == 999  # the 1000th accept pruned "old"
    assert ledger.accept(old)


# ---------------------------------------------------------------- keepalive and token renewal


def test_a_quiet_socket_is_pinged_and_declared_dead_when_the_pong_never_comes() -> None:
    live = Liveness(interval=10, now=0)
    assert live.wait(0) == 10
    assert live.on_quiet(5) == "wait"
    assert live.on_quiet(10) == "ping"
    assert live.wait(12) == 8
    assert live.on_quiet(19) == "wait"
    assert live.on_quiet(20) == "dead"


def test_a_pong_keeps_the_socket_alive() -> None:
    live = Liveness(interval=10, now=0)
    assert live.on_quiet(10) == "ping"
    live.on_pong()
    assert live.on_quiet(19) == "wait"
    assert live.on_quiet(20) == "ping"


def test_a_token_is_renewed_five_minutes_before_expiry_or_halfway() -> None:
    expires = datetime(2026, 1, 1, 1, tzinfo=UTC)
    hour = TokenSchedule(expires, "2026-01-01T00:00:00.000Z", received_at=100.0)
    assert hour.renew_at == 100.0 + 3600 - 300
    # Counted as expired a second early: a JWT's exp is whole seconds.
    assert hour.expires_at == 100.0 + 3600 - 1
    short = TokenSchedule(
        datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC), "2026-01-01T00:00:00Z", received_at=0.0
    )
    assert (short.renew_at, short.expires_at) == (2.0, 3.0)
    assert not short.due(1.9) and short.due(2.0) and not short.expired(2.9)
    assert short.expired(3.0)
    assert TokenSchedule(None, None, 0.0).renew_at == float("inf")


def test_a_renewal_waiting_for_its_handshake_is_retried() -> None:
    waiting = TokenSchedule.awaiting_handshake(100.0, expired=False)
    assert waiting.renew_at == 100.0 + _subscriptions.BIND_TIMEOUT_SECONDS
    assert not waiting.expired(100.0)
    assert TokenSchedule.awaiting_handshake(100.0, expired=True).expired(100.0)


def test_reconnect_delays_grow_with_jitter_up_to_the_cap() -> None:
    delay = _subscriptions.reconnect_delay
    assert delay(0, rand=lambda: 0.0) == 0.25
    assert delay(0, rand=lambda: 1.0) == 0.5
    assert delay(3, rand=lambda: 1.0) == 4.0
    assert delay(50, maximum=30.0, rand=lambda: 1.0) == 30.0
    assert delay(50, maximum=30.0, rand=lambda: 0.0) == 15.0


# ---------------------------------------------------------------- what users and logs see


def test_an_event_repr_names_the_resource_not_its_content() -> None:
    event = SubscriptionEvent(
        resource={"resourceType": "Patient", "id": "p1", "name": [{"family": "Secret"}]},
        resource_type="Patient",
        resource_id="p1",
        version_id="v1",
        last_updated=None,
        source="notification",
    )
    assert "Secret" not in repr(event)
    assert "Patient/p1" in repr(event)
    with pytest.raises(AttributeError):
        event.resource_id = "p2"  # type: ignore[misc]


def test_websocket_frame_logs_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pymedplum.websocket"):
        _wire_logger.debug("> %s", 'TEXT \'{"type":"bind-with-token"...\'')
        _wire_logger.debug("< %s", 'TEXT \'{"resourceType":"Bundle"...\'')
        _wire_logger.debug("= connection is %s", "OPEN")
    assert "bind-with-token" not in caplog.text
    assert "Bundle" not in caplog.text
    assert "connection is OPEN" in caplog.text
