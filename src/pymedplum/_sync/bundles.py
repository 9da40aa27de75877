# Generated from src/pymedplum/_async/bundles.py by codegen/unasync.py: run `make generate`.
"""Batch and transaction helpers beyond execute_batch/execute_transaction."""

from __future__ import annotations

from pymedplum._sync._base import ClientBase


class BundleMethods(ClientBase):
    """Batch and transaction helpers beyond execute_batch/execute_transaction."""
