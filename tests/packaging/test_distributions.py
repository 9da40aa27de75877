"""The wheel and the sdist, built as a release would build them (hatchling, the build backend
in pyproject.toml): the license travels with both, and the metadata says what PyPI shows."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

from tests.shared_data import REPO_ROOT

LICENSE = (REPO_ROOT / "LICENSE").read_bytes()


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    return out


def _wheel(dist: Path) -> zipfile.ZipFile:
    (path,) = dist.glob("pymedplum-*.whl")
    return zipfile.ZipFile(path)


def _sdist(dist: Path) -> tarfile.TarFile:
    (path,) = dist.glob("pymedplum-*.tar.gz")
    return tarfile.open(path)


def _metadata(text: bytes) -> Message:
    return Parser().parsestr(text.decode())


def test_the_repository_license_is_the_apache_2_0_text() -> None:
    text = LICENSE.decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_wheel_carries_the_license_and_its_metadata(dist: Path) -> None:
    with _wheel(dist) as wheel:
        names = wheel.namelist()
        (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert wheel.read(license_name) == LICENSE
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = _metadata(wheel.read(metadata_name))
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["License-File"] == "LICENSE"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL", []))
    assert {"Medplum", "FHIR R4"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    # Our own repository's address is added when it is public; never another project's.
    assert not any("kinsteadhealth" in url for url in urls.values())
    classifiers = metadata.get_all("Classifier", [])
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Intended Audience :: Healthcare Industry" in classifiers


def test_the_wheel_holds_the_package_with_its_typing_markers_and_nothing_else(
    dist: Path,
) -> None:
    with _wheel(dist) as wheel:
        names = wheel.namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"pymedplum", "pymedplum-0.1.0.dist-info"}
    assert {"pymedplum/py.typed", "pymedplum/fhir/py.typed"} <= set(names)
    models = sorted(p.name for p in (REPO_ROOT / "src/pymedplum/fhir").glob("*.py"))
    assert (
        sorted(
            n.removeprefix("pymedplum/fhir/")
            for n in names
            if n.startswith("pymedplum/fhir/") and n.endswith(".py")
        )
        == models
    )


def test_the_sdist_carries_the_license_and_what_regenerates_the_package(dist: Path) -> None:
    with _sdist(dist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        root = sdist.getnames()[0].split("/")[0]
        license_file = sdist.extractfile(f"{root}/LICENSE")
        pkg_info = sdist.extractfile(f"{root}/PKG-INFO")
        assert license_file is not None and pkg_info is not None
        assert license_file.read() == LICENSE
        metadata = _metadata(pkg_info.read())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert {"pyproject.toml", "README.md", "specs/SPEC.lock", "codegen/__main__.py"} <= names
    assert "src/pymedplum/fhir/patient.py" in names
    assert not any(
        name.startswith(("tests/", ".venv/")) or "node_modules" in name for name in names
    )
