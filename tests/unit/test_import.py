"""`import pymedplum` stays cheap: lazy names, never the generated models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(SRC)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_import_loads_no_client_and_no_models() -> None:
    loaded = run(
        "import pymedplum; "
        "print(sorted(m for m in sys.modules if m.startswith(('pymedplum.', 'httpx'))))"
    )
    assert loaded == "[]"


def test_using_the_clients_never_imports_fhir_models() -> None:
    loaded = run(
        "from pymedplum import MedplumClient, AsyncMedplumClient, FHIRBundle; "
        "MedplumClient(); print([m for m in sys.modules if m.startswith('pymedplum.fhir')])"
    )
    assert loaded == "[]"


def test_public_import_paths() -> None:
    assert (
        run(
            "from pymedplum.client import MedplumClient as A; "
            "from pymedplum import MedplumClient as B; "
            "from pymedplum.async_client import AsyncMedplumClient;"
            "from pymedplum.exceptions import PreconditionFailedError;"
            "from pymedplum.hooks import RequestEvent, RequestAttempt, PreparedRequest;"
            "from pymedplum.bundle import FHIRBundle; print(A is B)"
        )
        == "True"
    )


def test_unknown_attribute_raises_attribute_error() -> None:
    assert (
        run("import pymedplum\ntry:\n pymedplum.Nope\nexcept AttributeError:\n print('ok')") == "ok"
    )
