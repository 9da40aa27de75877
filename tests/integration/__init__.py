"""Integration tests against the local Medplum server (pymedplum.testing)."""
