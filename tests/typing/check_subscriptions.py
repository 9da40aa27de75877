"""Static typing checks of client.subscribe(), run by `mypy --strict`, never executed."""

from __future__ import annotations

from typing import Any, assert_type

from pymedplum import AsyncMedplumClient, MedplumClient, SubscriptionEvent
from pymedplum.fhir import Observation
from pymedplum.subscriptions import AsyncSubscriptionStream, SubscriptionStream


def sync_stream(client: MedplumClient) -> None:
    stream = client.subscribe("Observation?subject=Patient/1")
    assert_type(stream, SubscriptionStream[dict[str, Any]])
    with stream as events:
        for event in events:
            assert_type(event, SubscriptionEvent[dict[str, Any]])
            assert_type(event.resource, dict[str, Any])
    for typed in client.subscribe("Observation", as_fhir=Observation, since="2026-01-01T00:00:00Z"):
        assert_type(typed.resource, Observation)
        assert_type(typed.version_id, str | None)
    client.subscribe(["Observation"])  # type: ignore[call-overload]


async def async_stream(client: AsyncMedplumClient) -> None:
    stream = client.subscribe(
        "Observation", as_fhir=Observation, on_behalf_of="ProjectMembership/a"
    )
    assert_type(stream, AsyncSubscriptionStream[Observation])
    async with stream as events:
        async for event in events:
            assert_type(event.resource, Observation)
    await stream.aclose()
