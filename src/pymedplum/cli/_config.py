"""Where the command line finds the server and the credentials: flags, then environment
variables, then a profile of the config file, then defaults.

The config file is TOML, one table per profile:

    [profiles.default]
    base_url = "https://api.medplum.com/"
    client_id = "..."
    client_secret = "..."
    on_behalf_of = "ProjectMembership/..."

It lives at `$PYMEDPLUM_CONFIG`, else `$XDG_CONFIG_HOME/pymedplum/config.toml` (by default
`~/.config/pymedplum/config.toml`), and is written with mode 0600 in a 0700 directory,
atomically. A file that others can read is reported on every use.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_BASE_URL",
    "ENV_VARS",
    "KEYS",
    "PROFILE_ENV",
    "ConfigError",
    "Settings",
    "config_path",
    "load_profiles",
    "resolve",
    "save_profiles",
    "world_readable",
]

CONFIG_ENV = "PYMEDPLUM_CONFIG"
PROFILE_ENV = "MEDPLUM_PROFILE"
DEFAULT_PROFILE = "default"
DEFAULT_BASE_URL = "https://api.medplum.com/"
#: The settings a profile can hold, and the environment variable of each.
ENV_VARS: dict[str, str] = {
    "base_url": "MEDPLUM_BASE_URL",
    "client_id": "MEDPLUM_CLIENT_ID",
    "client_secret": "MEDPLUM_CLIENT_SECRET",
    "on_behalf_of": "MEDPLUM_ON_BEHALF_OF",
}
KEYS = tuple(ENV_VARS)
SECRET_KEYS = frozenset({"client_secret"})

Source = Literal["flag", "env", "config", "default", "unset"]


class ConfigError(Exception):
    """The config file cannot be read or written, or a setting is not valid."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved settings, and where each came from. The secret never shows in repr."""

    profile: str
    base_url: str
    client_id: str | None
    client_secret: str | None = field(repr=False)
    on_behalf_of: str | None
    sources: dict[str, Source]

    @property
    def has_credentials(self) -> bool:
        return bool(self.client_id and self.client_secret)


def config_path(env: Mapping[str, str]) -> Path:
    """The config file: `$PYMEDPLUM_CONFIG`, or `pymedplum/config.toml` in the XDG config dir."""
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base).expanduser() / "pymedplum" / "config.toml"


def load_profiles(path: Path) -> dict[str, dict[str, str]]:
    """The profiles of the config file ({} when it does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: [profiles] must be a table")
    out: dict[str, dict[str, str]] = {}
    for name, values in profiles.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [profiles.{name}] must be a table")
        unknown = sorted(set(values) - set(KEYS))
        if unknown:
            raise ConfigError(f"{path}: [profiles.{name}] has unknown keys {unknown}")
        out[name] = {k: str(v) for k, v in values.items()}
    return out


def _toml_text(profiles: Mapping[str, Mapping[str, str]]) -> str:
    lines = ["# pymedplum settings (pymedplum config set / pymedplum login). Keep it private.\n"]
    for name in sorted(profiles):
        # A JSON string is a valid TOML basic string; a bare name needs quoting when odd.
        header = name if name.replace("-", "").replace("_", "").isalnum() else json.dumps(name)
        lines.append(f"\n[profiles.{header}]\n")
        for key in KEYS:
            value = profiles[name].get(key)
            if value is not None:
                lines.append(f"{key} = {json.dumps(value)}\n")
    return "".join(lines)


def save_profiles(path: Path, profiles: Mapping[str, Mapping[str, str]]) -> None:
    """Write the config file atomically with mode 0600 (its directory 0700 if created)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(_toml_text(profiles))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def world_readable(path: Path) -> bool:
    """True when the config file exists and its group or others may read it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH))


def resolve(
    flags: Mapping[str, str | None],
    env: Mapping[str, str],
    profiles: Mapping[str, Mapping[str, str]],
    profile: str | None,
) -> Settings:
    """Each setting from the first of: a flag, its environment variable, the profile."""
    name = profile or env.get(PROFILE_ENV) or DEFAULT_PROFILE
    if profile and profile not in profiles:
        raise ConfigError(f"no profile {profile!r} in the config file (pymedplum login)")
    stored = profiles.get(name, {})
    values: dict[str, str | None] = {}
    sources: dict[str, Source] = {}
    for key in KEYS:
        flag = flags.get(key)
        if flag is not None:
            values[key], sources[key] = flag, "flag"
        elif env.get(ENV_VARS[key]):
            values[key], sources[key] = env[ENV_VARS[key]], "env"
        elif stored.get(key):
            values[key], sources[key] = stored[key], "config"
        else:
            values[key], sources[key] = None, "unset"
    if values["base_url"] is None:
        values["base_url"], sources["base_url"] = DEFAULT_BASE_URL, "default"
    if bool(values["client_id"]) != bool(values["client_secret"]):
        missing = "client_secret" if values["client_id"] else "client_id"
        raise ConfigError(
            f"{missing} is not set (flag --{missing.replace('_', '-')}, "
            f"{ENV_VARS[missing]}, or the config file): give both or neither"
        )
    return Settings(
        profile=name,
        base_url=str(values["base_url"]),
        client_id=values["client_id"],
        client_secret=values["client_secret"],
        on_behalf_of=values["on_behalf_of"] or None,
        sources=sources,
    )
