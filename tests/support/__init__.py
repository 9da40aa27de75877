"""Test support shared by pymedplum's test suites: a local Redis server, work run in other
processes, and the synthetic patient bundles. The local Medplum server's driver ships with
the package (`pymedplum.testing.local_server`), for the pytest plugin and these tests."""
