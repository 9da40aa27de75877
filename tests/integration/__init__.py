"""Integration tests against the local Medplum server (tests/medplum_server)."""
