"""On-behalf-of against the local Medplum server: what the server received, per request.

The precedence of on-behalf-of.md: per-call kwarg (empty string clears), context manager
(sync and async), client default, none. The server records the header it received and the
membership whose access applied; writes carry `meta.onBehalfOf`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pymedplum import AsyncMedplumClient, AuthorizationError, MedplumClient
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver, new_client

PATIENT = {"resourceType": "Patient", "name": [{"family": "Obo"}]}


def received(medplum: LocalMedplumServer) -> list[str | None]:
    """The OBO header of each FHIR request the server received, in order."""
    return [r["on_behalf_of"] for r in medplum.fhir_requests()]


def test_per_call_kwarg_is_sent_and_the_write_is_stamped(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    alice = medplum.practitioners["alice"]
    created = client.create_resource(PATIENT, on_behalf_of=alice.membership)
    assert created["meta"]["onBehalfOf"]["reference"] == alice.practitioner
    client.read_resource("Patient", created["id"], on_behalf_of=alice.membership)
    client.read_resource("Patient", created["id"])
    assert received(medplum) == [alice.membership, alice.membership, None]
    logged = medplum.fhir_requests()
    assert logged[0]["acting_membership"] == alice.membership
    assert logged[2]["acting_membership"] == medplum.admin_client.membership


def test_context_manager_applies_to_every_call_in_its_block(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    bob = medplum.practitioners["bob"]

    def block() -> object:
        if client.is_async:

            async def calls() -> None:
                created = await client.client.create_resource(PATIENT)
                await client.client.read_resource("Patient", created["id"])
                await client.client.search_resources("Patient", {"_id": created["id"]})

            return calls()
        created = client.create_resource(PATIENT)
        client.read_resource("Patient", created["id"])
        client.search_resources("Patient", {"_id": created["id"]})
        return None

    client.in_obo(bob.membership, block)
    client.search_resources("Patient", {"family": "Obo"})  # after the block: none
    assert received(medplum) == [bob.membership] * 3 + [None]
    stored = medplum.fhir_requests()[0]
    assert stored["acting_membership"] == bob.membership


def test_client_default_is_the_baseline(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    alice = medplum.practitioners["alice"]
    client = make_client(default_on_behalf_of=alice.membership)
    created = client.create_resource(PATIENT)
    assert created["meta"]["onBehalfOf"]["reference"] == alice.practitioner
    assert received(medplum) == [alice.membership]


def test_precedence_kwarg_over_context_over_default_and_empty_string_clears(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    alice, bob, restricted = (
        medplum.practitioners[k].membership for k in ("alice", "bob", "restricted")
    )
    client = make_client(default_on_behalf_of=alice)
    c = client.client

    def block() -> object:
        if client.is_async:
            assert isinstance(c, AsyncMedplumClient)

            async def calls() -> None:
                await c.search_resources("Patient", {"family": "x"})
                await c.search_resources("Patient", {"family": "x"}, on_behalf_of=restricted)
                await c.search_resources("Patient", {"family": "x"}, on_behalf_of="")

            return calls()
        assert isinstance(c, MedplumClient)
        c.search_resources("Patient", {"family": "x"})
        c.search_resources("Patient", {"family": "x"}, on_behalf_of=restricted)
        c.search_resources("Patient", {"family": "x"}, on_behalf_of="")
        return None

    client.search_resources("Patient", {"family": "x"})  # default
    client.in_obo(bob, block)  # context, then kwarg, then cleared
    client.search_resources("Patient", {"family": "x"}, on_behalf_of="")  # default cleared
    assert received(medplum) == [alice, bob, restricted, None, None]
    acting = [r["acting_membership"] for r in medplum.fhir_requests()]
    assert acting == [alice, bob, restricted] + [medplum.admin_client.membership] * 2


def test_a_none_context_acts_as_the_client_itself_in_its_block(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    alice = medplum.practitioners["alice"].membership
    client = make_client(default_on_behalf_of=alice)
    c = client.client

    def block() -> object:
        if client.is_async:
            return c.search_resources("Patient", {"family": "x"})  # type: ignore[return-value]
        return c.search_resources("Patient", {"family": "x"})

    client.in_obo(None, block)
    assert received(medplum) == [None]


def test_acting_membership_access_policy_applies(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    restricted = medplum.practitioners["restricted"].membership
    tag = {"system": "http://example.org/sdk-test", "code": "restricted"}
    client.create_resource({**PATIENT, "meta": {"tag": [tag]}})
    client.create_resource(PATIENT)
    as_admin = client.search_resources("Patient", {"family": "Obo"})
    as_restricted = client.search_resources("Patient", {"family": "Obo"}, on_behalf_of=restricted)
    assert len(as_admin["entry"]) == 2
    assert len(as_restricted.get("entry", [])) == 1


def test_obo_from_a_non_admin_client_is_refused(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    user = make_client(user=True)
    user.search_resources("Patient", {"family": "x"})  # the client itself may search
    with pytest.raises(AuthorizationError) as caught:  # Medplum 4.5: 403 while authenticating
        user.search_resources(
            "Patient", {"family": "x"}, on_behalf_of=medplum.practitioners["alice"].membership
        )
    assert caught.value.status_code == 403
    assert caught.value.outcome is not None


def test_hook_attempts_record_the_obo_sent_on_each_attempt(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    events: list[object] = []
    alice = medplum.practitioners["alice"].membership
    client = make_client(on_request_complete=events.append, default_on_behalf_of=alice)
    medplum.fail_next(503, method="GET", path_prefix="/fhir/R4/Patient")
    client.search_resources("Patient", {"family": "x"})
    (event,) = events
    assert [a.status_code for a in event.attempts] == [503, 200]  # type: ignore[attr-defined]
    assert [a.on_behalf_of for a in event.attempts] == [alice, alice]  # type: ignore[attr-defined]
    assert received(medplum) == [alice, alice]


# ---- threads: the patterns on-behalf-of.md calls safe, and the one it calls broken ----------


def test_thread_pool_submit_does_not_propagate_the_context(medplum: LocalMedplumServer) -> None:
    alice = medplum.practitioners["alice"].membership
    client = new_client(medplum, "sync")
    assert isinstance(client, MedplumClient)
    with client, client.on_behalf_of(alice), ThreadPoolExecutor(1) as pool:
        pool.submit(client.search_resources, "Patient", {"family": "x"}).result()
    assert received(medplum) == [None]  # documented as broken: no OBO in the worker


def test_thread_safe_patterns_copy_context_and_explicit_kwarg(
    medplum: LocalMedplumServer,
) -> None:
    alice, bob = (medplum.practitioners[k].membership for k in ("alice", "bob"))
    client = new_client(medplum, "sync")
    assert isinstance(client, MedplumClient)
    with client:
        with client.on_behalf_of(alice), ThreadPoolExecutor(2) as pool:
            ctx = contextvars.copy_context()
            pool.submit(ctx.run, client.search_resources, "Patient", {"family": "x"}).result()
        with ThreadPoolExecutor(2) as pool:
            pool.submit(
                client.search_resources, "Patient", {"family": "x"}, on_behalf_of=bob
            ).result()
    assert received(medplum) == [alice, bob]


def test_asyncio_to_thread_copies_the_context(medplum: LocalMedplumServer) -> None:
    alice = medplum.practitioners["alice"].membership
    sync_client = new_client(medplum, "sync")
    assert isinstance(sync_client, MedplumClient)

    async def main() -> None:
        with sync_client.on_behalf_of(alice):
            await asyncio.to_thread(sync_client.search_resources, "Patient", {"family": "x"})

    with sync_client:
        asyncio.run(main())
    assert received(medplum) == [alice]


def test_two_gathered_tasks_each_send_their_own_obo(medplum: LocalMedplumServer) -> None:
    alice, bob = (medplum.practitioners[k].membership for k in ("alice", "bob"))

    async def act_as(client: AsyncMedplumClient, membership: str, family: str) -> None:
        async with client.on_behalf_of(membership):
            await asyncio.sleep(0)
            await client.search_resources("Patient", {"family": family})
            await asyncio.sleep(0)
            await client.search_resources("Patient", {"family": family})

    async def main() -> None:
        client = new_client(medplum, "async")
        assert isinstance(client, AsyncMedplumClient)
        async with client:
            await asyncio.gather(act_as(client, alice, "a"), act_as(client, bob, "b"))

    asyncio.run(main())
    by_family = {(r["query"]["family"][0], r["on_behalf_of"]) for r in medplum.fhir_requests()}
    assert by_family == {("a", alice), ("b", bob)}


# ---- on-behalf-of forms (on-behalf-of-forms cassette) -----------------------------------------


def restricted_patient(client: Driver, medplum: LocalMedplumServer) -> str:
    tag = medplum.info["restricted_tag"]
    created = client.create_resource({**PATIENT, "meta": {"tag": [tag]}}, on_behalf_of="")
    return str(created["id"])


def test_a_bare_membership_id_acts_as_that_membership_in_every_way(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    restricted = medplum.practitioners["restricted"]
    bare = restricted.membership.split("/")[1]
    client = make_client()
    patient = restricted_patient(client, medplum)
    client.read_resource("Patient", patient, on_behalf_of=bare)

    def read() -> Any:
        return client.client.read_resource("Patient", patient)

    client.in_obo(bare, read)
    make_client(default_on_behalf_of=bare).read_resource("Patient", patient)
    reads = medplum.fhir_requests()[1:]
    assert [r["status"] for r in reads] == [200, 200, 200]
    assert {r["on_behalf_of"] for r in reads} == {restricted.membership}
    assert {r["acting_membership"] for r in reads} == {restricted.membership}


def test_a_membership_resource_and_a_profile_reference_act_as_that_membership(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    restricted = medplum.practitioners["restricted"]
    patient = restricted_patient(client, medplum)
    membership = client.read_resource("ProjectMembership", restricted.membership.split("/")[1])
    client.read_resource("Patient", patient, on_behalf_of=membership)
    client.read_resource("Patient", patient, on_behalf_of=restricted.practitioner)
    reads = medplum.fhir_requests()[2:]
    assert [r["on_behalf_of"] for r in reads] == [restricted.membership, restricted.practitioner]
    assert {r["acting_membership"] for r in reads} == {restricted.membership}


def test_malformed_on_behalf_of_values_are_refused_before_anything_is_sent(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    client = make_client()
    for value in ("Organization/abc", "ProjectMembership/", "two words"):
        with pytest.raises(ValueError, match="on_behalf_of"):
            client.read_resource("Patient", "x", on_behalf_of=value)
        with pytest.raises(ValueError, match="on_behalf_of"):
            client.client.on_behalf_of(value)
        with pytest.raises(ValueError, match="default_on_behalf_of"):
            make_client(default_on_behalf_of=value)
    with pytest.raises(ValueError, match="default_on_behalf_of"):
        make_client(default_on_behalf_of="")
    assert medplum.requests() == []
