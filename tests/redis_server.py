"""A real Redis for tests: private directory, free loopback port and unix socket, stopped by PID.

:func:`running_redis` follows the recipe in the project's services notes:
Debian's ``redis-server`` (from ``.ci/debian-packages``) in the foreground
with ``--save "" --appendonly no --maxmemory-policy noeviction``, on
``127.0.0.1`` at a port found free and on a unix socket in a fresh
temporary directory, optionally with a password.  It is ready when it
answers ``PING`` (the deadline is a timeout, not a wait).  ``stop()`` and
``start()`` stop it and start it again on the same port and socket, empty,
as a restart without persistence would.  A missing binary fails the test
rather than skipping it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

_START_TIMEOUT_S = 10.0


@dataclass
class RedisServer:
    """A running redis-server and how to reach it."""

    root: Path
    port: int
    password: str = ""
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.root / "redis.sock"

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"unix://{auth}{self.socket_path}?db=0"

    def admin(self) -> redis.Redis:
        """A client of the test's own (not the backend's), for CONFIG and inspection."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password or None, socket_timeout=5
        )

    def start(self) -> None:
        """Start (again) on the same port and socket; empty, as nothing is persisted."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not installed: run .ci/debian-packages as root")
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.root),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            *self.extra,
        ]  # fmt: skip
        if self.password:
            argv += ["--requirepass", self.password]
        with (self.root / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root
            )
        if not self._ready():
            self.stop()
            raise RuntimeError("redis-server did not start: " + self.log())

    def stop(self) -> None:
        """SIGTERM the server we started (by its PID); SIGKILL it after 5 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log(self) -> str:
        return (self.root / "redis.log").read_text(errors="replace")

    def _ready(self) -> bool:
        """Poll with PING until any reply (+PONG, or -NOAUTH under a password)."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(64)[:1] in {b"+", b"-"} and self.socket_path.exists():
                        return True
            except OSError:  # not listening yet
                pass
            time.sleep(0.01)  # a poll interval under a deadline, not a wait for readiness
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_redis(*, password: str = "", extra: tuple[str, ...] = ()) -> Iterator[RedisServer]:
    """A fresh redis-server, stopped and its directory removed on exit."""
    # Short: a unix socket path must fit in 107 bytes, which pytest's tmp_path may not.
    root = Path(tempfile.mkdtemp(prefix="sr-redis-"))
    server = RedisServer(root, 0, password, extra)
    try:
        for _attempt in range(3):  # another process may take the port between check and bind
            server.port = free_port()
            try:
                server.start()
                break
            except RuntimeError:
                continue
        else:
            pytest.fail(f"redis-server did not start: {server.log()}")
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
