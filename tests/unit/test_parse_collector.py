"""The cyclic collector around the parse of a large document: paused while it runs, and the
objects it built handed to the oldest generation unscanned, unless the application froze
objects of its own."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pymedplum import fhir
from tests.support import synthetic


@pytest.fixture
def large() -> bytes:
    return synthetic.bundle_bytes("large")


@pytest.fixture
def collector_on() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


def _generation_of(target: object) -> int | None:
    for generation in range(3):
        if any(item is target for item in gc.get_objects(generation=generation)):
            return generation
    return None


def test_the_collector_is_on_again_after_a_large_parse(large: bytes, collector_on: None) -> None:
    fhir.Bundle.model_validate_json(large)
    assert gc.isenabled()


def test_a_large_parse_leaves_its_objects_in_the_oldest_generation(
    large: bytes, collector_on: None
) -> None:
    bundle = fhir.Bundle.model_validate_json(large)
    assert _generation_of(bundle) == 2
    assert _generation_of(bundle.entry[0].resource) == 2


def test_a_large_parse_keeps_the_application_s_frozen_objects_frozen(
    large: bytes, collector_on: None
) -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        fhir.Bundle.model_validate_json(large)
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


def test_a_small_parse_leaves_the_collector_alone(collector_on: None) -> None:
    patient = fhir.Patient.model_validate_json(b'{"resourceType": "Patient", "active": true}')
    assert gc.isenabled()
    assert _generation_of(patient) in (0, 1)
