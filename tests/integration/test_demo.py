"""The quickstart (examples/quickstart.py, run by `make demo`) works against the local server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pymedplum.testing.local_server import LocalMedplumServer

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def load_quickstart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pymedplum_quickstart", QUICKSTART)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart_runs_every_step_against_the_local_server(
    medplum: LocalMedplumServer, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = medplum.admin_client
    env = {
        "MEDPLUM_BASE_URL": medplum.base_url + "/",
        "MEDPLUM_CLIENT_ID": creds.client_id,
        "MEDPLUM_CLIENT_SECRET": creds.client_secret,
    }
    assert load_quickstart().main(env) == 0
    out = capsys.readouterr()
    assert "All quickstart steps behaved as documented." in out.out, out.err
    for section in ("OBO 1", "OBO 2", "OBO 3", "OBO async", "Option A", "Option B", "Option C"):
        assert section in out.out
    # What it shows reads as what it is: a demonstrated caveat is not a failure, and the
    # decimal step says why Medplum answers 1.5 to the 1.50 the SDK sent.
    assert "BROKEN" not in out.out
    assert "caveat" in out.out
    assert '"value":1.50' in out.out and "JavaScript number" in out.out
    # Nothing secret is printed: no client secret, no bearer token (JWTs start with eyJ).
    assert creds.client_secret not in out.out + out.err
    assert "eyJ" not in out.out + out.err
    obo = [r["on_behalf_of"] for r in medplum.fhir_requests() if r["on_behalf_of"]]
    assert set(obo) <= {p.membership for p in medplum.practitioners.values()}


def test_quickstart_fails_loudly_without_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_quickstart().main({}) == 1
    assert "MEDPLUM_BASE_URL" in capsys.readouterr().err
