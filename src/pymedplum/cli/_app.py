"""The `pymedplum` command: Click commands over the sync client, Rich for tables."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import httpx
from pydantic import ValidationError as PydanticValidationError

from pymedplum import __version__, _auth, _json
from pymedplum._auth import TokenState
from pymedplum._security import check_base_url
from pymedplum.cli import _config
from pymedplum.cli._config import ConfigError, Settings
from pymedplum.cli._output import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_USAGE,
    cell,
    summary,
    validation_messages,
    write_json,
    write_ndjson,
)

__all__ = ["CommandError", "cli"]

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SETTINGS_HELP = """\b
Settings, first found wins:
  flags (--base-url, --client-id, --client-secret, --on-behalf-of, --profile)
  environment: MEDPLUM_BASE_URL, MEDPLUM_CLIENT_ID, MEDPLUM_CLIENT_SECRET,
               MEDPLUM_ON_BEHALF_OF, MEDPLUM_PROFILE
  the config file's profile (pymedplum login; pymedplum config path)
Prefer the environment or the config file for the secret: flags show in `ps`."""


class CommandError(Exception):
    """A failure the command reports itself, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _env() -> Mapping[str, str]:
    return os.environ


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _profiles(path: Path) -> dict[str, dict[str, str]]:
    profiles = _config.load_profiles(path)
    if profiles and _config.world_readable(path):
        _warn(f"{path} is readable by other users; run: chmod 600 {path}")
    return profiles


def connection_options(fn: F) -> F:
    """The server, credential and on-behalf-of options every server command takes."""
    options = [
        click.option("--profile", metavar="NAME", help="Config file profile (default: default)."),
        click.option("--base-url", metavar="URL", help="Medplum server (MEDPLUM_BASE_URL)."),
        click.option("--client-id", metavar="ID", help="OAuth client id (MEDPLUM_CLIENT_ID)."),
        click.option(
            "--client-secret",
            metavar="SECRET",
            help="OAuth client secret (MEDPLUM_CLIENT_SECRET; prefer the environment).",
        ),
        click.option(
            "--on-behalf-of",
            metavar="MEMBERSHIP",
            help="Act as this ProjectMembership/<id> (MEDPLUM_ON_BEHALF_OF).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _settings(options: Mapping[str, Any]) -> Settings:
    path = _config.config_path(_env())
    flags = {key: options.get(key) for key in _config.KEYS}
    return _config.resolve(flags, _env(), _profiles(path), options.get("profile"))


def _client(options: Mapping[str, Any]) -> Any:
    """A MedplumClient for the resolved settings (the caller closes it)."""
    from pymedplum import MedplumClient

    settings = _settings(options)
    if not settings.has_credentials:
        raise CommandError(
            "no credentials: run `pymedplum login`, or set MEDPLUM_CLIENT_ID and "
            "MEDPLUM_CLIENT_SECRET"
        )
    return MedplumClient(
        settings.base_url,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        default_on_behalf_of=settings.on_behalf_of,
    )


def _resource_ref(resource_type: str, resource_id: str | None) -> tuple[str, str]:
    """`Patient 123` or `Patient/123`."""
    if resource_id is None:
        resource_type, _, resource_id = resource_type.partition("/")
    if not resource_type or not resource_id or "/" in resource_id:
        raise CommandError("name the resource as TYPE ID or TYPE/ID (Patient 123, Patient/123)")
    return resource_type, resource_id


def _read_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {source}: {exc.strerror}") from None


def _parse_resource_json(data: bytes, source: str) -> dict[str, Any]:
    try:
        value = _json.loads(data)
    except ValueError:
        raise CommandError(f"{_label(source)} is not JSON", EXIT_INVALID) from None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise CommandError(
            f"{_label(source)} is not a FHIR resource (a JSON object with a resourceType)",
            EXIT_INVALID,
        )
    return value


def _label(source: str) -> str:
    return "standard input" if source == "-" else source


def _query_pairs(params: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise CommandError(f"search parameters are NAME=VALUE, got {param!r}")
        pairs.append((name, value))
    return pairs


# ---------------------------------------------------------------- the group


@click.group(context_settings=CONTEXT, epilog=SETTINGS_HELP + "\n\n" + EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="pymedplum")
def cli() -> None:
    """Work with a Medplum FHIR server from the terminal.

    \b
    pymedplum login                                   save credentials (mode 0600)
    pymedplum get Patient/123                         one resource, as JSON
    pymedplum search Observation subject=Patient/123  every page, as NDJSON
    pymedplum search Patient name=Smith -o table      ... or as a table
    pymedplum create patient.json                     also: update, delete
    pymedplum export out/ --type Patient              bulk $export, with a progress bar
    pymedplum validate *.json                         offline, against the models
    pymedplum mcp                                     a Model Context Protocol server
    """


# ---------------------------------------------------------------- reading


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("resource_type", metavar="TYPE")
@click.argument("resource_id", metavar="[ID]", required=False)
@click.option("--version-id", metavar="VERSION", help="Read this version (vread).")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented JSON.")
@connection_options
def get(
    resource_type: str,
    resource_id: str | None,
    version_id: str | None,
    compact: bool,
    **options: Any,
) -> None:
    """Read one resource and print it as JSON.

    \b
    pymedplum get Patient 123
    pymedplum get Patient/123 --version-id 2
    """
    rtype, rid = _resource_ref(resource_type, resource_id)
    with _client(options) as client:
        if version_id:
            resource = client.vread_resource(cast(Any, rtype), rid, version_id)
        else:
            resource = client.read_resource(cast(Any, rtype), rid)
    write_json(resource, compact=compact)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("resource_type", metavar="TYPE")
@click.argument("params", metavar="[NAME=VALUE]...", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["ndjson", "json", "table"]),
    default="ndjson",
    show_default=True,
    help="One resource per line, a JSON array, or a table.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many resources.")
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    help="Resources per request (_count); every page is read.",
)
@click.option(
    "--columns",
    metavar="PATHS",
    help="Table columns: comma-separated paths (id,name.0.family,meta.lastUpdated).",
)
@connection_options
def search(
    resource_type: str,
    params: tuple[str, ...],
    output: str,
    limit: int | None,
    page_size: int | None,
    columns: str | None,
    **options: Any,
) -> None:
    """Search, following every page, and print the matches.

    \b
    pymedplum search Patient name=Smith birthdate=ge1990-01-01
    pymedplum search Observation subject=Patient/123 -o table
    pymedplum search Patient --columns id,name.0.family,birthDate -o table
    """
    pairs = _query_pairs(params)
    if page_size is not None:
        pairs = [(k, v) for k, v in pairs if k != "_count"] + [("_count", str(page_size))]
    with _client(options) as client:
        found = _limited(client.search_resource_pages(cast(Any, resource_type), pairs), limit)
        if output == "ndjson":
            write_ndjson(found)
        elif output == "json":
            write_json(list(found))
        else:
            _print_table(list(found), columns)


def _limited(items: Iterator[Any], limit: int | None) -> Iterator[Any]:
    for count, item in enumerate(items, start=1):
        yield item
        if limit is not None and count >= limit:
            return


def _print_table(resources: list[dict[str, Any]], columns: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, box=None, pad_edge=False, header_style="bold")
    if columns:
        paths = [c.strip() for c in columns.split(",") if c.strip()]
        for path in paths:
            table.add_column(path)
        for resource in resources:
            table.add_row(*(cell(resource, path) for path in paths))
    else:
        for title in ("id", "lastUpdated", "summary"):
            table.add_column(title)
        for resource in resources:
            table.add_row(
                f"{resource.get('resourceType')}/{resource.get('id')}",
                cell(resource, "meta.lastUpdated"),
                summary(resource),
            )
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    console.print(table)
    click.echo(f"{len(resources)} resource{'s' if len(resources) != 1 else ''}", err=True)


# ---------------------------------------------------------------- writing


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("file", default="-", metavar="[FILE]")
@click.option(
    "--if-none-exist",
    metavar="QUERY",
    help="Create only if nothing matches this search (identifier=http://mrn|123).",
)
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented JSON.")
@connection_options
def create(file: str, if_none_exist: str | None, compact: bool, **options: Any) -> None:
    """Create a resource from a JSON file or standard input.

    FILE holds one resource (`-` or nothing: standard input); what the server stored is
    printed as JSON.

    \b
    pymedplum create patient.json
    cat patient.json | pymedplum create
    """
    resource = _parse_resource_json(_read_input(file), file)
    with _client(options) as client:
        if if_none_exist:
            stored = client.create_resource_if_none_exist(resource, if_none_exist)
        else:
            stored = client.create_resource(resource)
    write_json(stored, compact=compact)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("file", default="-", metavar="[FILE]")
@click.option(
    "--if-match/--no-if-match",
    default=True,
    show_default=True,
    help="Refuse the update if the resource changed since meta.versionId (412, exit 6).",
)
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented JSON.")
@connection_options
def update(file: str, if_match: bool, compact: bool, **options: Any) -> None:
    """Replace a resource from a JSON file or standard input.

    FILE holds the resource with its id (`-` or nothing: standard input); the stored
    version is printed as JSON.

    \b
    pymedplum get Patient/123 > p.json && edit p.json && pymedplum update p.json
    """
    resource = _parse_resource_json(_read_input(file), file)
    if not resource.get("id"):
        raise CommandError(f"{_label(file)}: an update needs the resource's id", EXIT_INVALID)
    with _client(options) as client:
        stored = client.update_resource(resource, if_match=if_match)
    write_json(stored, compact=compact)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("resource_type", metavar="[TYPE]", required=False)
@click.argument("resource_id", metavar="[ID]", required=False)
@click.option(
    "-f",
    "--file",
    metavar="FILE",
    help="Delete the resource in this JSON file (`-`: standard input).",
)
@connection_options
def delete(
    resource_type: str | None, resource_id: str | None, file: str | None, **options: Any
) -> None:
    """Delete a resource: TYPE ID, TYPE/ID, or the one in --file.

    \b
    pymedplum delete Patient 123
    pymedplum delete --file patient.json
    """
    if file is not None:
        if resource_type is not None:
            raise CommandError("give TYPE ID or --file, not both")
        resource = _parse_resource_json(_read_input(file), file)
        rtype, rid = resource["resourceType"], resource.get("id")
        if not rid:
            raise CommandError(f"{_label(file)}: the resource has no id", EXIT_INVALID)
    elif resource_type is None:
        raise CommandError("name the resource: TYPE ID, TYPE/ID, or --file FILE")
    else:
        rtype, rid = _resource_ref(resource_type, resource_id)
    with _client(options) as client:
        client.delete_resource(cast(Any, rtype), rid)
    click.echo(f"deleted {rtype}/{rid}", err=True)


# ---------------------------------------------------------------- bulk export


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-t",
    "--type",
    "types",
    metavar="TYPE",
    multiple=True,
    help="Export this resource type (repeat for several; default: every type).",
)
@click.option("--since", metavar="INSTANT", help="Only what changed since (2026-01-01T00:00:00Z).")
@click.option(
    "--level",
    type=click.Choice(["system", "patient", "group"]),
    default="system",
    show_default=True,
    help="$export, Patient/$export or Group/ID/$export.",
)
@click.option("--group", "group_id", metavar="ID", help="The Group, with --level group.")
@click.option(
    "-f",
    "--format",
    "output_format",
    type=click.Choice(["ndjson", "parquet"]),
    default="ndjson",
    show_default=True,
    help="Raw NDJSON files, or one Parquet file per type (needs pymedplum[parquet]).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish the export DIRECTORY holds (files already complete are not fetched).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds to wait for the server to finish exporting.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (it is shown on a terminal).")
@connection_options
def export(
    directory: Path,
    types: tuple[str, ...],
    since: str | None,
    level: str,
    group_id: str | None,
    output_format: str,
    resume: bool,
    timeout: float,
    no_progress: bool,
    **options: Any,
) -> None:
    """Bulk-export resources ($export) into DIRECTORY, with a progress bar.

    \b
    pymedplum export out/ --type Patient --type Observation
    pymedplum export out/ --since 2026-01-01T00:00:00Z --format parquet
    pymedplum export out/ --resume            after an interrupted run

    The files' paths are printed, one per line. DIRECTORY keeps the export's state
    (pymedplum-export.json), so --resume fetches only what is missing.
    """
    from contextlib import nullcontext

    from pymedplum.cli._progress import ExportProgressBar
    from pymedplum.exceptions import MedplumError

    if resume and (types or since or group_id or level != "system"):
        raise CommandError(
            "--resume takes the export DIRECTORY holds: give no --type, --since, --level or --group"
        )
    if (level == "group") != (group_id is not None):
        raise CommandError("--level group and --group ID go together")
    bar = nullcontext(None) if no_progress else ExportProgressBar()
    with _client(options) as client, bar as on_progress:
        try:
            if resume:
                job = client.resume_bulk_export(directory, timeout=timeout, on_progress=on_progress)
            else:
                job = client.bulk_export(
                    cast(Any, list(types) or None),
                    since,
                    level=cast(Any, level),
                    group_id=group_id,
                    timeout=timeout,
                    on_progress=on_progress,
                )
        except TimeoutError:
            raise CommandError(f"the export did not finish within {timeout:g} s", 1) from None
        except MedplumError:
            raise
        except ValueError as exc:  # arguments refused before anything was sent (--since ...)
            raise CommandError(str(exc)) from None
        if output_format == "parquet":
            try:
                paths = list(job.to_parquet(directory).values())
            except ImportError:
                raise CommandError(
                    "--format parquet needs: pip install 'pymedplum[parquet]'"
                ) from None
        else:
            paths = job.download(directory)
    for path in paths:
        click.echo(str(path))


# ---------------------------------------------------------------- offline validation


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@click.option(
    "--lenient",
    is_flag=True,
    help="Validate as data read from a server: keep unknown elements, accept the "
    "formats Medplum accepts beyond the spec.",
)
def validate(files: tuple[str, ...], lenient: bool) -> int:
    """Validate FHIR JSON files offline, against the models.

    No server and no credentials are needed. A file holds one resource (a Bundle's
    entries are validated with it), or one resource per line when its name ends in
    .ndjson; `-` reads standard input. Each problem is printed with its FHIR path. Exit
    code 5 when anything is invalid.

    \b
    pymedplum validate patient.json bundle.json export.ndjson
    """
    from pymedplum.helpers import parse_resource

    failures = 0
    for source in files:
        data = _read_input(source)
        documents = (
            [(f"{_label(source)}:{n}", line) for n, line in enumerate(data.splitlines(), 1)]
            if source.endswith(".ndjson")
            else [(_label(source), data)]
        )
        for where, document in documents:
            if not document.strip():
                continue
            try:
                value = _parse_resource_json(document, where)
                model = parse_resource(value, lenient=lenient)
            except CommandError as exc:
                failures += 1
                click.echo(f"{where}: invalid: {exc}")
                continue
            except (PydanticValidationError, ValueError) as exc:
                failures += 1
                click.echo(f"{where}: invalid {value.get('resourceType')}")
                if isinstance(exc, PydanticValidationError):
                    for line in validation_messages(exc):
                        click.echo(line)
                else:
                    click.echo(f"  {exc}")
                continue
            rid = getattr(model, "id", None)
            click.echo(f"{where}: ok {value['resourceType']}{'/' + rid if rid else ''}")
    return EXIT_INVALID if failures else EXIT_OK


# ---------------------------------------------------------------- credentials and config


def _verify_credentials(base_url: str, client_id: str, client_secret: str) -> None:
    """Ask the token endpoint for a token (never printed); raise on refusal."""
    url = check_base_url(base_url, allow_insecure_http=False)
    state = TokenState(
        token_url=url + "oauth2/token",
        client_id=client_id,
        client_secret=client_secret,
        access_token=None,
        cooldown=0.0,
    )
    token_url, headers, body = state.token_request()
    try:
        response = httpx.post(token_url, headers=headers, content=body, timeout=30.0)
    except httpx.RequestError as exc:
        raise CommandError(f"cannot reach {base_url}: {type(exc).__name__}", 1) from None
    if response.status_code != 200:
        raise _auth._token_error(response.status_code, response.headers, response.content)


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("--profile", default="default", show_default=True, help="Profile to save.")
@click.option(
    "--base-url",
    envvar="MEDPLUM_BASE_URL",
    default=_config.DEFAULT_BASE_URL,
    show_default=True,
    prompt="Medplum base URL",
    help="Medplum server.",
)
@click.option("--client-id", envvar="MEDPLUM_CLIENT_ID", prompt="Client id", help="Client id.")
@click.option(
    "--client-secret",
    envvar="MEDPLUM_CLIENT_SECRET",
    prompt="Client secret",
    hide_input=True,
    help="Client secret (prompted without echo when not given).",
)
@click.option(
    "--on-behalf-of",
    metavar="MEMBERSHIP",
    help="Default ProjectMembership/<id> to act as.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check the credentials against the server first.",
)
def login(
    profile: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    on_behalf_of: str | None,
    verify: bool,
) -> None:
    """Save credentials to a config file profile (mode 0600).

    Values come from the flags, then the environment, then prompts (the secret without
    echo). The credentials are checked by requesting a token; the token and the secret are
    never printed.
    """
    if verify:
        _verify_credentials(base_url, client_id, client_secret)
    path = _config.config_path(_env())
    profiles = _config.load_profiles(path)
    entry = {"base_url": base_url, "client_id": client_id, "client_secret": client_secret}
    if on_behalf_of:
        entry["on_behalf_of"] = on_behalf_of
    profiles[profile] = entry
    _config.save_profiles(path, profiles)
    checked = "checked and " if verify else ""
    click.echo(f"Credentials {checked}saved to profile {profile!r} in {path} (mode 0600).")


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """Show or change the config file (pymedplum config path)."""


@config.command("path")
def config_path() -> None:
    """Print where the config file is ($PYMEDPLUM_CONFIG to move it)."""
    click.echo(str(_config.config_path(_env())))


@config.command("show")
@click.option("--profile", metavar="NAME", help="Profile to show (default: default).")
def config_show(profile: str | None) -> None:
    """Show the settings in effect and where each comes from; the secret is never shown."""
    path = _config.config_path(_env())
    settings = _config.resolve({}, _env(), _profiles(path), profile)
    click.echo(f"profile  {settings.profile}  ({path})")
    for key in _config.KEYS:
        value = getattr(settings, key)
        secret = key in _config.SECRET_KEYS
        shown = ("(set)" if value else "-") if secret else (value or "-")
        click.echo(f"{key:<14} {shown}  [{settings.sources[key]}]")


@config.command("set")
@click.argument("key", type=click.Choice(_config.KEYS))
@click.argument("value", required=False)
@click.option("--profile", default="default", show_default=True, help="Profile to change.")
def config_set(key: str, value: str | None, profile: str) -> None:
    """Set KEY of a profile. Without VALUE (or with `-`), the value is read from a prompt
    (without echo for the secret) or standard input."""
    if value is None or value == "-":
        value = click.prompt(key, hide_input=key in _config.SECRET_KEYS, err=True)
    path = _config.config_path(_env())
    profiles = _config.load_profiles(path)
    profiles.setdefault(profile, {})[key] = value
    _config.save_profiles(path, profiles)
    click.echo(f"{key} set in profile {profile!r} ({path})", err=True)


@config.command("unset")
@click.argument("key", type=click.Choice(_config.KEYS))
@click.option("--profile", default="default", show_default=True, help="Profile to change.")
def config_unset(key: str, profile: str) -> None:
    """Remove KEY from a profile."""
    path = _config.config_path(_env())
    profiles = _config.load_profiles(path)
    profiles.get(profile, {}).pop(key, None)
    _config.save_profiles(path, profiles)
    click.echo(f"{key} removed from profile {profile!r} ({path})", err=True)


# ---------------------------------------------------------------- MCP


@cli.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Also offer create, update and delete tools (read-only without it).",
)
@click.option(
    "--allow-on-behalf-of",
    "allowed_memberships",
    metavar="MEMBERSHIP",
    multiple=True,
    help="Let tools pick one of these memberships per call (repeatable).",
)
@connection_options
def mcp(allow_writes: bool, allowed_memberships: tuple[str, ...], **options: Any) -> None:
    """Serve the Model Context Protocol over stdio (for AI assistants).

    Tools: read_resource, search_resources, validate_resource (and with --allow-writes:
    create_resource, update_resource, delete_resource). Every call acts as --on-behalf-of
    (or MEDPLUM_ON_BEHALF_OF) when set; a tool may name another membership only from
    --allow-on-behalf-of. Needs `pip install 'pymedplum[mcp]'`. See docs/mcp.md.
    """
    from pymedplum import mcp_server

    try:
        mcp_server.require_mcp()
    except ImportError:
        raise CommandError(mcp_server.INSTALL_HINT) from None
    settings = _settings(options)
    if not settings.has_credentials:
        raise CommandError(
            "no credentials: run `pymedplum login`, or set MEDPLUM_CLIENT_ID and "
            "MEDPLUM_CLIENT_SECRET"
        )
    mcp_server.serve(
        settings,
        allow_writes=allow_writes,
        allowed_memberships=allowed_memberships,
    )


def run(argv: list[str] | None = None) -> int:
    """Run a command; map what it raised to a message on stderr and an exit code."""
    from pymedplum.cli._output import describe_error, exit_code_for

    try:
        result = cli.main(args=argv, prog_name="pymedplum", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return 130
    except CommandError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.code
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except Exception as exc:  # the SDK's errors (safe to print), validation errors
        from pymedplum.exceptions import MedplumError

        if not isinstance(exc, MedplumError | PydanticValidationError):
            raise
        lines = describe_error(exc)
        click.echo(f"error: {lines[0]}", err=True)
        for line in lines[1:]:
            click.echo(line, err=True)
        return exit_code_for(exc)
    return result if isinstance(result, int) else EXIT_OK
