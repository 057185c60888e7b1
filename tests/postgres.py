"""A real PostgreSQL 15 server for tests: a private cluster and UNIX socket, stopped by pg_ctl.

:func:`running_postgres` follows the recipe in the project's services
notes: ``initdb`` a cluster in a fresh temporary directory (as the
``postgres`` user when the tests run as root, since PostgreSQL refuses to
run as root), with password (SCRAM) authentication for the role
``strongroom``, and ``pg_ctl start`` it listening on a UNIX socket in that
directory only, no TCP.  The directory is made reachable by that user
(``tmp_path`` is not).  A missing ``initdb`` or ``pg_ctl`` (Debian's
``postgresql`` package, in ``.ci/debian-packages``) fails the test
rather than skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from strongroom.settings import SecretRef

USER = "strongroom"
PASSWORD = "pg-test-password-7f3a"  # noqa: S105 - a throwaway cluster's own
PORT = 5432  # only names the socket file: the cluster listens on no TCP port
PASSWORD_VARIABLE = "STRONGROOM_TEST_PG_PASSWORD"  # noqa: S105 - a variable's name
_TIMEOUT_S = 60


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    pytest.fail("PostgreSQL not installed: apt-get install postgresql (see .ci/debian-packages)")


@dataclass
class Postgres:
    """A running cluster and how to reach it."""

    root: Path
    bin_dir: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def settings(self, dbname: str = "postgres", **overrides: Any) -> dict[str, Any]:
        """A ``postgresql`` server storage's settings for database ``dbname``."""
        password = SecretRef("env", PASSWORD_VARIABLE, environ={PASSWORD_VARIABLE: PASSWORD})
        table: dict[str, Any] = {
            "host": self.socket_dir,
            "port": PORT,
            "dbname": dbname,
            "user": USER,
            "password": password,
            "pool_min": 1,
            "pool_max": 4,
            "connect_timeout": 2.0,
        }
        return {**table, **overrides}

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """An autocommit connection as the cluster's superuser."""
        return psycopg.connect(
            host=self.socket_dir,
            port=PORT,
            user=USER,
            password=PASSWORD,
            dbname=dbname,
            autocommit=True,
        )

    def create_database(self, name: str) -> str:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def pg_ctl(self, *args: str) -> None:
        _run(self.bin_dir / "pg_ctl", "-D", str(self.data), *args)

    def start(self) -> None:
        options = f"-k {self.root} -c listen_addresses='' -p {PORT}"
        self.pg_ctl("-l", str(self.root / "log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, recovery from the WAL on the next start."""
        self.pg_ctl("-m", mode, "-w", "stop")

    def log(self) -> str:
        return (self.root / "log").read_text(errors="replace")


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(*argv: str | Path) -> None:
    done = subprocess.run(
        _as_postgres([str(part) for part in argv]),
        capture_output=True,
        check=False,
        timeout=_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}")


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A fresh cluster, started; stopped (immediately) and removed on exit."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="sr-pg-"))
    server = Postgres(root, bin_dir)
    try:
        root.chmod(0o700)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        password_file = root / "password"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres")
        _run(
            bin_dir / "initdb",
            "-D",
            str(server.data),
            "-U",
            USER,
            "--pwfile",
            str(password_file),
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        password_file.unlink()
        server.start()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            with suppress(RuntimeError):
                server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
