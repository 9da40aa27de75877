"""Batch and transaction helpers beyond execute_batch/execute_transaction."""

from __future__ import annotations

from pymedplum._async._base import AsyncClientBase


class AsyncBundleMethods(AsyncClientBase):
    """Batch and transaction helpers beyond execute_batch/execute_transaction."""
