"""The `pymedplum` command line (see docs/cli.md): `pymedplum --help`.

Needs the `cli` extra: `pip install 'pymedplum[cli]'` (Click and Rich).
"""

from __future__ import annotations

import sys

__all__ = ["main"]

INSTALL_HINT = "the pymedplum command needs its extra: pip install 'pymedplum[cli]'"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see `pymedplum --help`)."""
    try:
        from pymedplum.cli._app import run
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("click", "rich"):
            print(INSTALL_HINT, file=sys.stderr)
            return 2
        raise
    return run(argv)


def console_main() -> None:
    """The console script's entry point."""
    sys.exit(main())
