"""Where the test data lives.

In the repository (tests/data): the exchanges recorded from a real Medplum 4.5.2
(`cassettes/`, listed in `cassettes/SCENARIOS.md`) and the hand-made invalid resources
with their manifest (`invalid/`). Both were made for this project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "tests" / "data"
CASSETTES = DATA / "cassettes"
INVALID_DIR = DATA / "invalid"
SHARED = REPO_ROOT.parent / "shared"
EXAMPLES = SHARED / "fhir-examples"

VALID_DIRS = ("official", "medplum", "synthea")


def valid_example_files() -> list[Path]:
    return sorted(p for d in VALID_DIRS for p in (EXAMPLES / d).glob("*.json"))


def invalid_manifest() -> list[dict[str, Any]]:
    manifest: list[dict[str, Any]] = json.loads((INVALID_DIR / "manifest.json").read_bytes())
    return manifest
