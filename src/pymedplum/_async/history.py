"""History, conditional writes, references and rate-limit status."""

from __future__ import annotations

from pymedplum._async._base import AsyncClientBase


class AsyncHistoryMethods(AsyncClientBase):
    """History, conditional writes, references and rate-limit status."""
