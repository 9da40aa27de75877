"""Medplum Bots: CRUD, code, deployment and execution."""

from __future__ import annotations

from pymedplum._async._base import AsyncClientBase


class AsyncBotMethods(AsyncClientBase):
    """Medplum Bots: CRUD, code, deployment and execution."""
