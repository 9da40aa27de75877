"""A throwaway `redis-server` for tests: 127.0.0.1, a free port, a temporary directory.

    with LocalRedisServer() as server:
        server.url        # redis://127.0.0.1:PORT/0
        server.stop()     # Redis down (for the failure tests); server.start() brings it back

`make install` installs Debian's `redis-server` package; without the binary,
`redis_server_binary()` is None and the tests that need it skip, saying why.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LocalRedisServer", "redis_server_binary", "unreachable_redis_url", "MISSING_REASON"]

MISSING_REASON = (
    "redis-server is not installed (make install installs Debian's redis-server package; "
    "as root: apt-get install redis-server)"
)


def redis_server_binary() -> str | None:
    """The redis-server executable, or None."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_redis_url() -> str:
    """The URL of a Redis that is not there: a free port nothing listens on."""
    return f"redis://127.0.0.1:{_free_port()}/0"


class LocalRedisServer:
    """One redis-server process, no persistence, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError(MISSING_REASON)
        self.binary = binary
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="pymedplum-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (on the same port after a stop) and wait until it answers."""
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self._dir.name
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 30 s")

    def stop(self) -> None:
        """Stop the server (its data is gone: nothing is persisted)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> LocalRedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._dir.cleanup()
