"""WebSocket subscriptions without I/O: Medplum's protocol, and the bookkeeping that makes
a reconnecting stream deliver every change exactly once.

Medplum's protocol (server `subscriptions/websockets.ts`, `operations/getwsbindingtoken.ts`):

1. create a Subscription `{criteria, channel: {type: "websocket"}}` (REST);
2. `GET Subscription/{id}/$get-ws-binding-token`: Parameters `token`, `expiration` (one
   hour) and `websocket-url` (`wss://<server>/ws/subscriptions-r4`);
3. open the socket and send `{"type": "bind-with-token", "payload": {"token": ...}}`: the
   server answers a handshake Bundle, then sends a heartbeat Bundle every 10 s and an
   event-notification Bundle (a SubscriptionStatus, then the resource) per matching change;
   `{"type": "ping"}` is answered `{"type": "pong"}`;
4. the server drops a Subscription when its socket closes, and stops notifying a binding
   whose token expired: a reconnect needs a new Subscription, a long stream a new token.

Changes made while no socket was bound are found by a search on `_lastUpdated` from a
little before the newest server time seen (`Ledger.catch_up_since`); the ledger drops what
was already delivered (same id and versionId) and what an event delivered since superseded.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pymedplum import _json
from pymedplum._security import Origin, origin_of
from pymedplum.exceptions import InsecureTransportError, UnsafeRedirectError
from pymedplum.subscriptions import SubscriptionError

__all__ = [
    "BIND_TIMEOUT_SECONDS",
    "Binding",
    "Criteria",
    "Ledger",
    "Liveness",
    "Message",
    "PING_MESSAGE",
    "TokenSchedule",
    "bind_message",
    "catch_up_query",
    "check_websocket_url",
    "parse_criteria",
    "parse_message",
    "read_binding",
    "reconnect_delay",
    "subscription_resource",
]

#: What the Subscription resources this SDK creates give as their reason.
REASON = "pymedplum WebSocket subscription"
PING_MESSAGE = '{"type":"ping"}'
#: How long to wait for the handshake after sending a binding token.
BIND_TIMEOUT_SECONDS = 30.0
#: Renew a binding token this long before it expires (Medplum's client: 5 minutes), or
#: halfway through its lifetime when that is shorter.
TOKEN_RENEWAL_LEAD_SECONDS = 300.0
#: Count a binding token as expired this much before its stated expiration (a JWT's `exp`
#: is in whole seconds and may come before the `expiration` parameter).
TOKEN_EXPIRY_SLACK_SECONDS = 1.0
#: Results per catch-up search page.
CATCH_UP_PAGE_SIZE = 100
#: Query parameters of the criteria that a catch-up search replaces.
_CATCH_UP_CONTROLS = frozenset({"_count", "_offset", "_sort", "_summary", "_total", "_elements"})

_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
_WS_SCHEMES = {"ws": "http", "wss": "https"}


# ---------------------------------------------------------------- criteria and REST bodies


@dataclass(frozen=True, slots=True)
class Criteria:
    """A subscription's search criteria, `Observation?subject=Patient/123`, taken apart."""

    text: str
    resource_type: str
    params: tuple[tuple[str, str], ...]


def parse_criteria(criteria: str) -> Criteria:
    """Check and split FHIR search criteria (`Type` or `Type?name=value&...`)."""
    if not isinstance(criteria, str):
        raise TypeError(f"criteria must be a string, got {type(criteria).__name__}")
    text = criteria.strip()
    if "\r" in text or "\n" in text:
        raise ValueError("criteria must not contain line breaks")
    resource_type, _, query = text.partition("?")
    if not _RESOURCE_TYPE.match(resource_type):
        raise ValueError(
            "criteria must start with a resource type, as in 'Observation?subject=Patient/123'"
        )
    params = tuple(parse_qsl(query, keep_blank_values=True))
    return Criteria(text, resource_type, params)


def subscription_resource(criteria: Criteria) -> dict[str, Any]:
    """The Subscription a stream creates (Medplum keeps websocket ones in its cache only)."""
    return {
        "resourceType": "Subscription",
        "status": "active",
        "reason": REASON,
        "criteria": criteria.text,
        "channel": {"type": "websocket"},
    }


def catch_up_query(criteria: Criteria, since: str) -> list[tuple[str, Any]]:
    """The search for what matched the criteria and changed at or after `since`, oldest first."""
    pairs: list[tuple[str, Any]] = [
        (k, v) for k, v in criteria.params if k not in _CATCH_UP_CONTROLS
    ]
    pairs += [
        ("_lastUpdated", f"ge{since}"),
        ("_sort", "_lastUpdated"),
        ("_count", CATCH_UP_PAGE_SIZE),
    ]
    return pairs


# ---------------------------------------------------------------- binding token


@dataclass(frozen=True, slots=True)
class Binding:
    """What `$get-ws-binding-token` returned. The token is a credential: never shown."""

    token: str = field(repr=False)
    url: str
    expiration: datetime | None

    def __repr__(self) -> str:
        return f"Binding(url={self.url!r}, expiration={self.expiration!r})"


def _parameter(parameters: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for parameter in parameters.get("parameter") or ():
        if isinstance(parameter, Mapping) and parameter.get("name") == name:
            return parameter
    return None


def read_binding(parameters: Any) -> Binding:
    """The token, socket URL and expiry from `$get-ws-binding-token`'s Parameters."""
    if not isinstance(parameters, Mapping) or parameters.get("resourceType") != "Parameters":
        raise SubscriptionError("$get-ws-binding-token did not answer a Parameters resource")
    token = (_parameter(parameters, "token") or {}).get("valueString")
    url = (_parameter(parameters, "websocket-url") or {}).get("valueUrl")
    if not isinstance(token, str) or not token:
        raise SubscriptionError("$get-ws-binding-token answered no token")
    if not isinstance(url, str) or not url:
        raise SubscriptionError("$get-ws-binding-token answered no websocket-url")
    expiration = (_parameter(parameters, "expiration") or {}).get("valueDateTime")
    return Binding(token, url, parse_instant(expiration))


def check_websocket_url(url: str, expected: Origin) -> str:
    """Refuse a socket URL that is not on the client's origin, or not encrypted like it.

    An https server's socket must be `wss://` on the same host and port; `ws://` is
    accepted only where the client itself uses http (loopback or `allow_insecure_http`).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _WS_SCHEMES:
        raise SubscriptionError(f"websocket-url has scheme {scheme or 'none'!r}, not ws or wss")
    if expected[0] == "https" and scheme != "wss":
        raise InsecureTransportError(
            "the server gave an unencrypted ws:// URL for an https client; refusing to send "
            "the binding token over it"
        )
    as_http = _WS_SCHEMES[scheme] + url[len(parts.scheme) :]
    found = origin_of(as_http)
    if found != expected:
        raise UnsafeRedirectError(
            f"websocket-url points at {found[1]}:{found[2]}, not the client's origin "
            f"{expected[1]}:{expected[2]}; refusing to send the binding token there"
        )
    return url


def bind_message(token: str) -> str:
    """The message binding a socket to a Subscription."""
    return _json.dumps({"type": "bind-with-token", "payload": {"token": token}}).decode()


# ---------------------------------------------------------------- messages from the server


MessageKind = Literal["pong", "handshake", "heartbeat", "notification", "error", "other"]


@dataclass(frozen=True, slots=True)
class Message:
    """One message from the socket, classified.

    `resource` is the changed resource of a notification (None when the server sent only
    its reference); `outcome` the OperationOutcome of an error.
    """

    kind: MessageKind
    subscription_id: str | None = None
    timestamp: str | None = None
    resource: dict[str, Any] | None = field(default=None, repr=False)
    outcome: dict[str, Any] | None = field(default=None, repr=False)


def _subscription_id(status: Mapping[str, Any]) -> str | None:
    reference = (status.get("subscription") or {}).get("reference")
    if isinstance(reference, str) and reference.startswith("Subscription/"):
        return reference.removeprefix("Subscription/")
    return None


def parse_message(data: bytes | str) -> Message:
    """Classify a socket message (JSON); anything unreadable is `other`."""
    try:
        value = _json.loads(data)
    except ValueError:
        return Message("other")
    if not isinstance(value, dict):
        return Message("other")
    if value.get("type") == "pong":
        return Message("pong")
    if value.get("resourceType") == "OperationOutcome":
        return Message("error", outcome=value)
    if value.get("resourceType") != "Bundle":
        return Message("other")
    raw_timestamp = value.get("timestamp")
    timestamp = raw_timestamp if isinstance(raw_timestamp, str) else None
    entries = [e for e in value.get("entry") or () if isinstance(e, Mapping)]
    status = entries[0].get("resource") if entries else None
    if not isinstance(status, Mapping) or status.get("resourceType") != "SubscriptionStatus":
        return Message("other", timestamp=timestamp)
    kind = status.get("type")
    if kind in ("handshake", "heartbeat"):
        return Message(kind, _subscription_id(status), timestamp)
    if kind != "event-notification":
        return Message("other", timestamp=timestamp)
    resource = entries[1].get("resource") if len(entries) > 1 else None
    return Message(
        "notification",
        _subscription_id(status),
        timestamp,
        resource if isinstance(resource, dict) else None,
    )


# ---------------------------------------------------------------- times


def parse_instant(value: Any) -> datetime | None:
    """A FHIR instant as an aware datetime (None when absent or unreadable)."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_instant(value: datetime) -> str:
    """An instant for a search: UTC, milliseconds, `Z`."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def reconnect_delay(
    attempt: int,
    *,
    initial: float = 0.5,
    maximum: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before reconnect attempt `attempt` (from 0): capped doubling, equal jitter."""
    ceiling = min(initial * (2.0 ** min(attempt, 32)), maximum)
    return ceiling / 2 + rand() * ceiling / 2


# ---------------------------------------------------------------- what was delivered


class Ledger:
    """The newest server time seen and the latest version delivered of each resource.

    `accept` says whether a resource is news: not a version already delivered (the overlap
    between a catch-up search and the live socket), and not older than a version of it
    delivered since (a notification overtaken by a catch-up). Entries far older than the
    catch-up window are forgotten, so memory follows the recent changes only.
    """

    __slots__ = ("margin", "server_time", "_latest", "_accepted")

    def __init__(self, margin: float) -> None:
        self.margin = timedelta(seconds=margin)
        #: The newest server timestamp seen (handshakes, heartbeats, notifications).
        self.server_time: datetime | None = None
        self._latest: dict[str, tuple[str | None, datetime | None]] = {}
        self._accepted = 0

    def observe(self, sent_at: str | None) -> None:
        """Note a server timestamp: everything notified before it has been received."""
        timestamp = parse_instant(sent_at)
        if timestamp is not None and (self.server_time is None or timestamp > self.server_time):
            self.server_time = timestamp

    def catch_up_since(self) -> str | None:
        """Where a catch-up search starts: the newest server time seen, less the margin."""
        if self.server_time is None:
            return None
        return format_instant(self.server_time - self.margin)

    def accept(self, resource: Mapping[str, Any]) -> bool:
        """True the first time this version of this resource is seen, and only if newer."""
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        meta = resource.get("meta") or {}
        version = meta.get("versionId") if isinstance(meta, Mapping) else None
        updated = parse_instant(meta.get("lastUpdated")) if isinstance(meta, Mapping) else None
        known = self._latest.get(key)
        if known is not None:
            known_version, known_updated = known
            if version is not None and version == known_version:
                return False
            if updated is not None and known_updated is not None and updated < known_updated:
                return False
        self._latest[key] = (version, updated)
        self._accepted += 1
        if self._accepted % 1000 == 0:
            self._forget_old()
        return True

    def _forget_old(self) -> None:
        if self.server_time is None:
            return
        horizon = self.server_time - 2 * self.margin
        self._latest = {k: v for k, v in self._latest.items() if v[1] is None or v[1] >= horizon}

    def __len__(self) -> int:
        return len(self._latest)


# ---------------------------------------------------------------- keeping the socket alive


class Liveness:
    """When to ping, and when a socket that stopped answering is dead (no I/O, no clock).

    Medplum's own client pings every few seconds and reconnects when a ping went
    unanswered until the next one; the server answers every ping with a pong.
    """

    __slots__ = ("interval", "next_ping", "pong_due")

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.next_ping = now + interval
        self.pong_due: float | None = None

    def wait(self, now: float) -> float:
        """Seconds until something is due when nothing arrives."""
        due = self.pong_due if self.pong_due is not None else self.next_ping
        return max(0.0, due - now)

    def on_quiet(self, now: float) -> Literal["ping", "dead", "wait"]:
        """What to do after waiting in silence until `now`."""
        if self.pong_due is not None:
            return "dead" if now >= self.pong_due else "wait"
        if now >= self.next_ping:
            self.pong_due = now + self.interval
            self.next_ping = now + self.interval
            return "ping"
        return "wait"

    def on_pong(self) -> None:
        self.pong_due = None


class TokenSchedule:
    """When a binding token must be renewed, on the local monotonic clock.

    Anchored at the handshake: its server timestamp and the token's expiration give the
    lifetime left (both on the server's clock), counted from when the handshake arrived.
    """

    __slots__ = ("renew_at", "expires_at")

    def __init__(
        self, expiration: datetime | None, handshake_sent_at: str | None, received_at: float
    ) -> None:
        handshake = parse_instant(handshake_sent_at)
        if expiration is None or handshake is None:
            self.renew_at = self.expires_at = float("inf")
            return
        left = (expiration - handshake).total_seconds()
        self.renew_at = received_at + left - min(TOKEN_RENEWAL_LEAD_SECONDS, max(left, 0.0) / 2)
        self.expires_at = received_at + left - TOKEN_EXPIRY_SLACK_SECONDS

    @classmethod
    def awaiting_handshake(cls, now: float, *, expired: bool) -> TokenSchedule:
        """While a renewed token's handshake is outstanding: renew again if none comes."""
        schedule = cls(None, None, now)
        schedule.renew_at = now + BIND_TIMEOUT_SECONDS
        schedule.expires_at = now if expired else schedule.renew_at
        return schedule

    def due(self, now: float) -> bool:
        return now >= self.renew_at

    def expired(self, now: float) -> bool:
        """True when the server may already have stopped notifying this binding."""
        return now >= self.expires_at
