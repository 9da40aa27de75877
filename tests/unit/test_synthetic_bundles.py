"""tests/support/synthetic.py makes Synthea-scale patient bundles, the same bytes every time."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

from pymedplum import _json
from pymedplum._json import DecimalFloat
from tests.shared_data import REPO_ROOT
from tests.support import synthetic

# The resource types Synthea's US Core bundles hold, all of which the large bundle must have.
SYNTHEA_TYPES = {
    "Patient", "Organization", "Practitioner", "PractitionerRole", "Location", "Encounter",
    "Observation", "Condition", "Procedure", "MedicationRequest", "MedicationAdministration",
    "Immunization", "DiagnosticReport", "DocumentReference", "Claim", "ExplanationOfBenefit",
    "CarePlan", "CareTeam", "Goal", "AllergyIntolerance", "Device", "ImagingStudy",
    "Provenance", "SupplyDelivery",
}  # fmt: skip


def test_the_large_bundle_is_synthea_scale() -> None:
    raw = synthetic.bundle_bytes("large")
    bundle = _json.loads(raw)
    types = Counter(entry["resource"]["resourceType"] for entry in bundle["entry"])
    assert len(raw) >= 3_000_000
    assert set(types) == SYNTHEA_TYPES
    assert types["Observation"] > 500
    assert bundle["type"] == "transaction"


def test_observations_carry_decimal_quantities_and_components() -> None:
    bundle = _json.loads(synthetic.bundle_bytes("small"))
    observations = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    ]
    values = [o["valueQuantity"]["value"] for o in observations if "valueQuantity" in o]
    assert all(isinstance(v, DecimalFloat) for v in values)  # each keeps its JSON text
    assert any("." in v.text and v.text.endswith("0") for v in values)  # e.g. 72.40
    assert any(len(o.get("component", [])) == 2 for o in observations)  # blood pressure


def test_the_same_size_gives_the_same_bytes_in_any_process() -> None:
    code = (
        "import hashlib, sys\n"
        "from tests.support.synthetic import bundle_bytes\n"
        "sys.stdout.write(hashlib.sha256(bundle_bytes('medium')).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert digests == {hashlib.sha256(synthetic.bundle_bytes("medium")).hexdigest()}
