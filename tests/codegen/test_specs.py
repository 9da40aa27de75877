"""The vendored definitions: pinned, hash-checked, and the same version as the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codegen.definitions import Definitions, SpecError
from codegen.specs import SERVER_DIR, SERVER_PACKAGES
from tests.shared_data import REPO_ROOT


def test_every_vendored_file_matches_its_lock_hash() -> None:
    definitions = Definitions()
    for name in definitions.lock["files"]:
        assert definitions.bundle(name.removesuffix(".gz"))["resourceType"] == "Bundle"


def test_an_altered_file_is_refused(tmp_path: Path) -> None:
    specs = REPO_ROOT / "specs"
    copy = tmp_path / "specs"
    copy.mkdir()
    for path in specs.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / "search-parameters-medplum.json.gz"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(SpecError, match="does not match the sha256"):
        Definitions(copy).bundle("search-parameters-medplum.json")


def test_the_local_server_runs_the_same_medplum_version_as_the_models() -> None:
    version = Definitions().lock["version"]
    manifest = json.loads((SERVER_DIR / "package.json").read_text())
    lock = json.loads((SERVER_DIR / "package-lock.json").read_text())
    for name in SERVER_PACKAGES:
        assert manifest["dependencies"][name] == version
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_generated_files_name_the_definitions_they_come_from() -> None:
    package = Definitions().package
    for path in (REPO_ROOT / "src/pymedplum/fhir").glob("*.py"):
        assert package in path.read_text().splitlines()[0], path.name
