# Generated from src/pymedplum/_async/operations.py by codegen/unasync.py: run `make generate`.
"""FHIR operations: $-operations, terminology, clone, expunge, $validate, $everything."""

from __future__ import annotations

from pymedplum._sync._base import ClientBase


class OperationMethods(ClientBase):
    """FHIR operations: $-operations, terminology, clone, expunge, $validate, $everything."""
