"""python -m codegen [--check]

Renders every generated file from specs/ (models, typed client layer) and the sync client
from the async one, formats them with ruff, and then either writes them into the tree
(removing stale files in generated folders) or, with --check, fails on any changed,
missing or extra file.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from codegen.build import build_files
from codegen.formatting import format_tree

REPO_ROOT = Path(__file__).resolve().parent.parent
# Folders owned entirely by the generator: any file in them that it does not produce is stale.
GENERATED_DIRS = ("src/pymedplum/fhir", "src/pymedplum/_sync", "src/pymedplum/_generated")


def render_tree(target: Path) -> list[str]:
    files = build_files(REPO_ROOT)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    format_tree(target)
    return sorted(files)


def _tree(root: Path, dirs: tuple[str, ...]) -> set[str]:
    found: set[str] = set()
    for directory in dirs:
        base = root / directory
        if base.exists():
            found.update(
                str(p.relative_to(root))
                for p in base.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            )
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen")
    parser.add_argument("--check", action="store_true", help="fail if the tree is out of date")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        produced = set(render_tree(fresh))
        existing = _tree(REPO_ROOT, GENERATED_DIRS)
        stale = existing - produced
        changed = sorted(
            p
            for p in produced
            if not (REPO_ROOT / p).exists()
            or not filecmp.cmp(fresh / p, REPO_ROOT / p, shallow=False)
        )
        if args.check:
            for path in changed:
                print(f"out of date: {path}", file=sys.stderr)
            for path in sorted(stale):
                print(f"not generated (stale): {path}", file=sys.stderr)
            if changed or stale:
                print(
                    "generated files differ from codegen's output: run `make generate`",
                    file=sys.stderr,
                )
                return 1
            print(f"generated files in sync ({len(produced)} files)")
            return 0
        for path in changed:
            (REPO_ROOT / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh / path, REPO_ROOT / path)
        for path in stale:
            (REPO_ROOT / path).unlink()
        print(f"generated {len(produced)} files: {len(changed)} written, {len(stale)} removed")
        return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
