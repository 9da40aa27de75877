"""`make demo`: start the local Medplum server, then run examples/quickstart.py against it.

The server (pymedplum.testing: Medplum's own npm packages, in memory, on 127.0.0.1) is
started on a free port and stopped afterwards; the quickstart runs in a fresh interpreter
with MEDPLUM_BASE_URL, MEDPLUM_CLIENT_ID and MEDPLUM_CLIENT_SECRET set for the seeded
admin client. The exit status is the quickstart's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pymedplum.testing import LocalMedplumServer, MedplumServerError

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    try:
        with LocalMedplumServer() as server:
            print(
                f"Local Medplum server ready at {server.base_url}/ ({server.startup_seconds:.1f} s)"
            )
            env = {
                **os.environ,
                "MEDPLUM_BASE_URL": server.base_url + "/",
                "MEDPLUM_CLIENT_ID": server.admin_client.client_id,
                "MEDPLUM_CLIENT_SECRET": server.admin_client.client_secret,
            }
            quickstart = REPO_ROOT / "examples" / "quickstart.py"
            return subprocess.run(
                [sys.executable, str(quickstart)], env=env, check=False
            ).returncode
    except MedplumServerError as exc:
        print(f"could not start the local Medplum server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
