"""Load the vendored FHIR definitions from specs/, checking them against specs/SPEC.lock."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"

JSON = dict[str, Any]


class SpecError(Exception):
    """The vendored definitions are missing, altered or inconsistent."""


@dataclass(frozen=True)
class Definitions:
    """The raw inputs of the generator, read once from specs/."""

    specs_dir: Path = SPECS_DIR

    @cached_property
    def lock(self) -> JSON:
        lock: JSON = json.loads((self.specs_dir / "SPEC.lock").read_text())
        return lock

    @property
    def package(self) -> str:
        return f"{self.lock['package']}@{self.lock['version']}"

    def bundle(self, source_name: str) -> JSON:
        """One vendored JSON file (by its name in the npm package), hash-checked."""
        gz_name = f"{source_name}.gz"
        entry = self.lock["files"].get(gz_name)
        if entry is None:
            raise SpecError(f"{gz_name} is not listed in specs/SPEC.lock")
        packed = (self.specs_dir / gz_name).read_bytes()
        if hashlib.sha256(packed).hexdigest() != entry["sha256"]:
            raise SpecError(f"specs/{gz_name} does not match the sha256 in specs/SPEC.lock")
        data: JSON = json.loads(gzip.decompress(packed))
        return data

    def resources(self, source_name: str) -> list[JSON]:
        return [entry["resource"] for entry in self.bundle(source_name).get("entry", [])]

    @cached_property
    def structure_definitions(self) -> dict[str, tuple[str, JSON]]:
        """StructureDefinitions by name, with the file each came from (Medplum's last)."""
        found: dict[str, tuple[str, JSON]] = {}
        for source in ("profiles-types.json", "profiles-resources.json", "profiles-medplum.json"):
            for resource in self.resources(source):
                if resource.get("resourceType") == "StructureDefinition":
                    found[resource["name"]] = (source, resource)
        return found

    @cached_property
    def terminology(self) -> dict[str, JSON]:
        """ValueSets and CodeSystems by canonical URL (without version)."""
        found: dict[str, JSON] = {}
        for source in ("valuesets.json", "v3-codesystems.json", "valuesets-medplum.json"):
            for resource in self.resources(source):
                if resource.get("resourceType") in ("ValueSet", "CodeSystem") and "url" in resource:
                    found[f"{resource['resourceType']}:{resource['url']}"] = resource
        return found

    @cached_property
    def search_parameters(self) -> list[JSON]:
        params: list[JSON] = []
        for source in ("search-parameters.json", "search-parameters-medplum.json"):
            params.extend(
                r for r in self.resources(source) if r.get("resourceType") == "SearchParameter"
            )
        return params
