"""`from pymedplum.async_client import AsyncMedplumClient` (also `pymedplum.AsyncMedplumClient`)."""

from pymedplum._async.client import AsyncMedplumClient

__all__ = ["AsyncMedplumClient"]
