"""Live changes from Medplum over its WebSocket subscriptions.

    async with client.subscribe("Observation?subject=Patient/123") as events:
        async for event in events:
            print(event.resource_type, event.resource_id, event.version_id)

`client.subscribe(...)` returns an `AsyncSubscriptionStream` (async client) or a
`SubscriptionStream` (sync client); both yield `SubscriptionEvent`s. See
docs/subscriptions.md. Needs the `websockets` package: `pip install 'pymedplum[subscriptions]'`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pymedplum.exceptions import MedplumError

if TYPE_CHECKING:
    from pymedplum._async.subscriptions import AsyncSubscriptionStream as AsyncSubscriptionStream
    from pymedplum._sync.subscriptions import SubscriptionStream as SubscriptionStream

__all__ = [
    "AsyncSubscriptionStream",
    "SubscriptionError",
    "SubscriptionEvent",
    "SubscriptionStream",
]

R = TypeVar("R")

EventSource = Literal["notification", "catch-up"]


class SubscriptionError(MedplumError):
    """The subscription protocol failed: the server refused a binding token, or answered
    something that is not Medplum's protocol. REST failures raise the usual exceptions."""

    def __init__(self, message: str, *, outcome: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        #: The OperationOutcome the server sent on the socket, if any (may echo input).
        self.outcome = outcome


@dataclass(frozen=True, slots=True, repr=False)
class SubscriptionEvent(Generic[R]):
    """One change of a resource matching a subscription's criteria.

    Attributes:
        resource: the resource as it is after the change: a dict, or the `as_fhir` model.
        resource_type, resource_id: which resource changed.
        version_id, last_updated: its `meta.versionId` and `meta.lastUpdated`.
        source: `"notification"` when the server pushed it on the socket; `"catch-up"` when
            the search run after a reconnect found it (the socket was down when it changed).
        subscription_id: the Subscription whose notification carried it (None for catch-up).
        timestamp: when the server sent the notification (None for catch-up).

    Each version of a resource is delivered once. `repr()` names the resource, never its
    content.
    """

    resource: R
    resource_type: str
    resource_id: str
    version_id: str | None
    last_updated: str | None
    source: EventSource
    subscription_id: str | None = None
    timestamp: str | None = None

    def __repr__(self) -> str:
        return (
            f"SubscriptionEvent({self.resource_type}/{self.resource_id}, "
            f"version_id={self.version_id!r}, source={self.source!r})"
        )


_STREAMS = {
    "AsyncSubscriptionStream": "pymedplum._async.subscriptions",
    "SubscriptionStream": "pymedplum._sync.subscriptions",
}


def __getattr__(name: str) -> Any:
    module = _STREAMS.get(name)
    if module is None:
        raise AttributeError(f"module 'pymedplum.subscriptions' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
