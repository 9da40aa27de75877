"""The command line's settings, config file and error mapping, in-process (pymedplum.cli)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from pymedplum import _core
from pymedplum.cli import _config, _output
from pymedplum.cli._config import ConfigError
from pymedplum.exceptions import MissingVersionIdError, NetworkError, TokenRefreshCooldownError


def error_for(status: int, outcome: dict[str, Any] | None = None) -> Exception:
    response = httpx.Response(status, json=outcome) if outcome else httpx.Response(status)
    return _core.error_from_response(response, "GET", "/fhir/R4/Patient/{id}", replay_refused=False)


def outcome(text: str, diagnostics: str = "", expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": "invalid", "details": {"text": text}}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


# ---------------------------------------------------------------- where settings come from


def test_flags_beat_environment_beat_profile_and_sources_are_reported() -> None:
    profiles = {
        "default": {"base_url": "https://config/", "client_id": "cid", "client_secret": "c"}
    }
    env = {"MEDPLUM_CLIENT_ID": "eid", "MEDPLUM_CLIENT_SECRET": "e"}
    settings = _config.resolve({"client_id": "fid", "client_secret": "f"}, env, profiles, None)
    assert (settings.base_url, settings.client_id, settings.client_secret) == (
        "https://config/",
        "fid",
        "f",
    )
    assert settings.sources == {
        "base_url": "config",
        "client_id": "flag",
        "client_secret": "flag",
        "on_behalf_of": "unset",
    }
    from_env = _config.resolve({}, env, profiles, None)
    assert (from_env.client_id, from_env.sources["client_id"]) == ("eid", "env")
    assert from_env.client_secret != "c" and "secret" not in repr(from_env).lower().replace(
        "client_secret", ""
    )


def test_the_default_server_is_medplums_and_credentials_are_optional() -> None:
    settings = _config.resolve({}, {}, {}, None)
    assert settings.base_url == "https://api.medplum.com/"
    assert settings.sources["base_url"] == "default"
    assert not settings.has_credentials


def test_a_client_id_without_a_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="client_secret is not set"):
        _config.resolve({"client_id": "x"}, {}, {}, None)


def test_profiles_are_chosen_by_flag_or_environment() -> None:
    profiles = {"prod": {"base_url": "https://prod/"}, "default": {"base_url": "https://dev/"}}
    assert _config.resolve({}, {}, profiles, "prod").base_url == "https://prod/"
    assert _config.resolve({}, {"MEDPLUM_PROFILE": "prod"}, profiles, None).base_url == (
        "https://prod/"
    )
    with pytest.raises(ConfigError, match="no profile 'staging'"):
        _config.resolve({}, {}, profiles, "staging")


def test_the_secret_never_shows_in_a_settings_repr() -> None:
    settings = _config.resolve({"client_id": "id", "client_secret": "s3cr3t-value"}, {}, {}, None)
    assert "s3cr3t-value" not in repr(settings)


# ---------------------------------------------------------------- the config file


def test_the_config_file_is_found_by_variable_or_xdg() -> None:
    assert _config.config_path({"PYMEDPLUM_CONFIG": "/x/c.toml"}) == Path("/x/c.toml")
    assert _config.config_path({"XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/pymedplum/config.toml")
    assert _config.config_path({"HOME": "/home/u"}) == Path("/home/u/.config/pymedplum/config.toml")


def test_profiles_round_trip_through_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "pymedplum" / "config.toml"
    odd = 'quote " backslash \\ newline \n unicode é'
    profiles = {"default": {"base_url": "https://a/", "client_secret": odd}, "my prod": {}}
    _config.save_profiles(path, profiles)
    assert _config.load_profiles(path) == profiles
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary left
    assert not _config.world_readable(path)
    path.chmod(0o640)
    assert _config.world_readable(path)
    _config.save_profiles(path, profiles)  # rewriting makes it private again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_missing_file_has_no_profiles_and_a_broken_one_is_an_error(tmp_path: Path) -> None:
    assert _config.load_profiles(tmp_path / "absent.toml") == {}
    broken = tmp_path / "broken.toml"
    broken.write_text("[profiles.default\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        _config.load_profiles(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[profiles.default]\npassword = "x"\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        _config.load_profiles(unknown)


# ---------------------------------------------------------------- exit codes and messages


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (404, None, 3),
        (410, None, 3),
        (401, None, 4),
        (403, None, 4),
        (400, outcome("Missing required property"), 5),
        (400, outcome("Authentication error", "Forbidden"), 4),
        (409, None, 6),
        (412, None, 6),
        (500, None, 1),
        (429, None, 1),
    ],
)
def test_each_failure_has_its_exit_code(
    status: int, body: dict[str, Any] | None, code: int
) -> None:
    assert _output.exit_code_for(error_for(status, body)) == code


def test_other_failures_map_to_their_codes() -> None:
    assert _output.exit_code_for(TokenRefreshCooldownError("cooling down", retry_after=1.0)) == 4
    assert _output.exit_code_for(MissingVersionIdError("no version")) == 2
    assert _output.exit_code_for(NetworkError("lost", possibly_committed=False)) == 1


def test_error_lines_carry_issue_texts_and_paths_but_not_diagnostics() -> None:
    exc = error_for(400, outcome("Missing required property", "echoes Jane Doe", "Patient.name"))
    lines = _output.describe_error(exc)
    assert lines[0].startswith("HTTP 400 | GET /fhir/R4/Patient/{id}")
    assert "  error: Missing required property (at Patient.name)" in lines
    assert not any("Jane Doe" in line for line in lines)


def test_table_cells_follow_dotted_paths_and_summaries_name_the_resource() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"given": ["Ann", "B"], "family": "Lee"}],
        "meta": {"lastUpdated": "2026-01-01T00:00:00Z"},
    }
    assert _output.cell(patient, "name.0.family") == "Lee"
    assert _output.cell(patient, "name.5.family") == ""
    assert _output.cell(patient, "meta.lastUpdated") == "2026-01-01T00:00:00Z"
    assert _output.cell(patient, "name.0") == '{"given":["Ann","B"],"family":"Lee"}'
    assert _output.summary(patient) == "Ann B Lee"
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "HR"}}
    assert _output.summary(observation) == "HR (final)"
    assert _output.summary({"resourceType": "Task", "status": "ready"}) == "ready"
