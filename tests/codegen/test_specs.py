"""The vendored definitions: pinned, hash-checked, and the same version as the server."""

from __future__ import annotations

import json
import re
import subprocess
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


GENERATED_DIRS = ("src/pymedplum/fhir", "src/pymedplum/_generated", "src/pymedplum/_sync")


def _generated_files() -> list[Path]:
    return sorted(p for d in GENERATED_DIRS for p in (REPO_ROOT / d).rglob("*.py"))


def test_generated_file_headers_name_the_package_but_not_its_version() -> None:
    definitions = Definitions()
    name, version = definitions.lock["package"], definitions.lock["version"]
    for path in (REPO_ROOT / "src/pymedplum/fhir").glob("*.py"):
        first = path.read_text().splitlines()[0]
        assert f"from {name} (" in first, path.name
        assert version not in first, path.name


# Where a bump writes the version. Anything else naming it would go stale on the next bump.
VERSIONED_FILES = {
    "specs/SPEC.lock",
    "src/pymedplum/testing/medplum_server/package.json",
    "src/pymedplum/testing/medplum_server/package-lock.json",
    "src/pymedplum/fhir/__init__.py",
}


NOT_SOURCES = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache"}


def _repository_files() -> list[str]:
    """The files of the repository: git's list, or the tree minus installs and caches."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True)
    if listed.returncode == 0:
        return [name for name in listed.stdout.decode().split("\0") if name]
    return [
        str(path.relative_to(REPO_ROOT))
        for path in REPO_ROOT.rglob("*")
        if path.is_file() and not NOT_SOURCES & set(path.relative_to(REPO_ROOT).parts)
    ]


def test_only_the_files_a_bump_writes_name_the_definitions_version() -> None:
    version = Definitions().lock["version"].encode()
    # tests/data/definitions-x.y.z holds another version, vendored for the generator's tests:
    # the folder and its name are not stale when the bump happens to go to that version.
    vendored = re.compile(rb"definitions-" + re.escape(version))
    naming = {
        name
        for name in _repository_files()
        if not name.startswith("tests/data/definitions-")
        and (REPO_ROOT / name).is_file()
        and version in vendored.sub(b"", (REPO_ROOT / name).read_bytes())
    }
    assert naming == VERSIONED_FILES


def test_exactly_one_generated_line_names_the_definitions_version() -> None:
    version = Definitions().lock["version"]
    lines = [
        f"{path.relative_to(REPO_ROOT)}: {line}"
        for path in _generated_files()
        for line in path.read_text().splitlines()
        if version in line
    ]
    assert lines == [f'src/pymedplum/fhir/__init__.py: DEFINITIONS = "{Definitions().package}"']
