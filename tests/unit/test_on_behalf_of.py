"""On-behalf-of: precedence, per-client isolation, asyncio tasks, threads (on-behalf-of.md)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from pymedplum import MedplumClient
from pymedplum._obo import OBO_HEADER, membership_reference

from .conftest import Driver, FakeMedplum, header

A, B, DEFAULT = "ProjectMembership/a", "ProjectMembership/b", "ProjectMembership/default"


def sent_obo(fake: FakeMedplum) -> str | None:
    return header(fake.api_requests[-1], OBO_HEADER)


def test_no_obo_sends_no_header(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().read_resource("Patient", "1")
    assert sent_obo(fake) is None


def test_client_default_is_sent(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make(default_on_behalf_of=DEFAULT).read_resource("Patient", "1")
    assert sent_obo(fake) == DEFAULT


def test_context_manager_beats_default(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api = make(default_on_behalf_of=DEFAULT)
    with api.client.on_behalf_of(A):
        api.read_resource("Patient", "1")
    assert sent_obo(fake) == A
    api.read_resource("Patient", "1")
    assert sent_obo(fake) == DEFAULT  # restored on exit


def test_kwarg_beats_context_manager(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api = make(default_on_behalf_of=DEFAULT)
    with api.client.on_behalf_of(A):
        api.read_resource("Patient", "1", on_behalf_of=B)
    assert sent_obo(fake) == B


def test_empty_kwarg_clears_context_and_default(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make(default_on_behalf_of=DEFAULT)
    with api.client.on_behalf_of(A):
        api.read_resource("Patient", "1", on_behalf_of="")
    assert sent_obo(fake) is None


def test_nested_contexts_restore_the_outer_value(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make()
    with api.client.on_behalf_of(A):  # noqa: SIM117 - nesting is the point
        with api.client.on_behalf_of(B):
            api.read_resource("Patient", "1")
            assert sent_obo(fake) == B
        api.read_resource("Patient", "1")
        assert sent_obo(fake) == A


def test_obo_applies_to_writes_and_searches(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api = make()
    api.create_resource({"resourceType": "Patient"}, on_behalf_of=A)
    assert sent_obo(fake) == A
    api.search_resources("Patient", {"name": "x"}, on_behalf_of=B)
    assert sent_obo(fake) == B


def test_token_request_never_carries_obo(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make(default_on_behalf_of=DEFAULT).read_resource("Patient", "1")
    assert header(fake.token_requests[0], OBO_HEADER) is None


def test_async_context_manager(fake: FakeMedplum) -> None:
    async def main() -> str | None:
        async with fake.async_client() as client, client.on_behalf_of(A):
            await client.read_resource("Patient", "1")
        return sent_obo(fake)

    assert asyncio.run(main()) == A


def test_membership_resource_becomes_a_reference() -> None:
    assert membership_reference({"resourceType": "ProjectMembership", "id": "x"}) == (
        "ProjectMembership/x"
    )
    with pytest.raises(ValueError):
        membership_reference({"resourceType": "Patient", "id": "x"})
    with pytest.raises(ValueError):
        membership_reference("ProjectMembership/x\r\nX-Evil: 1")


def test_each_client_has_its_own_uniquely_named_contextvar(fake: FakeMedplum) -> None:
    one, two = fake.sync_client(), fake.sync_client()
    assert one._obo.var is not two._obo.var
    assert one._obo.var.name != two._obo.var.name
    assert one._obo.var.name.startswith("pymedplum_on_behalf_of_")


def test_contexts_of_two_clients_do_not_mix(fake: FakeMedplum) -> None:
    a, b = fake.sync_client(), fake.sync_client()
    with a.on_behalf_of(A):
        b.read_resource("Patient", "1")
        assert sent_obo(fake) is None
        a.read_resource("Patient", "1")
        assert sent_obo(fake) == A


def test_isolation_across_1000_clients_created_and_collected(fake: FakeMedplum) -> None:
    # Each client leaves its ambient value set (never exits the block) and is dropped;
    # the next client, possibly at the same address, must still see nothing.
    addresses = set()
    for i in range(1000):
        client = fake.sync_client()
        addresses.add(id(client))
        client.read_resource("Patient", "1")
        assert sent_obo(fake) is None, f"client {i} saw another client's OBO"
        client.on_behalf_of(f"ProjectMembership/leak-{i}").__enter__()
        client.read_resource("Patient", "1")
        assert sent_obo(fake) == f"ProjectMembership/leak-{i}"
        client.close()
        del client
        if i % 100 == 0:
            gc.collect()
    assert len(addresses) < 1000  # addresses were recycled, so the test meant something


def test_1000_concurrent_tasks_each_send_only_their_own(fake: FakeMedplum) -> None:
    async def act_as(client: object, n: int) -> None:
        assert hasattr(client, "on_behalf_of")
        async with client.on_behalf_of(f"ProjectMembership/m{n}"):  # type: ignore[attr-defined]
            await asyncio.sleep(0)  # interleave with the other tasks
            await client.read_resource("Patient", f"p{n}")  # type: ignore[attr-defined]

    async def main() -> None:
        async with fake.async_client() as client:
            await asyncio.gather(*(act_as(client, n) for n in range(1000)))

    asyncio.run(main())
    reads = fake.api_requests
    assert len(reads) == 1000
    for request in reads:
        n = request.url.path.rsplit("/p", 1)[1]
        assert header(request, OBO_HEADER) == f"ProjectMembership/m{n}"


def test_thread_pool_submit_does_not_propagate(fake: FakeMedplum) -> None:
    client = fake.sync_client()
    with client.on_behalf_of(A), ThreadPoolExecutor() as pool:
        pool.submit(client.read_resource, "Patient", "1").result()
    assert sent_obo(fake) is None


def test_copy_context_run_propagates(fake: FakeMedplum) -> None:
    client = fake.sync_client()
    with client.on_behalf_of(A):
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor() as pool:
            pool.submit(ctx.run, client.read_resource, "Patient", "1").result()
    assert sent_obo(fake) == A


def test_asyncio_to_thread_propagates(fake: FakeMedplum) -> None:
    client = fake.sync_client()

    async def main() -> None:
        with client.on_behalf_of(A):
            await asyncio.to_thread(client.read_resource, "Patient", "1")

    asyncio.run(main())
    assert sent_obo(fake) == A


def test_explicit_kwarg_in_a_thread_needs_no_propagation(fake: FakeMedplum) -> None:
    client: MedplumClient = fake.sync_client()
    with ThreadPoolExecutor() as pool:
        pool.submit(client.read_resource, "Patient", "1", on_behalf_of=B).result()
    assert sent_obo(fake) == B


def test_paging_keeps_the_identity_of_the_first_page(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    import httpx

    page1 = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Patient", "id": "1"}}],
        "link": [{"relation": "next", "url": "https://medplum.test/fhir/R4/Patient?_offset=1"}],
    }
    page2 = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Patient", "id": "2"}}],
    }
    fake.script(
        "GET", "/fhir/R4/Patient", httpx.Response(200, json=page1), httpx.Response(200, json=page2)
    )
    api = make()
    with api.client.on_behalf_of(A):
        ids = [p["id"] for p in api.search_resource_pages("Patient")]
    assert ids == ["1", "2"]
    assert [header(r, OBO_HEADER) for r in fake.api_requests] == [A, A]


def test_a_per_call_value_with_a_line_break_is_refused_like_the_others() -> None:
    from pymedplum._obo import OnBehalfOf

    obo = OnBehalfOf(None)
    with pytest.raises(ValueError, match="line breaks"):
        obo.resolve("ProjectMembership/a\r\nX-Injected: 1")
    with pytest.raises(ValueError, match="line breaks"):
        obo.scope("ProjectMembership/a\nX")
    assert obo.resolve("ProjectMembership/a") == "ProjectMembership/a"
