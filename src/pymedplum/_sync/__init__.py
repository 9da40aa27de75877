# Generated from src/pymedplum/_async/__init__.py by codegen/unasync.py: run `make generate`.
"""The client, written once as async code here; pymedplum._sync is generated from it."""
