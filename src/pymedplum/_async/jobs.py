"""Asynchronous jobs: status and waiting (bulk export, long operations)."""

from __future__ import annotations

from pymedplum._async._base import AsyncClientBase


class AsyncJobMethods(AsyncClientBase):
    """Asynchronous jobs: status and waiting (bulk export, long operations)."""
