"""The installed `pymedplum` console script against the local server (a subprocess per call).

Each test runs the script with a clean environment: its own HOME and config directory, and
only the MEDPLUM_* variables the test sets.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pymedplum.cli import main
from pymedplum.testing.local_server import LocalMedplumServer

PYMEDPLUM = Path(sys.executable).parent / "pymedplum"
SERVER_COMMANDS = ("get", "search", "create", "update", "delete", "export", "mcp")

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def config_file(home: Path) -> Path:
    return home / "cfg" / "pymedplum" / "config.toml"


@pytest.fixture
def run(home: Path) -> Run:
    """`run(*args, env={...}, input=...)`: the console script with a clean environment."""

    def invoke(
        *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        clean = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "cfg"),
            "LANG": "C.UTF-8",
            "COLUMNS": "200",
        }
        return subprocess.run(
            [str(PYMEDPLUM), *args],
            env={**clean, **(env or {})},
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
        )

    return invoke


@pytest.fixture
def creds(medplum: LocalMedplumServer) -> dict[str, str]:
    admin = medplum.admin_client
    return {
        "MEDPLUM_BASE_URL": medplum.base_url + "/",
        "MEDPLUM_CLIENT_ID": admin.client_id,
        "MEDPLUM_CLIENT_SECRET": admin.client_secret,
    }


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def no_secrets(result: subprocess.CompletedProcess[str], server: LocalMedplumServer) -> None:
    text = result.stdout + result.stderr
    assert server.admin_client.client_secret not in text
    assert "eyJ" not in text  # no bearer token (a JWT)


def patient(family: str = "Cli", **extra: Any) -> str:
    return json.dumps({"resourceType": "Patient", "name": [{"family": family}], **extra})


# ---------------------------------------------------------------- help and usage


def test_help_lists_every_command_the_settings_and_the_exit_codes(run: Run) -> None:
    out = ok(run("--help")).stdout
    for command in (*SERVER_COMMANDS, "login", "config", "validate"):
        assert f"  {command} " in out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "130 "):
        assert f"\n    {code}" in out
    assert "MEDPLUM_CLIENT_SECRET" in out


def test_every_server_command_takes_on_behalf_of_and_the_connection_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process (the same code as the console script; spawning it six times adds nothing).
    for command in SERVER_COMMANDS:
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        for flag in ("--on-behalf-of", "--base-url", "--client-id", "--client-secret"):
            assert flag in out, (command, flag)
        assert "--profile" in out and "Exit codes:" in out


def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "cfg"))
    assert main(["search"]) == 2  # missing TYPE
    assert main(["search", "Patient", "name"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert main(["get", "Patient"]) == 2  # no id
    assert main(["delete"]) == 2


def test_without_credentials_a_server_command_exits_2_and_says_how_to_log_in(run: Run) -> None:
    result = run("get", "Patient/1")
    assert result.returncode == 2
    assert "pymedplum login" in result.stderr


# ---------------------------------------------------------------- credentials


def test_login_checks_the_credentials_and_writes_a_private_config_file(
    run: Run, medplum: LocalMedplumServer, config_file: Path
) -> None:
    admin = medplum.admin_client
    result = ok(
        run(
            "login",
            "--base-url",
            medplum.base_url + "/",
            "--client-id",
            admin.client_id,
            input=admin.client_secret + "\n",  # the prompt, without echo
        )
    )
    no_secrets(result, medplum)
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    assert admin.client_secret in config_file.read_text()
    assert medplum.token_requests == 1  # the check

    shown = ok(run("config", "show"))
    no_secrets(shown, medplum)
    assert "client_secret  (set)  [config]" in shown.stdout
    assert ok(run("search", "Patient", "--limit", "1")).returncode == 0  # uses the profile


def test_login_with_a_wrong_secret_exits_4_and_saves_nothing(
    run: Run, medplum: LocalMedplumServer, config_file: Path
) -> None:
    result = run(
        "login",
        "--base-url",
        medplum.base_url + "/",
        "--client-id",
        medplum.admin_client.client_id,
        "--client-secret",
        "not-the-secret",
    )
    assert result.returncode == 4
    assert "not-the-secret" not in result.stdout + result.stderr
    assert not config_file.exists()


def test_flags_beat_the_environment_which_beats_the_config_file(
    run: Run, medplum: LocalMedplumServer, creds: dict[str, str], config_file: Path
) -> None:
    ok(run("config", "set", "base_url", medplum.base_url + "/"))
    ok(run("config", "set", "client_id", "wrong-id"))
    ok(run("config", "set", "client_secret", input="wrong-secret\n"))
    assert run("search", "Patient", "--limit", "1").returncode == 4  # config alone: refused
    env = {"MEDPLUM_CLIENT_ID": creds["MEDPLUM_CLIENT_ID"]}
    env["MEDPLUM_CLIENT_SECRET"] = creds["MEDPLUM_CLIENT_SECRET"]
    ok(run("search", "Patient", "--limit", "1", env=env))  # the environment wins
    flagged = run("search", "Patient", "--client-secret", "flag-secret", env=env)
    assert flagged.returncode == 4  # the flag wins over the environment
    shown = ok(run("config", "show", env=env)).stdout
    assert "client_id      " + creds["MEDPLUM_CLIENT_ID"] + "  [env]" in shown
    assert "wrong-secret" not in shown and stat.S_IMODE(config_file.stat().st_mode) == 0o600


def test_a_config_file_others_can_read_is_reported(
    run: Run, medplum: LocalMedplumServer, config_file: Path
) -> None:
    ok(run("config", "set", "base_url", medplum.base_url + "/"))
    config_file.chmod(0o644)
    result = run("config", "show")
    assert "readable by other users" in result.stderr and "chmod 600" in result.stderr


# ---------------------------------------------------------------- reading


def test_get_prints_the_resource_and_exits_3_when_missing_or_deleted(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer
) -> None:
    created = json.loads(ok(run("create", env=creds, input=patient("Getter"))).stdout)
    got = json.loads(ok(run("get", f"Patient/{created['id']}", env=creds)).stdout)
    assert got == created
    same = json.loads(ok(run("get", "Patient", created["id"], "--compact", env=creds)).stdout)
    assert same == created
    version = created["meta"]["versionId"]
    vread = run("get", f"Patient/{created['id']}", "--version-id", version, env=creds)
    assert json.loads(ok(vread).stdout)["id"] == created["id"]
    assert run("get", "Patient/does-not-exist", env=creds).returncode == 3
    ok(run("delete", f"Patient/{created['id']}", env=creds))
    gone = run("get", f"Patient/{created['id']}", env=creds)
    assert gone.returncode == 3 and "410" in gone.stderr


def test_search_reads_every_page_as_ndjson_json_or_a_table(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer
) -> None:
    token = medplum.access_token()
    with httpx.Client(base_url=medplum.fhir_base_url, trust_env=False) as http:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        ids = {
            http.post("Patient", content=patient("Paging"), headers=headers).json()["id"]
            for _ in range(23)
        }
    medplum.clear_requests()
    lines = ok(run("search", "Patient", "name=Paging", "--page-size", "10", env=creds)).stdout
    found = [json.loads(line) for line in lines.splitlines()]
    assert {p["id"] for p in found} == ids and len(found) == 23
    pages = [r for r in medplum.fhir_requests() if r["path"] == "/fhir/R4/Patient"]
    assert len(pages) == 3

    array = json.loads(ok(run("search", "Patient", "name=Paging", "-o", "json", env=creds)).stdout)
    assert len(array) == 23
    limited = ok(run("search", "Patient", "name=Paging", "--limit", "5", env=creds)).stdout
    assert len(limited.splitlines()) == 5

    table = ok(run("search", "Patient", "name=Paging", "-o", "table", env=creds))
    rows = [line for line in table.stdout.splitlines() if line.startswith("Patient/")]
    assert len(rows) == 23 and all("Paging" in row for row in rows)
    assert "23 resources" in table.stderr
    columns = ("--columns", "id,name.0.family")
    custom = ok(run("search", "Patient", "name=Paging", "-o", "table", *columns, env=creds))
    assert sum("Paging" in line for line in custom.stdout.splitlines()) == 23


# ---------------------------------------------------------------- writing


def test_create_update_and_delete_from_files_and_standard_input(
    run: Run, creds: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "patient.json"
    source.write_text(patient("Writer", gender="female"))
    created = json.loads(ok(run("create", str(source), env=creds)).stdout)
    assert created["gender"] == "female"

    created["gender"] = "male"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(created))
    updated = json.loads(ok(run("update", str(edited), env=creds)).stdout)
    assert updated["gender"] == "male"
    assert updated["meta"]["versionId"] != created["meta"]["versionId"]

    # The edited file still names the old version: If-Match refuses it (412, exit 6).
    stale = run("update", str(edited), env=creds)
    assert stale.returncode == 6
    ok(run("update", "--no-if-match", env=creds, input=edited.read_text()))

    ok(run("delete", "--file", str(edited), env=creds))
    assert run("get", f"Patient/{created['id']}", env=creds).returncode == 3
    second = json.loads(ok(run("create", env=creds, input=patient("Writer"))).stdout)
    assert "deleted Patient/" in ok(run("delete", "Patient", second["id"], env=creds)).stderr


def test_conditional_create_returns_the_existing_match(run: Run, creds: dict[str, str]) -> None:
    body = patient("Once", identifier=[{"system": "http://mrn", "value": "42"}])
    first = json.loads(ok(run("create", env=creds, input=body)).stdout)
    again = run("create", "--if-none-exist", "identifier=http://mrn|42", env=creds, input=body)
    assert json.loads(ok(again).stdout)["id"] == first["id"]


def test_a_resource_the_server_refuses_exits_5_naming_the_problem(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer
) -> None:
    refused = run("create", env=creds, input='{"resourceType": "Observation", "status": "final"}')
    assert refused.returncode == 5
    assert "Observation.code" in refused.stderr
    not_json = run("create", env=creds, input="{not json")
    assert not_json.returncode == 5 and "not JSON" in not_json.stderr
    assert run("create", env=creds, input="[1, 2]").returncode == 5
    no_secrets(refused, medplum)


def test_server_and_authentication_failures_have_their_own_exit_codes(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer
) -> None:
    medplum.fail_next(500, method="GET", path_prefix="/fhir/R4/Patient")
    assert run("get", "Patient/x", env=creds).returncode == 1
    wrong = run("get", "Patient/x", env={**creds, "MEDPLUM_CLIENT_SECRET": "nope-secret"})
    assert wrong.returncode == 4 and "nope-secret" not in wrong.stderr
    medplum.fail_next(403, method="GET", path_prefix="/fhir/R4/Patient")
    assert run("get", "Patient/x", env=creds).returncode == 4


# ---------------------------------------------------------------- on behalf of


def test_on_behalf_of_reaches_every_request_of_every_command(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    alice = medplum.practitioners["alice"].membership
    obo = ("--on-behalf-of", alice)
    created = json.loads(ok(run("create", *obo, env=creds, input=patient("Obo"))).stdout)
    ref = f"Patient/{created['id']}"
    ok(run("get", ref, *obo, env=creds))
    ok(run("search", "Patient", "name=Obo", *obo, env=creds))
    edited = tmp_path / "p.json"
    edited.write_text(json.dumps({**created, "gender": "other"}))
    ok(run("update", str(edited), *obo, env=creds))
    ok(run("delete", ref, *obo, env=creds))

    calls = [r for r in medplum.fhir_requests() if r["path"].startswith("/fhir/R4/Patient")]
    assert [r["method"] for r in calls] == ["POST", "GET", "GET", "PUT", "DELETE"]
    assert {r["on_behalf_of"] for r in calls} == {alice}
    assert created["meta"]["onBehalfOf"]["reference"] == medplum.practitioners["alice"].practitioner


def test_on_behalf_of_from_the_environment_and_its_refusals(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer
) -> None:
    restricted = medplum.practitioners["restricted"].membership
    created = json.loads(ok(run("create", env=creds, input=patient("Hidden"))).stdout)
    env = {**creds, "MEDPLUM_ON_BEHALF_OF": restricted}
    # The restricted membership may not see an untagged Patient: 404, exit 3.
    assert run("get", f"Patient/{created['id']}", env=env).returncode == 3
    assert medplum.fhir_requests()[-1]["on_behalf_of"] == restricted
    # A non-admin client may not act on behalf of anyone: Medplum's 400
    # "Authentication error", exit 4.
    user = medplum.user_client
    as_user = {
        **creds,
        "MEDPLUM_CLIENT_ID": user.client_id,
        "MEDPLUM_CLIENT_SECRET": user.client_secret,
    }
    refused = run("get", f"Patient/{created['id']}", "--on-behalf-of", restricted, env=as_user)
    assert refused.returncode == 4


# ---------------------------------------------------------------- offline validation


def test_validate_checks_files_offline_and_names_each_problem(run: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(patient("Valid", id="p1", birthDate="1990-01-01"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Observation", "status": "done", "code": {"text": "x"}}')
    lines = tmp_path / "mixed.ndjson"
    invalid_date = '{"resourceType": "Patient", "birthDate": "2000-13-01"}'
    lines.write_text(patient("A") + "\n" + invalid_date + "\n")

    assert ok(run("validate", str(good))).stdout.strip() == f"{good}: ok Patient/p1"
    result = run("validate", str(good), str(bad), str(lines))  # no credentials needed
    assert result.returncode == 5
    assert f"{bad}: invalid Observation" in result.stdout
    assert "Observation.status: Input should be" in result.stdout
    assert "'done'" not in result.stdout  # the offending value is not echoed
    assert f"{lines}:1: ok Patient" in result.stdout
    assert f"{lines}:2: invalid Patient" in result.stdout and "Patient.birthDate" in result.stdout

    piped = run("validate", "-", input=patient("Stdin"))
    assert ok(piped).stdout.strip() == "standard input: ok Patient"
    junk = run("validate", "-", input="nope")
    assert junk.returncode == 5 and "not JSON" in junk.stdout


def test_export_writes_every_resource_of_the_types_asked_and_prints_the_paths(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    alice = medplum.practitioners["alice"].membership
    for family in ("Exported1", "Exported2", "Exported3"):
        ok(run("create", env=creds, input=patient(family)))
    on_server = httpx.get(
        medplum.fhir_base_url + "Patient",
        params={"_count": 1000},
        headers={"Authorization": f"Bearer {medplum.access_token()}"},
    ).json()["entry"]
    out = tmp_path / "out"
    result = ok(run("export", str(out), "--type", "Patient", "--on-behalf-of", alice, env=creds))

    paths = [Path(line) for line in result.stdout.splitlines()]
    assert paths and all(p.parent == out and p.name.startswith("Patient.") for p in paths)
    exported = [json.loads(line) for p in paths for line in p.read_text().splitlines()]
    assert {r["id"] for r in exported} == {e["resource"]["id"] for e in on_server}
    assert (out / "pymedplum-export.json").is_file()
    kickoff = [r for r in medplum.fhir_requests() if r["path"].endswith("$export")]
    assert kickoff and kickoff[0]["query"]["_type"] == ["Patient"]
    assert {r["on_behalf_of"] for r in kickoff} == {alice}


def test_export_resume_fetches_nothing_already_complete(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    ok(run("create", env=creds, input=patient("Resumed")))
    out = tmp_path / "out"
    first = ok(run("export", str(out), "--type", "Patient", env=creds)).stdout
    before = len(medplum.fhir_requests())
    again = ok(run("export", str(out), "--resume", env=creds)).stdout
    assert again == first  # the same files, already complete
    fetched = [r for r in medplum.fhir_requests()[before:] if "/storage/" in r["path"]]
    assert fetched == []


def test_export_refuses_bad_arguments_before_any_request(
    run: Run, creds: dict[str, str], medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    before = len(medplum.fhir_requests())
    naive = run("export", str(tmp_path / "o"), "--since", "2026-01-01T00:00:00", env=creds)
    group = run("export", str(tmp_path / "o"), "--level", "group", env=creds)
    resume = run("export", str(tmp_path / "o"), "--resume", "--type", "Patient", env=creds)
    assert [r.returncode for r in (naive, group, resume)] == [2, 2, 2]
    assert "time zone" in naive.stderr or "zone" in naive.stderr
    assert len(medplum.fhir_requests()) == before
