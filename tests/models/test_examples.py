"""Every example: valid ones round-trip exactly and are typed all the way down; invalid ones
are rejected, for the reason written down.

- every one of the 5,306 official FHIR R4 examples (npm `hl7.fhir.r4.examples`), except
  the few listed in known-invalid.json, each with its reason, which must still fail for
  exactly that reason (a row that no longer fails makes its test fail: drop the row);
- our hand-written Medplum resources and the Synthea-like bundles of tests/support/synthetic.py;
- the hand-made invalid cases, by the model their manifest names.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pymedplum import _json, fhir
from pymedplum._fhirmodel import FHIRValidationError
from pymedplum.helpers import fhir_json_bytes, parse_resource
from tests.shared_data import (
    INVALID_DIR,
    MEDPLUM_PARTIAL,
    OFFICIAL_EXAMPLES,
    invalid_manifest,
    known_invalid_examples,
    medplum_example_files,
    official_example_files,
)
from tests.support import synthetic

OFFICIAL = official_example_files()
KNOWN_INVALID = known_invalid_examples()
VALID = [p for p in OFFICIAL if p.name not in KNOWN_INVALID] + medplum_example_files()
INVALID = invalid_manifest()
PARTIAL = sorted(MEDPLUM_PARTIAL.glob("*.json"))


def test_the_official_examples_are_installed_in_full() -> None:
    assert OFFICIAL_EXAMPLES.is_dir(), "run `make install` (npm ci in tests/data/fhir-r4-examples)"
    package = json.loads((OFFICIAL_EXAMPLES / "package.json").read_bytes())
    assert (package["name"], package["version"]) == ("hl7.fhir.r4.examples", "4.0.1")
    assert len(list(OFFICIAL_EXAMPLES.glob("*.json"))) == 5307  # with its package.json
    assert len(OFFICIAL) == 5306


def test_every_known_invalid_row_names_an_official_example() -> None:
    assert set(KNOWN_INVALID) <= {p.name for p in OFFICIAL}
    assert all(row["reason"] and row["errors"] for row in KNOWN_INVALID.values())


def test_the_hand_made_examples_are_there() -> None:
    assert len(medplum_example_files()) >= 10
    assert len(INVALID) == 20
    assert len(PARTIAL) == 2


def _is_typed(root: BaseModel) -> bool:
    """No dict is left inside a model: every element became a model or a primitive, and no
    model kept an unknown element. (A flat loop: the big bundles hold millions of values.)"""
    stack: list[Any] = [root]
    pop, push = stack.pop, stack.extend
    while stack:
        value = pop()
        kind = type(value)
        if kind is list:
            push(value)
        elif value is None or kind is str or kind is bool or kind is int or kind is Decimal:
            continue
        elif isinstance(value, BaseModel) and not value.__pydantic_extra__:
            push(value.__dict__.values())
        else:
            return False
    return True


def _first_untyped(value: Any, path: str) -> str | None:
    """Where `_is_typed` failed, for the message."""
    if isinstance(value, BaseModel):
        if value.model_extra:
            return f"{path}: unknown elements {sorted(value.model_extra)}"
        found = (_first_untyped(item, f"{path}.{name}") for name, item in value.__dict__.items())
        return next((where for where in found if where), None)
    if isinstance(value, list):
        found = (_first_untyped(item, f"{path}[{i}]") for i, item in enumerate(value))
        return next((where for where in found if where), None)
    if isinstance(value, (str, int, bool, Decimal, type(None))):
        return None
    return f"{path}: {type(value).__name__}"


# The texts of the JSON numbers with a fraction in a file.
_DECIMAL = re.compile(rb"(?<=[:\[,\s])-?\d+\.\d+(?:[eE][+-]?\d+)?(?=[,\]\}\s])")


def _assert_round_trips_exactly(raw: bytes) -> None:
    original = _json.loads(raw)
    model = parse_resource(raw)
    assert type(model).__name__ == original["resourceType"]
    assert _is_typed(model), _first_untyped(model, original["resourceType"])
    written = fhir_json_bytes(model)
    # Same JSON (key order aside); decimals compare as Decimal, so 1.50 == 1.5 here: the
    # text of every decimal is checked on the bytes below.
    assert _json.loads(written) == original
    for number in set(_DECIMAL.findall(raw)):
        assert number in written


def _example_id(path: Path) -> str:
    return (
        f"{'official' if path.is_relative_to(OFFICIAL_EXAMPLES) else path.parent.name}/{path.name}"
    )


@pytest.mark.parametrize("path", VALID, ids=_example_id)
def test_valid_example_round_trips_exactly(path: Path) -> None:
    _assert_round_trips_exactly(path.read_bytes())


@pytest.mark.parametrize("size", sorted(synthetic.SIZES))
def test_synthetic_patient_bundle_round_trips_exactly(size: str) -> None:
    _assert_round_trips_exactly(synthetic.bundle_bytes(size))


def _error_kinds(error: FHIRValidationError) -> list[str]:
    """`path: type` of each error, list indices dropped: `SearchParameter.base: missing`."""
    return sorted(
        {re.sub(r"\[\d+\]", "", str(e["loc"][0])) + ": " + e["type"] for e in error.errors()}
    )


@pytest.mark.parametrize("row", list(KNOWN_INVALID.values()), ids=lambda row: row["file"])
def test_known_invalid_example_fails_for_its_listed_reason(row: dict[str, Any]) -> None:
    try:
        parse_resource((OFFICIAL_EXAMPLES / row["file"]).read_bytes())
    except FHIRValidationError as error:
        assert _error_kinds(error) == row["errors"], row["reason"]
    else:
        pytest.fail(f"{row['file']} is accepted now: drop its row from known-invalid.json")


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
def test_medplum_resources_without_required_elements_are_rejected(path: Path) -> None:
    data = _json.loads(path.read_bytes())
    with pytest.raises(FHIRValidationError, match="Field required"):
        parse_resource(data)
