"""The pymedplum pytest plugin, as a user meets it: a test file of theirs, run by pytest in a
subprocess, picks up the fixtures through the package's ``pytest11`` entry point.

Each run starts its own local Medplum server (a session of its own), except where it is
pointed at this session's server with ``--medplum-base-url``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pymedplum.testing.local_server import LocalMedplumServer

USER_TESTS = """
import os
import pytest
from pathlib import Path
from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.fhir import Patient


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_create_and_read(medplum_client):
    assert isinstance(medplum_client, MedplumClient)
    created = medplum_client.create_resource(Patient(name=[{"family": "Pluginson"}]))
    patient = medplum_client.read_resource("Patient", created["id"], as_fhir=Patient)
    assert patient.name[0].family == "Pluginson"


def test_each_test_starts_from_the_seed(medplum_client):
    bundle = medplum_client.search_resources("Patient", {"family": "Pluginson"})
    assert "entry" not in bundle


@pytest.mark.anyio
async def test_async_client(async_medplum_client):
    assert isinstance(async_medplum_client, AsyncMedplumClient)
    created = await async_medplum_client.create_resource(Patient(name=[{"family": "Asyncson"}]))
    assert (await async_medplum_client.read_resource("Patient", created["id"]))["id"]


def test_one_server_per_session_first(medplum_server):
    Path("server-pids.txt").write_text(str(medplum_server.pid))


def test_one_server_per_session_second(medplum_server, medplum_connection):
    assert Path("server-pids.txt").read_text() == str(medplum_server.pid)
    assert medplum_connection.server is medplum_server
    assert medplum_connection.base_url == medplum_server.base_url + "/"


def test_reset_returns_the_seed(medplum_reset):
    assert medplum_reset.requests() == []
"""


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "test_with_the_pytest_plugin.py"


def test_a_users_tests_get_the_fixtures_from_the_entry_point(pytester: pytest.Pytester) -> None:
    """The tests above and the example of docs/testing.md, in one session (one server)."""
    pytester.makepyfile(test_user=USER_TESTS, test_example=EXAMPLE.read_text())
    result = pytester.runpytest_subprocess("-p", "anyio", "-q")
    result.assert_outcomes(passed=6 + 5)


def test_without_the_plugin_the_fixtures_are_not_there(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:pymedplum", "-q")
    result.assert_outcomes(errors=6)  # every test asks for a plugin fixture
    result.stdout.fnmatch_lines(["*fixture 'medplum_client' not found*"])


def test_the_client_fixtures_use_a_medplum_named_on_the_command_line(
    pytester: pytest.Pytester, medplum: LocalMedplumServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = medplum.admin_client
    monkeypatch.setenv("PYMEDPLUM_TEST_CLIENT_ID", admin.client_id)
    monkeypatch.setenv("PYMEDPLUM_TEST_CLIENT_SECRET", admin.client_secret)
    pytester.makepyfile(
        test_user=f'''
def test_the_named_server(medplum_client, medplum_connection):
    assert medplum_connection.server is None
    assert medplum_connection.base_url == "{medplum.base_url}/"
    medplum_client.create_resource({{"resourceType": "Patient", "id": "ignored"}})
'''
    )
    medplum.clear_requests()
    result = pytester.runpytest_subprocess("--medplum-base-url", medplum.base_url, "-q")
    result.assert_outcomes(passed=1)
    assert [r["method"] for r in medplum.fhir_requests()] == ["POST"]


def test_a_named_medplum_needs_credentials(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYMEDPLUM_TEST_CLIENT_ID", raising=False)
    monkeypatch.setenv("PYMEDPLUM_TEST_BASE_URL", "https://medplum.example/")
    pytester.makepyfile(test_user="def test_it(medplum_client):\n    pass\n")
    result = pytester.runpytest_subprocess("-q")
    result.stdout.fnmatch_lines(["*PYMEDPLUM_TEST_CLIENT_ID and PYMEDPLUM_TEST_CLIENT_SECRET*"])
    assert result.ret != 0


# ---------------------------------------------------------------- cassettes

PHI = {
    "family": "Zyxwvutsr",
    "given": "Quorrabelle",
    "birth_date": "1987-06-05",
    "mrn": "MRN-99887766",
    "phone": "555-0199-4242",
    "email": "quorra.z@example.org",
    "line": "42 Wallaby Way",
    "city": "Sydneyvale",
    "postal": "20931",
}

CASSETTE_TESTS = f'''
from pathlib import Path
from pymedplum import MedplumClient
from pymedplum.fhir import Patient

PATIENT = {{
    "resourceType": "Patient",
    "name": [{{"family": "{PHI["family"]}", "given": ["{PHI["given"]}"]}}],
    "birthDate": "{PHI["birth_date"]}",
    "identifier": [{{"system": "urn:example:mrn", "value": "{PHI["mrn"]}"}}],
    "telecom": [
        {{"system": "phone", "value": "{PHI["phone"]}"}},
        {{"system": "email", "value": "{PHI["email"]}"}},
    ],
    "address": [
        {{"line": ["{PHI["line"]}"], "city": "{PHI["city"]}", "postalCode": "{PHI["postal"]}"}}
    ],
}}


def test_recorded_exchanges(medplum_vcr, medplum_connection, medplum_reset):
    with medplum_vcr.use_cassette("patient.yaml") as cassette:
        with MedplumClient(**medplum_connection.client_kwargs()) as client:
            created = client.create_resource(PATIENT)
            read = client.read_resource("Patient", created["id"], as_fhir=Patient)
            found = client.search_resources(
                "Patient", {{"family": "{PHI["family"]}", "birthdate": "{PHI["birth_date"]}"}}
            )
            client.patch_resource(
                "Patient", created["id"],
                [{{"op": "replace", "path": "/name/0/family", "value": "{PHI["family"]}x"}}],
            )
            if not cassette.play_count:  # recording: keep what a leak would look like
                Path("secrets.txt").write_text(client.access_token)
    # Replayed or live, the client works on what the cassette holds.
    assert read.id == created["id"] and len(found["entry"]) == 1
    assert cassette.all_played or not cassette.play_count
'''


def test_a_cassette_records_no_token_secret_or_phi_and_still_replays(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_cassette=CASSETTE_TESTS)
    recorded = pytester.runpytest_subprocess("-q")
    recorded.assert_outcomes(passed=1)
    cassette = Path(pytester.path, "cassettes", "patient.yaml")
    text = cassette.read_text()
    token = Path(pytester.path, "secrets.txt").read_text()
    assert len(token) > 40
    leaked = [value for value in (*PHI.values(), token) if value in text]
    assert leaked == [], f"found in the cassette: {leaked}"
    assert "pymedplum-admin-secret" not in text  # the seeded secret (the same every session)
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", text), "a JWT is in the cassette"
    # The exchanges are all there: token, create, read, search, patch.
    assert text.count("uri: ") == 5
    assert "REDACTED" in text

    replayed = pytester.runpytest_subprocess("-q", "--medplum-record-mode", "none")
    replayed.assert_outcomes(passed=1)
    assert cassette.read_text() == text  # replay wrote nothing

    # Scrubbed queries still tell searches apart: one the cassette does not hold is refused.
    changed = CASSETTE_TESTS.replace('"birthdate": ', '"gender": "unknown", "birthdate": ')
    pytester.makepyfile(test_cassette=changed)
    refused = pytester.runpytest_subprocess("-q", "--medplum-record-mode", "none")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*CannotOverwriteExistingCassetteException*"])
