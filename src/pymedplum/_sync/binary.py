# Generated from src/pymedplum/_async/binary.py by codegen/unasync.py: run `make generate`.
"""Binary content, attachments, media and documents."""

from __future__ import annotations

from pymedplum._sync._base import ClientBase


class BinaryMethods(ClientBase):
    """Binary content, attachments, media and documents."""
