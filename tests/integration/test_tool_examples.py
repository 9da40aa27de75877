"""The examples of the live-data and tool pages run against the local server."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from pymedplum.testing.local_server import LocalMedplumServer

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


def test_the_cli_tour_runs_every_step(medplum: LocalMedplumServer) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), **settings(medplum)}
    env["HOME"] = env["XDG_CONFIG_HOME"] = tempfile.mkdtemp()
    result = subprocess.run(
        ["bash", str(EXAMPLES / "cli_tour.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(exit 5: invalid)" in out and "(exit 6)" in out and "(exit 3)" in out
    assert out.rstrip().endswith("done")
    assert medplum.admin_client.client_secret not in out + result.stderr
    assert "eyJ" not in out + result.stderr


def test_the_mcp_example_lists_tools_and_calls_them(
    medplum: LocalMedplumServer, capfd: pytest.CaptureFixture[str]
) -> None:
    # capfd: the MCP client hands the server process a real stderr file descriptor.
    create = httpx.post(
        medplum.fhir_base_url + "Patient",
        json={"resourceType": "Patient", "name": [{"family": "Example"}]},
        headers={"Authorization": f"Bearer {medplum.access_token()}"},
        trust_env=False,
    )
    create.raise_for_status()
    assert load_example("mcp_client.py").main(settings(medplum)) == 0
    out = capfd.readouterr().out
    assert "Tools: read_resource, search_resources, validate_resource" in out
    assert "validate_resource -> invalid:" in out and "Patient.birthDate" in out
    assert "search_resources -> 1 Patients" in out
    assert "read_resource -> Patient" in out
    assert "HTTP 404" in out


def test_the_opentelemetry_example_prints_one_span_per_call_without_phi(
    medplum: LocalMedplumServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_example("opentelemetry_tracing.py").main(settings(medplum)) == 0
    out = capsys.readouterr().out
    spans = [line for line in out.splitlines() if line.startswith("span ")]
    assert spans == [
        "span medplum POST /fhir/R4/Patient  status=201 attempts=1",
        "span medplum GET /fhir/R4/Patient/{id}  status=200 attempts=1",
        "span register a patient  status=- attempts=None",
        "span medplum GET /fhir/R4/Patient  status=200 attempts=1",
        "span medplum GET /fhir/R4/Patient/{id}  status=404 attempts=1",
    ]
    assert "error.type = NotFoundError" in out
    assert "Tracewell" not in out and medplum.admin_client.client_secret not in out
    assert "eyJ" not in out


def test_the_key_login_example_signs_in_with_a_key_and_by_exchange(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert load_example("key_login.py").main() == 0
    out = capsys.readouterr().out
    assert "signed in with the private key; created Patient/" in out
    assert "an unpublished key is refused: token request failed: HTTP 400" in out
    assert "(Invalid client assertion signature)" in out
    assert "token exchange: acting as Alice Smith (True)" in out
    assert "eyJ" not in out and "PRIVATE KEY" not in out
