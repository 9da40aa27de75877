"""client.subscribe() end to end: both clients against the local server's WebSocket protocol.

Each test reads events one at a time with a deadline (a missing event fails the test rather
than hanging it). Changes are made while the stream is not being iterated: nothing runs
between two events, so what happens to the socket meanwhile is up to the test.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from pymedplum import SubscriptionError, SubscriptionEvent, UnsafeRedirectError, ValidationError
from pymedplum.fhir import Observation
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

EVENT_DEADLINE = 30.0


class Events:
    """A subscription stream of either client, read one event at a time with a deadline."""

    def __init__(self, driver: Driver, stream: Any) -> None:
        self.driver = driver
        self.stream = stream
        self._pool: ThreadPoolExecutor | None = None
        if driver.is_async:
            driver.run(stream.__aenter__())
            self._iterator: Any = stream.__aiter__()
        else:
            stream.__enter__()
            self._iterator = iter(stream)
            self._pool = ThreadPoolExecutor(1)

    def next(self) -> SubscriptionEvent[Any]:
        if self.driver.is_async:
            pending = asyncio.wait_for(self._iterator.__anext__(), EVENT_DEADLINE)
            return self.driver.loop.run_until_complete(pending)  # type: ignore[no-any-return]
        assert self._pool is not None
        return self._pool.submit(next, self._iterator).result(EVENT_DEADLINE)  # type: ignore[no-any-return]

    def take(self, count: int) -> list[SubscriptionEvent[Any]]:
        return [self.next() for _ in range(count)]

    def close(self) -> None:
        if self.driver.is_async:
            self.driver.run(self.stream.aclose())
            self.driver.run(self._iterator.aclose())
        else:
            self.stream.close()  # ends an iteration still waiting in the worker thread
            assert self._pool is not None
            self._pool.shutdown(wait=True)
            self._iterator.close()


@pytest.fixture
def subscribe(client: Driver) -> Iterator[Callable[..., Events]]:
    """Open a stream on the test's client (`subscribe(criteria, **kw)`); closed afterwards."""
    opened: list[Events] = []

    def open_stream(criteria: str, *, on: Driver | None = None, **kw: Any) -> Events:
        driver = on or client
        events = Events(driver, driver.client.subscribe(criteria, **kw))
        opened.append(events)
        return events

    yield open_stream
    for events in opened:
        events.close()


@pytest.fixture
def writer(medplum: LocalMedplumServer) -> Iterator[httpx.Client]:
    """Raw httpx as the admin client, for changes made while a stream is not iterated."""
    token = medplum.access_token()
    with httpx.Client(
        base_url=medplum.fhir_base_url,
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    ) as http:
        yield http


def create(http: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    response = http.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def update(http: httpx.Client, resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {**resource, **changes}
    response = http.put(f"{resource['resourceType']}/{resource['id']}", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def obs(patient: str, value: float = 1.0) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "heart rate"},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": value},
    }


def key(resource: dict[str, Any]) -> tuple[str, str]:
    return resource["id"], resource["meta"]["versionId"]


def event_key(event: SubscriptionEvent[Any]) -> tuple[str, str | None]:
    return event.resource_id, event.version_id


@pytest.fixture
def patient(writer: httpx.Client) -> str:
    return create(writer, {"resourceType": "Patient", "name": [{"family": "Subscriber"}]})["id"]


# ---------------------------------------------------------------- live notifications


def test_creates_and_updates_of_matching_resources_arrive_in_order(
    subscribe: Callable[..., Events], writer: httpx.Client, patient: str
) -> None:
    events = subscribe(f"Observation?subject=Patient/{patient}")
    first = create(writer, obs(patient, 60))
    create(writer, obs("someone-else", 70))  # does not match
    second = update(writer, first, valueQuantity={"value": 61})

    got = events.take(2)

    assert [event_key(e) for e in got] == [key(first), key(second)]
    assert all(e.source == "notification" for e in got)
    assert got[0].subscription_id == events.stream.subscription_id
    assert got[1].resource["valueQuantity"]["value"] == 61
    assert got[0].timestamp and got[0].last_updated == first["meta"]["lastUpdated"]


def test_as_fhir_gives_each_event_the_model(
    subscribe: Callable[..., Events], writer: httpx.Client, patient: str
) -> None:
    events = subscribe(f"Observation?subject=Patient/{patient}", as_fhir=Observation)
    created = create(writer, obs(patient, 1.5))
    event = events.next()
    assert isinstance(event.resource, Observation)
    assert event.resource.id == created["id"]


# ---------------------------------------------------------------- reconnecting without loss


def test_a_dropped_socket_loses_nothing_and_repeats_nothing(
    subscribe: Callable[..., Events],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
) -> None:
    events = subscribe(f"Observation?subject=Patient/{patient}")
    one, two = create(writer, obs(patient, 1)), create(writer, obs(patient, 2))
    before = events.take(2)
    first_subscription = events.stream.subscription_id

    assert medplum.drop_subscription_sockets() == 1
    # Made while no socket is bound: only the catch-up search can find these.
    three = create(writer, obs(patient, 3))
    one_again = update(writer, one, valueQuantity={"value": 11})
    create(writer, obs("someone-else", 4))
    four = create(writer, obs(patient, 4))
    caught_up = events.take(3)
    five = create(writer, obs(patient, 5))  # live again, on the new socket
    after = events.next()

    delivered = [event_key(e) for e in [*before, *caught_up, after]]
    assert delivered == [key(one), key(two), key(three), key(one_again), key(four), key(five)]
    assert [e.source for e in caught_up] == ["catch-up"] * 3
    assert after.source == "notification"
    assert events.stream.reconnects == 1
    assert events.stream.subscription_id != first_subscription
    state = medplum.subscriptions()
    assert [b["subscription_id"] for b in state["bindings"]] == [events.stream.subscription_id]
    # The dropped Subscription is gone (the server drops it; the stream deletes it too).
    old = writer.get(f"Subscription/{first_subscription}")
    assert old.status_code in (404, 410)


def test_a_socket_that_stops_answering_pings_is_replaced(
    subscribe: Callable[..., Events],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
) -> None:
    events = subscribe(f"Observation?subject=Patient/{patient}", ping_interval=0.2)
    one = create(writer, obs(patient, 1))
    assert event_key(events.next()) == key(one)

    medplum.drop_subscription_sockets("silence")  # open, but nothing comes back
    two = create(writer, obs(patient, 2))
    caught_up = events.next()
    three = create(writer, obs(patient, 3))
    live = events.next()

    assert (event_key(caught_up), caught_up.source) == (key(two), "catch-up")
    assert (event_key(live), live.source) == (key(three), "notification")
    assert events.stream.reconnects == 1


def test_a_failing_reconnect_is_retried_with_backoff(
    subscribe: Callable[..., Events],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
    no_sleep: list[float],
) -> None:
    events = subscribe(f"Observation?subject=Patient/{patient}")
    create(writer, obs(patient, 1))
    events.next()
    medplum.drop_subscription_sockets()
    # The next two Subscription creates fail (a plain POST 503 is not replayed).
    medplum.fail_next(503, count=2, method="POST", path_prefix="/fhir/R4/Subscription")
    two = create(writer, obs(patient, 2))

    assert event_key(events.next()) == key(two)
    assert events.stream.reconnects == 1
    assert len(no_sleep) >= 3  # one backoff before each of the three attempts
    assert max(no_sleep) <= 30.0


def test_a_binding_token_is_renewed_and_a_late_renewal_catches_up(
    subscribe: Callable[..., Events],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
) -> None:
    medplum.set_subscriptions(token_lifetime_seconds=1)
    events = subscribe(f"Observation?subject=Patient/{patient}")
    one = create(writer, obs(patient, 1))
    assert event_key(events.next()) == key(one)

    time.sleep(2.2)  # the token (exp: whole seconds, up to 2 s) expires while nobody iterates
    two = create(writer, obs(patient, 2))
    assert medplum.subscriptions()["notifications_sent"] == 1
    caught_up = events.next()
    assert (event_key(caught_up), caught_up.source) == (key(two), "catch-up")

    three = create(writer, obs(patient, 3))
    assert event_key(events.next()) == key(three)
    state = medplum.subscriptions()
    assert state["binds"] >= 2  # the same socket was bound again with a fresh token
    assert events.stream.reconnects == 0


def test_a_refused_token_renewal_binds_a_new_socket(
    subscribe: Callable[..., Events],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
) -> None:
    medplum.set_subscriptions(token_lifetime_seconds=1)
    events = subscribe(f"Observation?subject=Patient/{patient}")
    medplum.add_fault(  # the renewal gets a token the server will refuse on the socket
        "respond",
        status=200,
        method="GET",
        path_prefix="/fhir/R4/Subscription/",
        body={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": "refused-token"},
                {"name": "websocket-url", "valueUrl": "ws://127.0.0.1:1/ignored"},
            ],
        },
    )
    time.sleep(1.0)  # the renewal is due
    one = create(writer, obs(patient, 1))
    first = events.next()
    two = create(writer, obs(patient, 2))
    second = events.next()

    assert [event_key(first), event_key(second)] == [key(one), key(two)]
    assert events.stream.reconnects == 1
    assert medplum.faults()[0]["hits"] == 1


def test_since_first_delivers_what_changed_before_the_stream_started(
    subscribe: Callable[..., Events], writer: httpx.Client, patient: str
) -> None:
    earlier = create(writer, obs(patient, 1))
    since = earlier["meta"]["lastUpdated"]
    events = subscribe(f"Observation?subject=Patient/{patient}", since=since)
    first = events.next()
    later = create(writer, obs(patient, 2))
    second = events.next()

    assert (event_key(first), first.source) == (key(earlier), "catch-up")
    assert (event_key(second), second.source) == (key(later), "notification")


# ---------------------------------------------------------------- clean-up and errors


def test_closing_the_stream_deletes_its_subscription(
    client: Driver, writer: httpx.Client, medplum: LocalMedplumServer, patient: str
) -> None:
    stream = client.client.subscribe(f"Observation?subject=Patient/{patient}")
    events = Events(client, stream)
    subscription_id = stream.subscription_id
    assert writer.get(f"Subscription/{subscription_id}").status_code == 200
    events.close()

    assert writer.get(f"Subscription/{subscription_id}").status_code in (404, 410)
    deletes = [
        r
        for r in medplum.fhir_requests()
        if r["method"] == "DELETE" and "Subscription" in r["path"]
    ]
    assert [r["path"] for r in deletes] == [f"/fhir/R4/Subscription/{subscription_id}"]
    assert deletes[0]["status"] == 200  # deleted before the socket closed
    assert medplum.subscriptions()["sockets"] == 0
    with pytest.raises(RuntimeError, match="closed"):
        client.run(stream.__aenter__() if client.is_async else stream.__enter__())


def test_breaking_out_of_a_plain_for_loop_deletes_the_subscription(
    make_client: Callable[..., Driver],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
    flavour: str,
) -> None:
    if flavour == "async":
        pytest.skip("asyncio closes an abandoned async generator later, on the event loop")
    driver = make_client()
    create(writer, obs(patient, 1))
    criteria = f"Observation?subject=Patient/{patient}"
    stream = driver.client.subscribe(criteria, since="2000-01-01T00:00:00Z")
    for event in stream:
        assert event.resource_type == "Observation"
        break
    # CPython closes the abandoned generator at once; its `finally` closes the stream.
    assert medplum.subscriptions()["sockets"] == 0
    assert any(
        r["method"] == "DELETE" and r["path"].startswith("/fhir/R4/Subscription/")
        for r in medplum.fhir_requests()
    )


def test_closing_from_another_thread_ends_a_blocked_sync_loop(
    make_client: Callable[..., Driver],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
    flavour: str,
) -> None:
    if flavour == "async":
        pytest.skip("the sync stream's thread case; aclose() from another task is the same path")
    driver = make_client()
    stream = driver.client.subscribe(f"Observation?subject=Patient/{patient}")
    seen: list[SubscriptionEvent[Any]] = []

    def consume() -> None:
        for event in stream:  # blocks waiting for events
            seen.append(event)

    with stream, ThreadPoolExecutor(1) as pool:  # bound before anything changes
        loop = pool.submit(consume)
        one = create(writer, obs(patient, 1))
        deadline = time.monotonic() + EVENT_DEADLINE
        while not seen and time.monotonic() < deadline:
            assert not loop.done(), loop.exception()
            time.sleep(0.05)
        stream.close()
        loop.result(timeout=EVENT_DEADLINE)  # the loop ended instead of waiting on
    assert [event_key(e) for e in seen] == [key(one)]
    assert medplum.subscriptions()["sockets"] == 0


def test_a_project_without_websocket_subscriptions_is_refused_and_left_clean(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    medplum.set_project(features=["bots"])
    stream = client.client.subscribe("Patient")
    with pytest.raises(ValidationError) as failure:
        client.run(stream.__aenter__() if client.is_async else stream.__enter__())
    assert failure.value.status_code == 400
    calls = [
        (r["method"], r["path"].split("/")[-1], r["status"])
        for r in medplum.fhir_requests()
        if r["path"].startswith("/fhir/R4/Subscription")
    ]
    assert [(m, s) for m, _, s in calls] == [("POST", 201), ("GET", 400), ("DELETE", 200)]


def test_a_socket_url_on_another_origin_is_refused(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    medplum.add_fault(
        "respond",
        status=200,
        method="GET",
        path_prefix="/fhir/R4/Subscription/",
        body={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": "t"},
                {"name": "websocket-url", "valueUrl": "ws://127.0.0.2:1/ws/subscriptions-r4"},
            ],
        },
    )
    stream = client.client.subscribe("Patient")
    with pytest.raises(UnsafeRedirectError):
        client.run(stream.__aenter__() if client.is_async else stream.__enter__())
    assert medplum.subscriptions()["sockets"] == 0


def test_a_refused_binding_token_is_a_subscription_error(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    url = medplum.base_url.replace("http://", "ws://") + "/ws/subscriptions-r4"
    medplum.add_fault(
        "respond",
        status=200,
        method="GET",
        path_prefix="/fhir/R4/Subscription/",
        body={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": "not-a-token"},
                {"name": "websocket-url", "valueUrl": url},
            ],
        },
    )
    stream = client.client.subscribe("Patient")
    with pytest.raises(SubscriptionError) as failure:
        client.run(stream.__aenter__() if client.is_async else stream.__enter__())
    assert failure.value.outcome is not None
    assert "not-a-token" not in str(failure.value)


# ---------------------------------------------------------------- on behalf of


def test_every_call_of_the_stream_acts_on_behalf_of_the_membership(
    subscribe: Callable[..., Events],
    writer: httpx.Client,
    medplum: LocalMedplumServer,
    patient: str,
) -> None:
    alice = medplum.practitioners["alice"].membership
    events = subscribe(f"Observation?subject=Patient/{patient}", on_behalf_of=alice)
    one = create(writer, obs(patient, 1))
    events.next()
    medplum.drop_subscription_sockets()
    update(writer, one, valueQuantity={"value": 2})
    assert events.next().source == "catch-up"

    calls = [r for r in medplum.fhir_requests() if r["path"].startswith("/fhir/R4/Subscription")]
    calls += [r for r in medplum.fhir_requests() if r["query"].get("_lastUpdated")]
    kinds = {(r["method"], r["path"].split("/")[-1].startswith("$")) for r in calls}
    assert ("POST", False) in kinds and ("GET", True) in kinds  # create and binding token
    assert any(r["query"].get("_lastUpdated") for r in calls)  # the catch-up search
    assert {r["on_behalf_of"] for r in calls} == {alice}
    assert {r["acting_membership"] for r in calls} == {alice}
    assert [b["membership"] for b in medplum.subscriptions()["bindings"]] == [alice]


def test_notifications_follow_the_acting_memberships_access_policy(
    subscribe: Callable[..., Events], writer: httpx.Client, medplum: LocalMedplumServer
) -> None:
    tag = medplum.info["restricted_tag"]
    policy = create(
        writer,
        {
            "resourceType": "AccessPolicy",
            "name": "tagged patients and own subscriptions",
            "resource": [
                {
                    "resourceType": "Patient",
                    "criteria": f"Patient?_tag={tag['system']}|{tag['code']}",
                },
                {"resourceType": "Subscription"},
            ],
        },
    )
    bob = medplum.practitioners["bob"].membership
    membership = writer.get(bob).json()
    update(writer, membership, accessPolicy={"reference": f"AccessPolicy/{policy['id']}"})

    events = subscribe("Patient?name=Policy", on_behalf_of=bob)
    create(writer, {"resourceType": "Patient", "name": [{"family": "Policy"}]})  # not readable
    tagged = create(
        writer,
        {"resourceType": "Patient", "meta": {"tag": [tag]}, "name": [{"family": "Policy"}]},
    )
    assert event_key(events.next()) == key(tagged)


# ---------------------------------------------------------------- secrets


def test_binding_tokens_and_resources_never_reach_the_logs(
    subscribe: Callable[..., Events],
    writer: httpx.Client,
    patient: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    events = subscribe(f"Observation?subject=Patient/{patient}")
    create(writer, {**obs(patient), "note": [{"text": "private-note-text"}]})
    events.next()
    assert "bind-with-token" not in caplog.text
    assert "eyJ" not in caplog.text  # no JWT, binding or access token
    assert "private-note-text" not in caplog.text
