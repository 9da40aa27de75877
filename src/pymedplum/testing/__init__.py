"""Testing with pymedplum: a local Medplum server, pytest fixtures, scrubbed cassettes.

- `LocalMedplumServer`: Medplum's own FHIR router (Node, in memory) on 127.0.0.1, seeded
  with a project, two client applications and three practitioners, with controls for
  faults, rate limits and token lifetimes. Needs Node >= 20.10 and npm; its npm packages
  are installed on first use (or ahead with ``python -m pymedplum.testing install-server``).
- The pytest plugin (`pymedplum.testing.pytest_plugin`, registered as ``pymedplum``):
  ``medplum_server``, ``medplum_reset``, ``medplum_client``, ``async_medplum_client``,
  ``medplum_vcr``.
- `medplum_vcr()` (`pymedplum.testing.cassettes`): a vcrpy ``VCR`` that records without
  tokens, secrets or PHI (needs vcrpy).

See docs/testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymedplum.testing.local_server import (
    ClientCredentials,
    LocalMedplumServer,
    MedplumServerError,
    SeededPractitioner,
    ensure_installed,
    running_server,
)

if TYPE_CHECKING:
    from pymedplum.testing.cassettes import medplum_vcr, scrub_request, scrub_response

__all__ = [
    "ClientCredentials",
    "LocalMedplumServer",
    "MedplumServerError",
    "SeededPractitioner",
    "ensure_installed",
    "medplum_vcr",
    "running_server",
    "scrub_request",
    "scrub_response",
]

_CASSETTES = frozenset({"medplum_vcr", "scrub_request", "scrub_response"})


def __getattr__(name: str) -> Any:
    # The cassette helpers need vcrpy: loaded on first use only.
    if name in _CASSETTES:
        from pymedplum.testing import cassettes

        return getattr(cassettes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
