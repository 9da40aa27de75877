"""pymedplum's tests (a package so that ``tests.support`` imports under pytest)."""
