"""Both clients expose the same public API with the same parameters."""

from __future__ import annotations

import inspect

from pymedplum import AsyncMedplumClient, MedplumClient

# Names that differ by design between the two clients.
RENAMED = {"__aenter__": "__enter__", "__aexit__": "__exit__", "aclose": "close"}
# Parameters only the async client has: auto-batching gathers concurrent calls, and a
# blocking call cannot wait for others to join it.
ASYNC_ONLY = {"__init__": {"auto_batch_ms"}}


def public_members(cls: type) -> dict[str, object]:
    names = {n for n in dir(cls) if not n.startswith("_")} | {
        "__init__",
        "__aenter__",
        "__aexit__",
        "__enter__",
        "__exit__",
    }
    return {RENAMED.get(n, n): getattr(cls, n) for n in names if hasattr(cls, n)}


def test_same_public_names() -> None:
    assert set(public_members(MedplumClient)) == set(public_members(AsyncMedplumClient))


def test_same_parameters_for_every_method() -> None:
    sync, async_ = public_members(MedplumClient), public_members(AsyncMedplumClient)
    for name, member in sync.items():
        if not callable(member):
            continue
        expected = inspect.signature(member).parameters
        actual = inspect.signature(async_[name]).parameters  # type: ignore[arg-type]
        only_async = ASYNC_ONLY.get(name, set())
        assert only_async <= set(actual) and not only_async & set(expected), name
        assert [(p.name, p.kind, p.default) for p in expected.values()] == [
            (p.name, p.kind, p.default) for p in actual.values() if p.name not in only_async
        ], name


def test_async_methods_are_coroutines_and_sync_ones_are_not() -> None:
    for name in (
        "read_resource",
        "create_resource",
        "execute_graphql",
        "get",
        "update_with_retry",
        "search_resources",
        "search_one",
    ):
        assert inspect.iscoroutinefunction(getattr(AsyncMedplumClient, name))
        assert not inspect.iscoroutinefunction(getattr(MedplumClient, name))
    # Paging methods return the iterator the shared _pages generator makes.
    assert inspect.isasyncgenfunction(AsyncMedplumClient._pages)
    assert inspect.isgeneratorfunction(MedplumClient._pages)


def test_public_methods_have_docstrings() -> None:
    for cls in (MedplumClient, AsyncMedplumClient):
        for name, member in public_members(cls).items():
            if callable(member) and not name.startswith("__"):
                assert inspect.getdoc(member), f"{cls.__name__}.{name}"
