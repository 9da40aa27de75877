"""Where the local Medplum server runs from when pymedplum is installed from a wheel: a copy
in the cache folder, its npm packages installed once (npm is faked here: no network)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from pymedplum.testing import local_server
from pymedplum.testing.local_server import MedplumServerError, ensure_installed

FAKE_NPM = """#!/bin/sh
# Stands in for `npm ci`: records where it ran and installs a marker package.
echo "$PWD" >> "$NPM_CALLS"
mkdir -p node_modules/@medplum/fhir-router
echo '{"version": "0.0.0"}' > node_modules/@medplum/fhir-router/package.json
"""


@pytest.fixture
def installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's files as in an installed wheel (site-packages, no node_modules), a cache
    folder, and a fake npm on PATH."""
    server = tmp_path / "site-packages" / "pymedplum" / "testing" / "medplum_server"
    for name in local_server.SERVER_FILES:
        source = local_server.SERVER_DIR / name
        if source.is_dir():
            shutil.copytree(source, server / name)
        else:
            server.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, server / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(local_server, "SERVER_DIR", server)
    monkeypatch.setenv("PYMEDPLUM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NPM_CALLS", str(tmp_path / "npm-calls.txt"))
    return tmp_path


def _npm_calls(root: Path) -> list[str]:
    calls = root / "npm-calls.txt"
    return calls.read_text().split() if calls.exists() else []


def test_an_installed_package_gets_a_copy_in_the_cache_with_its_npm_packages(
    installed_package: Path,
) -> None:
    directory = ensure_installed()
    assert directory.parent == installed_package / "cache"
    assert directory.name.startswith("medplum-server-")
    assert (directory / "server.mjs").is_file() and (directory / "lib" / "ops.mjs").is_file()
    assert (directory / "node_modules/@medplum/fhir-router/package.json").is_file()
    assert not (local_server.SERVER_DIR / "node_modules").exists()  # the package is untouched
    # npm ran once, in a staging folder that became the copy; nothing else is left behind.
    assert len(_npm_calls(installed_package)) == 1
    assert [p.name for p in directory.parent.iterdir()] == [directory.name]


def test_the_copy_is_installed_once(installed_package: Path) -> None:
    first = ensure_installed()
    assert ensure_installed() == first
    assert len(_npm_calls(installed_package)) == 1


def test_a_changed_server_gets_a_fresh_copy(installed_package: Path) -> None:
    first = ensure_installed()
    script = local_server.SERVER_DIR / "server.mjs"
    script.write_text(script.read_text() + "\n// changed\n")
    second = ensure_installed()
    assert second != first and (second / "server.mjs").read_text().endswith("// changed\n")
    assert len(_npm_calls(installed_package)) == 2


def test_without_npm_the_error_says_what_is_missing(
    installed_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(installed_package / "nothing-here"))
    with pytest.raises(MedplumServerError, match="npm is not on PATH"):
        ensure_installed()
    assert not list((installed_package / "cache").iterdir())  # no half-installed copy


def test_a_source_checkout_runs_the_server_in_place() -> None:
    assert ensure_installed() == local_server.SERVER_DIR
