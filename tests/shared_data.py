"""Where the test data lives: in the repository, or installed from a pinned package by
`make install`. Nothing is read from outside the repository.

- `tests/data/cassettes/`: exchanges recorded from a real Medplum 4.5.2 (listed in
  `cassettes/SCENARIOS.md`).
- `tests/data/invalid/`: hand-made invalid resources, with `manifest.json` naming the model
  each must fail and why.
- `tests/data/medplum/`: hand-written Medplum resources (Project, ProjectMembership with
  access, ClientApplication, Bot, AccessPolicy, UserConfiguration, Agent, `meta.accounts`,
  `meta.author`...), valid for Medplum's definitions; `medplum-partial/`: two that lack
  required elements.
- `tests/data/fhir-r4-examples/`: the official FHIR R4 examples, the npm package
  `hl7.fhir.r4.examples` 4.0.1 pinned with its integrity hash in `package-lock.json` and
  installed by `make install` (`npm ci`) under `node_modules/`. `known-invalid.json` lists
  the few files the specification's own rules reject, each with its reason.
- Synthea-like patient bundles: made on demand by `tests/support/synthetic.py` (seeded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "tests" / "data"
CASSETTES = DATA / "cassettes"
INVALID_DIR = DATA / "invalid"
MEDPLUM_EXAMPLES = DATA / "medplum"
MEDPLUM_PARTIAL = DATA / "medplum-partial"
OFFICIAL_PACKAGE = DATA / "fhir-r4-examples"
OFFICIAL_EXAMPLES = OFFICIAL_PACKAGE / "node_modules" / "hl7.fhir.r4.examples"
KNOWN_INVALID = OFFICIAL_PACKAGE / "known-invalid.json"


def official_example_files() -> list[Path]:
    """Every resource of the official examples package (all its JSON but package.json)."""
    return sorted(p for p in OFFICIAL_EXAMPLES.glob("*.json") if p.name != "package.json")


def known_invalid_examples() -> dict[str, dict[str, Any]]:
    """The official examples the specification's rules reject, by file name."""
    rows: list[dict[str, Any]] = json.loads(KNOWN_INVALID.read_bytes())
    return {row["file"]: row for row in rows}


def medplum_example_files() -> list[Path]:
    return sorted(MEDPLUM_EXAMPLES.glob("*.json"))


def invalid_manifest() -> list[dict[str, Any]]:
    manifest: list[dict[str, Any]] = json.loads((INVALID_DIR / "manifest.json").read_bytes())
    return manifest
