"""`from pymedplum.client import MedplumClient` (the same class as `pymedplum.MedplumClient`)."""

from pymedplum._sync.client import MedplumClient

__all__ = ["MedplumClient"]
