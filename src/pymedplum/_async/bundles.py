"""Batch and transaction helpers beyond execute_batch/execute_transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymedplum import _batches
from pymedplum._async._base import AsyncClientBase
from pymedplum._core import Resource
from pymedplum.bundle import BatchCreateResult, BundleEntryResult
from pymedplum.transaction import TransactionBuilder, TransactionResult


class AsyncBundleMethods(AsyncClientBase):
    """Batch and transaction helpers beyond execute_batch/execute_transaction."""

    async def conditional_create_batch(
        self,
        entries: Sequence[tuple[Resource, str]],
        *,
        chunk_size: int = 50,
        accounts: str | Sequence[str] | None = None,
        on_behalf_of: str | None = None,
    ) -> BatchCreateResult:
        """Create many resources idempotently: batches of conditional creates, chunked.

        `entries` are `(resource, if_none_exist)` pairs; each query is checked as in
        `create_resource_if_none_exist` and should be a unique business key (a 200 means
        *found*, not created: whatever matched the query). Every entry lands in one list of
        the result: `created` (201), `existed` (200) or `failed` (anything else, never
        raised); `index` is the entry's position in `entries`. Because a conditional create
        cannot duplicate, each batch is replayed after an ambiguous failure, and calling
        again after an error converges (committed entries come back as `existed`).

        Example:
            result = await client.conditional_create_batch(
                [(patient, "identifier=http://hospital.org/mrn|1")], chunk_size=50
            )
            for entry in result.created:
                print(entry.index, entry.resource_id)
        """
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        prepared = _batches.conditional_entries(self, entries)
        results: list[BundleEntryResult] = []
        for start in range(0, len(prepared), chunk_size):
            chunk = prepared[start : start + chunk_size]
            call = _batches.build_conditional_batch(self, chunk, accounts)
            response: Any = await self._json(call, on_behalf_of)
            results.extend(_batches.chunk_results(response, start, len(chunk)))
        return _batches.classify(results)

    async def execute_transaction_builder(
        self,
        transaction: TransactionBuilder,
        *,
        accounts: str | Sequence[str] | None = None,
        on_behalf_of: str | None = None,
    ) -> TransactionResult:
        """Send a `TransactionBuilder`'s transaction; return each entry's result by key.

        The builder's checks run first (references, Medplum's limits: ValueError, nothing
        sent). Medplum may commit some entries and fail others: read `result.ok` or call
        `result.raise_for_entry_errors()`. The request is not replayed after an ambiguous
        failure.

        Example:
            tx = TransactionBuilder()
            patient = tx.create({"resourceType": "Patient"})
            tx.create({"resourceType": "Observation", "status": "final",
                       "code": {"text": "BP"}, "subject": {"reference": patient}})
            result = await client.execute_transaction_builder(tx)
            print(result.reference(patient))
        """
        call = self._build_bundle(transaction.build(), "transaction", accounts)
        response: Any = await self._json(call, on_behalf_of)
        return transaction.results(response if isinstance(response, dict) else {})
