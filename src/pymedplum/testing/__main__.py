"""``python -m pymedplum.testing serve|install-server``: the local Medplum server by hand.

- ``serve [--port 8103] [--token-lifetime S]``: run it in the foreground until Ctrl-C.
- ``install-server``: install its npm packages now (``npm ci``, once) and print where; the
  pytest fixtures otherwise do it on first use.
"""

from __future__ import annotations

import sys

from pymedplum.testing import local_server

USAGE = (
    "usage: python -m pymedplum.testing {serve [--port N] [--token-lifetime S] | install-server}"
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        return local_server.main(rest)
    if command == "install-server" and not rest:
        try:
            print(local_server.ensure_installed())
        except local_server.MedplumServerError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
