"""Test support shared by pymedplum's test suites: the local Medplum server.

Import from :mod:`tests.support.medplum_server`; the names below resolve lazily so that
``python -m tests.support.medplum_server`` does not import the module twice.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClientCredentials",
    "LocalMedplumServer",
    "MedplumServerError",
    "SeededPractitioner",
    "running_server",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tests.support import medplum_server

        return getattr(medplum_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
