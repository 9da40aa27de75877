"""One formatting of every generated file: ruff format, then import sorting, with fixed
options (no configuration discovery), so output is the same wherever it is rendered."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

_RUFF_OPTIONS = (
    "--quiet",
    "--isolated",
    "--line-length",
    "100",
    "--target-version",
    "py311",
    "--config",
    "lint.isort.known-first-party = ['pymedplum']",
)


def format_tree(root: Path) -> None:
    """Format every Python file below `root` in place."""
    for command in (
        ["format", *_RUFF_OPTIONS, str(root)],
        ["check", *_RUFF_OPTIONS, "--fix-only", "--select", "I,F401", str(root)],
    ):
        subprocess.run([sys.executable, "-m", "ruff", *command], check=True)


def format_files(files: dict[str, str]) -> dict[str, str]:
    """{path: text} formatted as format_tree would."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for relative, text in files.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_text(text, encoding="utf-8")
        format_tree(root)
        return {relative: (root / relative).read_text(encoding="utf-8") for relative in files}
