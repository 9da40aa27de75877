# Generated from src/pymedplum/_async/history.py by codegen/unasync.py: run `make generate`.
"""History, conditional writes, references and rate-limit status."""

from __future__ import annotations

from pymedplum._sync._base import ClientBase


class HistoryMethods(ClientBase):
    """History, conditional writes, references and rate-limit status."""
