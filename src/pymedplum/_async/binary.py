"""Binary content, attachments, media and documents."""

from __future__ import annotations

from pymedplum._async._base import AsyncClientBase


class AsyncBinaryMethods(AsyncClientBase):
    """Binary content, attachments, media and documents."""
