"""Every shared example: valid ones round-trip exactly and are typed all the way down;
invalid ones are rejected by the model their manifest names."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pymedplum import _json, fhir
from pymedplum._fhirmodel import FHIRValidationError
from pymedplum.helpers import fhir_json_bytes, parse_resource
from tests.shared_data import EXAMPLES, INVALID_DIR, invalid_manifest, valid_example_files

VALID = valid_example_files()
INVALID = invalid_manifest()
PARTIAL = sorted((EXAMPLES / "medplum-partial").glob("*.json"))


def test_the_shared_examples_are_there() -> None:
    assert len(VALID) >= 400
    assert len(INVALID) == 20
    assert len(PARTIAL) == 2


def _assert_typed(value: Any, path: str) -> None:
    """No dict is left inside a model: every element became a model or a primitive."""
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"{path}: unknown elements {sorted(value.model_extra)}"
        for name, item in value.__dict__.items():
            _assert_typed(item, f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _assert_typed(item, f"{path}[{index}]")
    else:
        assert isinstance(value, (str, int, bool, Decimal, type(None))), f"{path}: {type(value)}"


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_valid_example_round_trips_exactly(path: Path) -> None:
    raw = path.read_bytes()
    original = _json.loads(raw)
    model = parse_resource(raw)
    assert type(model).__name__ == original["resourceType"]
    _assert_typed(model, original["resourceType"])
    written = fhir_json_bytes(model)
    # Same JSON (key order aside); decimals compare as Decimal, so 1.50 != 1.5 textually
    # is checked below on the bytes.
    assert _json.loads(written) == original
    for number in _decimal_texts(raw):
        assert number in written


def _decimal_texts(raw: bytes) -> set[bytes]:
    """The texts of the JSON numbers with a fraction in the raw file."""
    import re

    return set(re.findall(rb"(?<=[:\[,\s])-?\d+\.\d+(?:[eE][+-]?\d+)?(?=[,\]\}\s])", raw))


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["file"])
def test_invalid_example_is_rejected(case: dict[str, Any]) -> None:
    data = _json.loads((INVALID_DIR / case["file"]).read_bytes())
    model = getattr(fhir, case["expected_type"])
    with pytest.raises(FHIRValidationError) as raised:
        model.model_validate(data)
    # Errors are located by FHIR path, from the model's type.
    for error in raised.value.errors():
        assert str(error["loc"][0]).startswith(case["expected_type"])


@pytest.mark.parametrize("path", PARTIAL, ids=lambda p: p.name)
def test_medplum_snippets_without_required_elements_are_rejected(path: Path) -> None:
    data = _json.loads(path.read_bytes())
    with pytest.raises(FHIRValidationError, match="Field required"):
        parse_resource(data)
