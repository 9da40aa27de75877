"""Where the shared test data lives: ../shared beside the repository (never copied in)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
EXAMPLES = SHARED / "fhir-examples"
CASSETTES = SHARED / "medplum-cassettes"

VALID_DIRS = ("official", "medplum", "synthea")


def valid_example_files() -> list[Path]:
    return sorted(p for d in VALID_DIRS for p in (EXAMPLES / d).glob("*.json"))


def invalid_manifest() -> list[dict[str, Any]]:
    path = EXAMPLES / "invalid" / "manifest.json"
    manifest: list[dict[str, Any]] = json.loads(path.read_bytes())
    return manifest
