"""Test support shared by pymedplum's test suites.

The local Medplum server's driver ships with the package (`pymedplum.testing.local_server`,
for the pytest plugin); `tests.support.medplum_server` is the tests' name for that module.
"""

from __future__ import annotations

import sys

from pymedplum.testing import local_server as medplum_server

sys.modules[__name__ + ".medplum_server"] = medplum_server

from pymedplum.testing.local_server import (  # noqa: E402
    ClientCredentials,
    LocalMedplumServer,
    MedplumServerError,
    SeededPractitioner,
    running_server,
)

__all__ = [
    "ClientCredentials",
    "LocalMedplumServer",
    "MedplumServerError",
    "SeededPractitioner",
    "medplum_server",
    "running_server",
]
