"""Conditional-create batches without I/O: entries, chunk requests, per-entry results."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pymedplum._convert import resource_to_dict
from pymedplum._core import BaseClient, Call, Resource, _check_type
from pymedplum.bundle import BatchCreateResult, BundleEntryResult, FHIRBundle

__all__ = [
    "conditional_entries",
    "build_conditional_batch",
    "chunk_results",
    "classify",
]


def conditional_entries(
    base: BaseClient, entries: Sequence[tuple[Resource, str]]
) -> list[dict[str, Any]]:
    """One batch entry (`POST` with `ifNoneExist`) per `(resource, if_none_exist)` pair.

    Every pair is checked before anything is sent, so a bad one fails the whole call early.
    """
    if isinstance(entries, Mapping | str | bytes):
        raise TypeError("conditional_create_batch expects a list of (resource, if_none_exist)")
    prepared: list[dict[str, Any]] = []
    for index, pair in enumerate(entries):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"entries[{index}] must be a (resource, if_none_exist) pair")
        resource, if_none_exist = pair
        body = resource_to_dict(resource)
        rtype = body.get("resourceType")
        if not isinstance(rtype, str):
            raise ValueError(f"entries[{index}]: the resource has no resourceType")
        if not isinstance(if_none_exist, str):
            raise TypeError(f"entries[{index}]: if_none_exist must be a search query string")
        criteria = base._if_none_exist_query(if_none_exist)
        url = _check_type(rtype)
        prepared.append(
            {"resource": body, "request": {"method": "POST", "url": url, "ifNoneExist": criteria}}
        )
    return prepared


def build_conditional_batch(
    base: BaseClient, chunk: list[dict[str, Any]], accounts: str | Sequence[str] | None
) -> Call:
    """The batch request of one chunk; replay-safe, since every entry is conditional."""
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": chunk}
    call = base._build_bundle(bundle, "batch", accounts)
    call.replay_safe = True
    return call


def chunk_results(response: Any, offset: int, count: int) -> list[BundleEntryResult]:
    """The `count` entry results of one chunk's response, indexed from `offset`.

    An entry the response does not answer becomes a failure with no status.
    """
    answered = FHIRBundle(response).entry_results() if isinstance(response, Mapping) else []
    results: list[BundleEntryResult] = []
    for i in range(count):
        if i < len(answered):
            results.append(dataclasses.replace(answered[i], index=offset + i))
        else:
            results.append(BundleEntryResult(offset + i, None, False, None, None, None))
    return results


def classify(results: list[BundleEntryResult]) -> BatchCreateResult:
    """Sort results into created (201), existed (200) and failed (the rest)."""
    created = [r for r in results if r.status_code == 201]
    existed = [r for r in results if r.status_code == 200]
    failed = [r for r in results if r.status_code not in (200, 201)]
    return BatchCreateResult(created=created, existed=existed, failed=failed)
