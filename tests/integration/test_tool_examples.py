"""The examples of the live-data and tool pages run against the local server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.medplum_server import LocalMedplumServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"pymedplum_example_{name}", EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def settings(server: LocalMedplumServer) -> dict[str, str]:
    creds = server.admin_client
    return {
        "MEDPLUM_BASE_URL": server.base_url + "/",
        "MEDPLUM_CLIENT_ID": creds.client_id,
        "MEDPLUM_CLIENT_SECRET": creds.client_secret,
    }


def test_the_subscriptions_example_prints_each_change_once(
    medplum: LocalMedplumServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_example("subscriptions.py").main(settings(medplum)) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("  notification")]
    assert len(lines) == 4
    assert "status=amended value=72" in lines[-1]
    assert "deleted its Subscription" in out
    assert medplum.subscriptions()["sockets"] == 0
    assert "eyJ" not in out and medplum.admin_client.client_secret not in out
