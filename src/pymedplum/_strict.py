"""The switch between the models' default validation and the letter of FHIR R4.

By default the models accept one thing the specification's regular expressions forbid: a
`dateTime` with a time but no time zone (`2026-12-01T04:23:00.612778`), which Medplum stores
verbatim and which `datetime.now().isoformat()` writes. `pymedplum.fhir.strict()` restores
the specification's rule for every validation inside the block.

Kept apart from the models so that `pymedplum.fhir` can offer it without importing pydantic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["strict", "is_strict"]

# A ContextVar, so the switch is per thread and per asyncio task: a block in one request
# handler does not change what another one accepts.
_STRICT: ContextVar[bool] = ContextVar("pymedplum.fhir.strict", default=False)


@contextmanager
def strict(enabled: bool = True) -> Iterator[None]:
    """Validate FHIR models by the letter of FHIR R4 inside the block.

    Inside it, a `dateTime` with a time must carry a time zone, in every validation
    (`Model(...)`, `model_validate`, `model_validate_json`, `from_server`, the client's
    `as_fhir=`). The setting belongs to the current thread or asyncio task; a task started
    inside the block inherits it. `strict(False)` turns it off again for an inner block.

    Example:
        from pymedplum import fhir

        with fhir.strict():
            fhir.Observation.model_validate(data)   # "2020-01-02T10:00:00" is an error
    """
    token = _STRICT.set(enabled)
    try:
        yield
    finally:
        _STRICT.reset(token)


def is_strict() -> bool:
    """Whether validation in the current thread or task follows FHIR R4 to the letter."""
    return _STRICT.get()
