"""FHIR operations: $-operations, terminology, clone, expunge, $validate, $everything."""

from __future__ import annotations

from pymedplum._async._base import AsyncClientBase


class AsyncOperationMethods(AsyncClientBase):
    """FHIR operations: $-operations, terminology, clone, expunge, $validate, $everything."""
