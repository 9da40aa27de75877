# Generated from src/pymedplum/_async/jobs.py by codegen/unasync.py: run `make generate`.
"""Asynchronous jobs: status and waiting (bulk export, long operations)."""

from __future__ import annotations

from pymedplum._sync._base import ClientBase


class JobMethods(ClientBase):
    """Asynchronous jobs: status and waiting (bulk export, long operations)."""
