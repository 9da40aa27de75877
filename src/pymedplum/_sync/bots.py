# Generated from src/pymedplum/_async/bots.py by codegen/unasync.py: run `make generate`.
"""Medplum Bots: CRUD, code, deployment and execution."""

from __future__ import annotations

from pymedplum._sync._base import ClientBase


class BotMethods(ClientBase):
    """Medplum Bots: CRUD, code, deployment and execution."""
