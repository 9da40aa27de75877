"""Start and drive the local Medplum server (``pymedplum/testing/medplum_server``) from Python.

The server is a small Node program built on Medplum's own ``@medplum/fhir-router``, shipped
inside the package; this module installs its npm packages on first use (``npm ci``), starts
it on a free loopback port, waits for its ready line, and wraps its test-only controls
(``/__test__/...``): reset to the seed, fault injection, the log of what the server received,
and token settings. It needs Node >= 20.10 and npm.

Example::

    with LocalMedplumServer() as server:
        token = server.access_token()
        httpx.get(server.fhir_base_url + "Patient", headers={"Authorization": f"Bearer {token}"})

``python -m pymedplum.testing serve [--port N]`` runs it in the foreground (``make server``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

#: The Node program, as shipped in the package.
SERVER_DIR = Path(__file__).resolve().parent / "medplum_server"
#: What a copy of it needs to run (the README stays behind).
SERVER_FILES = ("server.mjs", "package.json", "package-lock.json", "lib")
READY_PREFIX = "MEDPLUM_TEST_SERVER_READY"
DEFAULT_STARTUP_TIMEOUT = 30.0
# How long a test's raw HTTP client waits for an answer. Generous on purpose (tests never
# check timing): the first GraphQL query builds Medplum's whole GraphQL schema, which takes
# seconds on a quiet machine and over 30 s on a loaded 2-core one.
READ_TIMEOUT = 120.0
_INSTALLED = Path("node_modules") / "@medplum" / "fhir-router" / "package.json"

FaultAction = Literal["respond", "drop_before", "drop_after", "delay"]


class MedplumServerError(RuntimeError):
    """The local Medplum server could not be started or did not answer a control request."""


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """A seeded ClientApplication and its ProjectMembership."""

    client_id: str
    client_secret: str
    membership: str
    profile: str
    admin: bool


@dataclass(frozen=True, slots=True)
class SeededPractitioner:
    """A seeded Practitioner user: a ProjectMembership that can be an On-Behalf-Of target."""

    name: str
    practitioner: str
    membership: str
    user: str
    access_policy: str | None


def _node_command() -> list[str]:
    """The node executable, with the flag Node 20/21 needs for Medplum 5's global WebSocket."""
    node = os.environ.get("MEDPLUM_TEST_NODE") or shutil.which("node")
    if not node:
        raise MedplumServerError(
            "node is not on PATH (Node >= 20.10 runs the local Medplum server)"
        )
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise MedplumServerError(f"cannot run {node} --version: {exc}") from exc
    major = int(version.lstrip("v").split(".")[0])
    if major < 20:
        raise MedplumServerError(f"Node {version} is too old for @medplum 5.x; need >= 20.10")
    return [node, "--experimental-websocket"] if major < 22 else [node]


def cache_dir() -> Path:
    """Where a copy of the server and its npm packages is installed when the package itself
    is read-only territory (an installed wheel): ``$PYMEDPLUM_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/pymedplum``, else ``~/.cache/pymedplum``."""
    explicit = os.environ.get("PYMEDPLUM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pymedplum"


def _in_source_checkout() -> bool:
    """Whether the package runs from a source checkout (``src/`` layout), where the npm
    packages live beside the server, as ``make install`` puts them."""
    root = SERVER_DIR.parents[3]
    return SERVER_DIR.parents[2].name == "src" and (root / "pyproject.toml").is_file()


def _program_digest() -> str:
    """A digest of the server's files: a new version of the server gets a fresh copy."""
    digest = hashlib.sha256()
    for name in SERVER_FILES:
        path = SERVER_DIR / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(file.relative_to(SERVER_DIR).as_posix().encode() + b"\0")
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _npm_ci(directory: Path) -> None:
    npm = shutil.which("npm")
    if not npm:
        raise MedplumServerError(
            f"the local Medplum server needs its npm packages in {directory} and npm is not on "
            "PATH (install Node >= 20.10 with npm)"
        )
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise MedplumServerError(f"npm ci failed in {directory}:\n{result.stderr[-4000:]}")


def ensure_installed() -> Path:
    """The directory the server runs from, with its npm packages installed.

    In a source checkout that is the package's own ``medplum_server`` folder (``npm ci``
    there if needed, as ``make install`` does). From an installed package, the server is
    copied into `cache_dir()` under a digest of its files and ``npm ci`` runs there, once;
    concurrent first uses (pytest-xdist workers) each install into a staging folder and the
    first to finish wins.
    """
    if (SERVER_DIR / _INSTALLED).exists():
        return SERVER_DIR
    if _in_source_checkout():
        _npm_ci(SERVER_DIR)
        return SERVER_DIR
    target = cache_dir() / f"medplum-server-{_program_digest()}"
    if (target / _INSTALLED).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        for name in SERVER_FILES:
            source = SERVER_DIR / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            else:
                shutil.copy2(source, staging / name)
        _npm_ci(staging)
        try:
            staging.rename(target)
        except OSError:  # another process installed it first
            if not (target / _INSTALLED).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class LocalMedplumServer:
    """One local Medplum server process on 127.0.0.1, and a handle on its test controls.

    ``port=0`` picks a free port. ``token_lifetime`` sets ``expires_in`` (seconds) of the
    tokens the server issues until a reset (default 3600, as on Medplum).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        token_lifetime: float | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self._requested_port = port
        self._token_lifetime = token_lifetime
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._stderr: Any = None
        self._control: httpx.Client | None = None
        self._info: dict[str, Any] = {}
        self.port: int | None = None
        self.startup_seconds: float | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalMedplumServer:
        """Start the node process and wait for its ready line (raises with node's stderr)."""
        if self._process is not None:
            return self
        directory = ensure_installed()
        command = [*_node_command(), str(directory / "server.mjs")]
        command += ["--port", str(self._requested_port)]
        command += ["--parent-pid", str(os.getpid())]
        if self._token_lifetime is not None:
            command += ["--token-lifetime", str(self._token_lifetime)]
        # Lives as long as the process (closed in stop()); a file, so it can never fill up.
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        started = time.monotonic()
        self._process = subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the server
        )
        atexit.register(self.stop)
        ready = threading.Event()
        found: dict[str, str] = {}

        def read_stdout(stream: Any) -> None:
            for line in stream:  # keep draining so the pipe never fills
                if not ready.is_set() and line.startswith(READY_PREFIX):
                    for part in line.split()[1:]:
                        key, _, value = part.partition("=")
                        found[key] = value
                    ready.set()

        threading.Thread(target=read_stdout, args=(self._process.stdout,), daemon=True).start()
        deadline = started + self._startup_timeout
        while not ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                why = (
                    f"exited with code {self._process.returncode}"
                    if self._process.poll() is not None
                    else f"was not ready within {self._startup_timeout:.0f} s"
                )
                stderr = self._read_stderr()
                self.stop()
                raise MedplumServerError(f"local Medplum server {why}; stderr:\n{stderr}")
        self.startup_seconds = time.monotonic() - started
        self.port = int(found["port"])
        self._control = httpx.Client(base_url=self.base_url, timeout=30.0, trust_env=False)
        self._info = self._call("GET", "/__test__/info")
        return self

    def stop(self) -> None:
        """Stop the process by its PID: terminate, then kill if it lingers."""
        process, self._process = self._process, None
        if self._control is not None:
            self._control.close()
            self._control = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> LocalMedplumServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return str(self._stderr.read())[-8000:]

    @property
    def pid(self) -> int | None:
        """The node process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the node process is alive."""
        return self._process is not None and self._process.poll() is None

    # ---- where it is and what it was seeded with -------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self.port is None:
            raise MedplumServerError("the server is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir_base_url(self) -> str:
        """``http://127.0.0.1:PORT/fhir/R4/``."""
        return f"{self.base_url}/fhir/R4/"

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint."""
        return f"{self.base_url}/oauth2/token"

    @property
    def info(self) -> dict[str, Any]:
        """What ``GET /__test__/info`` returned at start (seed ids, credentials, versions)."""
        return self._info

    @property
    def project_id(self) -> str:
        """The seeded Project's id."""
        return str(self._info["project_id"])

    @property
    def admin_client(self) -> ClientCredentials:
        """The seeded ClientApplication whose membership is a project admin (may use OBO)."""
        return ClientCredentials(**self._info["admin_client"])

    @property
    def user_client(self) -> ClientCredentials:
        """The seeded ClientApplication whose membership is not an admin (OBO is refused)."""
        return ClientCredentials(**self._info["user_client"])

    @property
    def practitioners(self) -> dict[str, SeededPractitioner]:
        """Seeded Practitioner memberships by key: ``alice``, ``bob``, ``restricted``.

        ``restricted`` has an AccessPolicy admitting only Patients tagged
        ``http://example.org/sdk-test|restricted`` (as in the on-behalf-of cassette).
        """
        return {k: SeededPractitioner(**v) for k, v in self._info["practitioners"].items()}

    # ---- test controls ---------------------------------------------------------------------

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        if self._control is None:
            raise MedplumServerError("the server is not started")
        response = self._control.request(method, path, json=json)
        if response.status_code != 200:
            raise MedplumServerError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self, *, revoke_tokens: bool = False) -> None:
        """Return data to the seed; clear the request log, faults, token counters and lifetime.

        Issued tokens stay valid (the seed's ids never change) unless ``revoke_tokens``.
        """
        self._call("POST", "/__test__/reset", {"tokens": revoke_tokens})

    def requests(self) -> list[dict[str, Any]]:
        """What the server received, oldest first (never a token).

        Each entry has ``method``, ``path``, ``query`` (name -> values), ``on_behalf_of`` (the
        header as sent), ``acting_membership``, ``client_membership``, ``client_id``,
        ``host`` (the Host header), ``authorization`` and ``cookie`` (bools), ``auth_scheme``,
        ``if_match``, ``if_none_exist``, ``traceparent``, ``quota_window``,
        ``status`` (None when the connection was dropped first) and ``fault``.
        """
        return list(self._call("GET", "/__test__/requests")["requests"])

    def fhir_requests(self) -> list[dict[str, Any]]:
        """The logged requests under /fhir/R4."""
        return [r for r in self.requests() if r["path"].startswith("/fhir/R4")]

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/__test__/requests")

    def add_fault(
        self,
        action: FaultAction = "respond",
        *,
        status: int | None = None,
        count: int | None = 1,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: int | float | str | None = None,
        rate_limit: bool | str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay_ms: int = 0,
    ) -> dict[str, Any]:
        """Arm a fault for the next ``count`` matching requests (``None``: until cleared).

        Matching is by ``method`` and by ``path_prefix`` of the URL path (for example
        ``/fhir/R4/Patient`` or ``/oauth2/token``); /__test__ controls never match.
        ``respond`` answers ``status`` with a Medplum-style OperationOutcome (or ``body``),
        plus ``Retry-After`` and/or Medplum's ``RateLimit`` header (``rate_limit=True`` gives
        the recorded ``"fhirInteractions";r=0;t=60``); ``drop_before`` closes the connection
        before reading the request (nothing committed); ``drop_after`` processes and commits
        it, then closes the connection without answering; ``delay`` only waits ``delay_ms``
        (which also applies before any other action).
        """
        spec: dict[str, Any] = {"action": action, "count": count, "delay_ms": delay_ms}
        optional = {
            "status": status,
            "method": method,
            "path_prefix": path_prefix,
            "retry_after": retry_after,
            "rate_limit": rate_limit,
            "headers": headers,
            "body": body,
        }
        spec.update({k: v for k, v in optional.items() if v is not None})
        return dict(self._call("POST", "/__test__/faults", spec)["faults"][0])

    def fail_next(self, status: int, count: int | None = 1, **kwargs: Any) -> dict[str, Any]:
        """Answer the next ``count`` matching requests with ``status``."""
        return self.add_fault("respond", status=status, count=count, **kwargs)

    def rate_limit_next(
        self, count: int | None = 1, *, retry_after: int | float | str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Answer 429 as Medplum does (RateLimit header, no Retry-After unless given)."""
        return self.add_fault(
            "respond", status=429, count=count, retry_after=retry_after, rate_limit=True, **kwargs
        )

    def drop_next(
        self, count: int | None = 1, *, after: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """Close the connection of the next request, before or after processing it."""
        return self.add_fault("drop_after" if after else "drop_before", count=count, **kwargs)

    def delay_next(self, delay_ms: int, count: int | None = 1, **kwargs: Any) -> dict[str, Any]:
        """Wait ``delay_ms`` before handling the next ``count`` matching requests."""
        return self.add_fault("delay", delay_ms=delay_ms, count=count, **kwargs)

    def faults(self) -> list[dict[str, Any]]:
        """Armed faults with their remaining counts and hits."""
        return list(self._call("GET", "/__test__/faults")["faults"])

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._call("DELETE", "/__test__/faults")

    def set_token_lifetime(self, seconds: float) -> None:
        """``expires_in`` of tokens issued from now on (until reset)."""
        self._call("POST", "/__test__/tokens", {"lifetime_seconds": seconds})

    def expire_tokens(self) -> None:
        """Make every issued token invalid: the next FHIR request with one answers 401."""
        self._call("POST", "/__test__/tokens/expire")

    def token_stats(self) -> dict[str, Any]:
        """``token_requests`` (POSTs to /oauth2/token), ``tokens_issued``, ``active_tokens``."""
        return dict(self._call("GET", "/__test__/tokens"))

    @property
    def token_requests(self) -> int:
        """How many requests reached /oauth2/token since the last reset."""
        return int(self.token_stats()["token_requests"])

    # ---- async jobs, rate-limit budgets, project flags -------------------------------------

    def set_async_jobs(self, *, polls: int | None = None, after_ms: int | None = None) -> None:
        """How async jobs ($export, Prefer: respond-async) started from now on complete.

        A job answers 202 to its first ``polls`` status requests (default 1, as recorded) and
        completes on the next one once ``after_ms`` have passed since it started (default 0).
        """
        spec: dict[str, Any] = {}
        if polls is not None:
            spec["polls"] = polls
        if after_ms is not None:
            spec["after_ms"] = after_ms
        self._call("POST", "/__test__/async-jobs", spec)

    def complete_async_jobs(self) -> None:
        """Complete every pending async job now (its next status poll answers 200)."""
        self._call("POST", "/__test__/async-jobs/complete")

    def async_jobs(self) -> list[dict[str, Any]]:
        """Jobs started since the last reset (``id``, ``resource_type``, ``status``, ...)."""
        return list(self._call("GET", "/__test__/async-jobs")["jobs"])

    def generate_patients(self, count: int) -> None:
        """Store `count` small Patients at once (for large exports), as the seed is stored."""
        self._call("POST", "/__test__/generate", {"count": count})

    def set_storage(
        self, *, separate_origin: bool | None = None, requires_access_token: bool | None = None
    ) -> dict[str, Any]:
        """Where presigned URLs point and what export manifests say (until reset).

        ``separate_origin=True``: a second listener on 127.0.0.1 (its own port, so another
        origin) serves ``/storage/``, as hosted Medplum's storage.medplum.com; its requests
        are logged with the others (``host`` tells them apart). ``requires_access_token``:
        the manifests' ``requiresAccessToken`` (Medplum always sends false).
        """
        spec = {
            k: v
            for k, v in {
                "separate_origin": separate_origin,
                "requires_access_token": requires_access_token,
            }.items()
            if v is not None
        }
        return dict(self._call("POST", "/__test__/storage", spec))

    def set_rate_limit(
        self,
        *,
        requests: int | None = None,
        fhir_interactions: int | None = None,
        reset_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Budgets reported in the ``RateLimit`` header of normal answers (until reset)."""
        spec = {
            k: v
            for k, v in {
                "requests": requests,
                "fhir_interactions": fhir_interactions,
                "reset_seconds": reset_seconds,
            }.items()
            if v is not None
        }
        return dict(self._call("POST", "/__test__/rate-limit", spec))

    def set_fhir_quota(
        self, project: int, *, user: int | None = None, window_seconds: float = 60
    ) -> dict[str, Any]:
        """Enforce Medplum's FHIR quota (until reset): at most `project` points per window for
        the project (and `user` per acting membership), read 1, history 10, search 20, write
        100; past it, 429 with ``RateLimit: ..."fhirInteractions";r=0;t=<s>``."""
        spec = {"project": project, "user": user, "window_seconds": window_seconds}
        return dict(self._call("POST", "/__test__/fhir-quota", spec))

    def fhir_quota(self) -> dict[str, Any]:
        """The quota's state: limits, windows started, points consumed now, requests refused."""
        return dict(self._call("GET", "/__test__/fhir-quota"))

    def set_project(
        self, *, features: list[str] | None = None, super_admin: bool | None = None
    ) -> dict[str, Any]:
        """Set the seeded Project's ``features`` (seeded with ``bots`` and
        ``websocket-subscriptions``) or ``superAdmin`` (seeded false; ``$expunge`` needs it).
        Reset restores the seed."""
        spec: dict[str, Any] = {}
        if features is not None:
            spec["features"] = features
        if super_admin is not None:
            spec["super_admin"] = super_admin
        return dict(self._call("POST", "/__test__/project", spec))

    # ---- WebSocket subscriptions ------------------------------------------------------------

    def subscriptions(self) -> dict[str, Any]:
        """Open subscription sockets and their bindings (``subscription_id``, ``criteria``,
        ``membership``, ``expires_at``), the settings, and counters (``notifications_sent``,
        ``heartbeats_sent``, ``binds``)."""
        return dict(self._call("GET", "/__test__/subscriptions"))

    def set_subscriptions(
        self, *, heartbeat_ms: int | None = None, token_lifetime_seconds: float | None = None
    ) -> dict[str, Any]:
        """Heartbeat interval (default 10 s) and binding-token lifetime (default 3600 s)
        of subscriptions from now on (until reset)."""
        spec: dict[str, Any] = {}
        if heartbeat_ms is not None:
            spec["heartbeat_ms"] = heartbeat_ms
        if token_lifetime_seconds is not None:
            spec["token_lifetime_seconds"] = token_lifetime_seconds
        return dict(self._call("POST", "/__test__/subscriptions", spec))

    def drop_subscription_sockets(
        self, mode: Literal["terminate", "close", "silence"] = "terminate"
    ) -> int:
        """Break every bound subscription socket; how many.

        ``terminate`` destroys the connection (a network drop), ``close`` sends a close frame,
        ``silence`` keeps it open but sends and answers nothing more (a half-open connection).
        """
        return int(self._call("POST", "/__test__/subscriptions/drop", {"mode": mode})["dropped"])

    @property
    def terminology(self) -> dict[str, Any]:
        """The seeded CodeSystem, ValueSet and ConceptMap (``id`` and ``url`` of each)."""
        return dict(self._info["terminology"])

    # ---- client applications ---------------------------------------------------------------

    def create_client_application(
        self,
        name: str,
        *,
        jwks_uri: str | None = None,
        user_info_url: str | None = None,
        use_subject: bool = False,
    ) -> ClientCredentials:
        """A new ClientApplication of the seeded project and its ProjectMembership, made by the
        admin client through the FHIR API (data: a reset removes them).

        ``jwks_uri``: where its public keys are, for a login with a signed JWT
        (``private_key=``). ``user_info_url``: its identity provider's userinfo endpoint, for
        token exchange (``subject_token=``); ``use_subject`` matches users by ``sub`` (their
        ``externalId``) instead of ``email``. It also gets a secret, as Medplum's clients have.
        """
        secret = os.urandom(24).hex()
        client: dict[str, Any] = {
            "resourceType": "ClientApplication",
            "name": name,
            "secret": secret,
        }
        if jwks_uri is not None:
            client["jwksUri"] = jwks_uri
        if user_info_url is not None:
            client["identityProvider"] = {"userInfoUrl": user_info_url, "useSubject": use_subject}
        headers = {"Authorization": f"Bearer {self.access_token('admin')}"}
        fhir = self.fhir_base_url
        assert self._control is not None
        created = self._control.post(fhir + "ClientApplication", json=client, headers=headers)
        if created.status_code != 201:
            raise MedplumServerError(f"creating the ClientApplication: {created.text}")
        client_id = str(created.json()["id"])
        reference = {"reference": f"ClientApplication/{client_id}", "display": name}
        membership = {
            "resourceType": "ProjectMembership",
            "project": {"reference": f"Project/{self.project_id}"},
            "user": reference,
            "profile": reference,
            "admin": False,
        }
        made = self._control.post(fhir + "ProjectMembership", json=membership, headers=headers)
        if made.status_code != 201:
            raise MedplumServerError(f"creating its ProjectMembership: {made.text}")
        return ClientCredentials(
            client_id=client_id,
            client_secret=secret,
            membership=f"ProjectMembership/{made.json()['id']}",
            profile=f"ClientApplication/{client_id}",
            admin=False,
        )

    # ---- conveniences for raw-HTTP tests ---------------------------------------------------

    def access_token(self, client: Literal["admin", "user"] = "admin") -> str:
        """A bearer token for a seeded client (counts as a token request)."""
        creds = self.admin_client if client == "admin" else self.user_client
        if self._control is None:
            raise MedplumServerError("the server is not started")
        response = self._control.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
            },
        )
        if response.status_code != 200:
            raise MedplumServerError(
                f"token request failed: {response.status_code} {response.text}"
            )
        return str(response.json()["access_token"])


@contextlib.contextmanager
def running_server(**kwargs: Any) -> Iterator[LocalMedplumServer]:
    """``with running_server() as server:`` starts one server and stops it afterwards."""
    server = LocalMedplumServer(**kwargs)
    try:
        yield server.start()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until Ctrl-C (``make server``)."""
    parser = argparse.ArgumentParser(prog="python -m pymedplum.testing serve")
    parser.add_argument("--port", type=int, default=8103, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--token-lifetime", type=float, default=None, help="expires_in, seconds")
    args = parser.parse_args(argv)
    server = LocalMedplumServer(args.port, token_lifetime=args.token_lifetime)
    try:
        server.start()
    except MedplumServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    admin, user = server.admin_client, server.user_client
    print(f"Local Medplum server (pid {server.pid}) ready in {server.startup_seconds:.2f} s")
    print(f"  base URL:        {server.base_url}/")
    print(f"  FHIR base:       {server.fhir_base_url}")
    print(f"  token URL:       {server.token_url}")
    print(f"  admin client:    client_id={admin.client_id} client_secret={admin.client_secret}")
    print(f"  non-admin client: client_id={user.client_id} client_secret={user.client_secret}")
    for key, practitioner in server.practitioners.items():
        print(f"  OBO target {key:<10} {practitioner.membership} ({practitioner.name})")
    print(
        f"  test controls:   {server.base_url}/__test__/info "
        "(see pymedplum/testing/medplum_server/README.md)"
    )
    print("Press Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if not server.running:
                print("the server exited", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
