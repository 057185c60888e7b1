"""Real services for tests, started on private sockets and stopped by PID.

``tests/conftest.py`` wraps it in the ``gnome_keyring`` fixture every test can ask for.

:func:`running_gnome_keyring` follows the recipe in the project's services
notes: a private ``dbus-daemon`` session bus and ``gnome-keyring-daemon``
(secrets component, login keyring unlocked with a known password) under a
fresh temporary directory.  The environment that points at them (``HOME``,
``XDG_*``, ``DBUS_SESSION_BUS_ADDRESS``) is set with ``monkeypatch``, so it
holds for the test and the subprocesses it starts, and is undone after.

The Debian packages come from ``.ci/debian-packages`` (gnome-keyring,
libsecret-tools, dbus).  A missing tool fails the test rather than skipping
it, so a machine without them cannot pass quietly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The login keyring's password; the daemon unlocks it with this at start.
KEYRING_PASSWORD = b"test-pass"
SECRETS_BUS_NAME = "org.freedesktop.secrets"
DEFAULT_COLLECTION = "/org/freedesktop/secrets/aliases/default"
_TOOLS = ("dbus-daemon", "dbus-send", "gnome-keyring-daemon", "secret-tool")
_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class GnomeKeyring:
    """A running gnome-keyring on a private session bus."""

    root: Path
    #: The variables the test runs with (also set in ``os.environ``).
    env: dict[str, str]
    bus_pid: int
    daemon_pid: int

    def run(self, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run a tool against this keyring (whatever the test did to ``os.environ``)."""
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            check=False,
            timeout=_START_TIMEOUT_S,
            env={**os.environ, **self.env},
        )

    def secret_tool_lookup(self, **attributes: str) -> bytes | None:
        """``secret-tool lookup``: the stored secret, or ``None`` when no item matches."""
        argv = ["secret-tool", "lookup"]
        for name, value in attributes.items():
            argv += [name, value]
        done = self.run(*argv)
        return done.stdout if done.returncode == 0 else None

    def lock(self) -> None:
        """Lock the default collection through the Secret Service D-Bus API.

        (``secret-tool lock`` in libsecret 0.20 hangs on a malformed object path.)
        """
        done = self.run(
            *_dbus_send("/org/freedesktop/secrets", "Service.Lock"),
            f"array:objpath:{DEFAULT_COLLECTION}",
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    def is_locked(self) -> bool:
        done = self.run(
            *_dbus_send(DEFAULT_COLLECTION, "Properties.Get", "org.freedesktop.DBus"),
            "string:org.freedesktop.Secret.Collection",
            "string:Locked",
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout.split()[-1] == b"true"


def _dbus_send(path: str, method: str, interface: str = "org.freedesktop.Secret") -> list[str]:
    return [
        "dbus-send",
        "--session",
        "--print-reply",
        f"--dest={SECRETS_BUS_NAME}",
        path,
        f"{interface}.{method}",
    ]


def _owner_pid(env: dict[str, str], name: str) -> int | None:
    """The PID owning ``name`` on the bus, asked of the bus itself (never activates it)."""
    done = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixProcessID",
            f"string:{name}",
        ],
        capture_output=True,
        check=False,
        timeout=_START_TIMEOUT_S,
        env=env,
    )
    if done.returncode != 0:
        return None
    return int(done.stdout.split()[-1])


def _running(pid: int) -> bool:
    """Alive and not a zombie: daemons reparented to a non-reaping init linger as zombies."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def _stop(pid: int, program: str) -> None:
    """SIGTERM ``pid`` if it is still ``program``; SIGKILL it after 5 s."""
    try:
        if program.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return  # gone, and the PID already reused
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _running(pid):
                return
            time.sleep(0.02)


@contextmanager
def running_gnome_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[GnomeKeyring]:
    """A private gnome-keyring with an unlocked login collection, stopped on exit."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run .ci/debian-packages as root")
    # Short: a unix socket path must fit in 107 bytes, which pytest's tmp_path may not.
    root = Path(tempfile.mkdtemp(prefix="sr-gk-"))
    home, run = root / "home", root / "run"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_RUNTIME_DIR": str(run),
    }
    Path(env["XDG_DATA_HOME"]).mkdir(parents=True)
    run.mkdir(mode=0o700)
    started: list[tuple[int, str]] = []
    try:
        bus = subprocess.run(
            [
                "dbus-daemon",
                "--session",
                "--fork",
                "--nopidfile",
                f"--address=unix:path={run}/bus",
                "--print-address=1",
                "--print-pid=1",
            ],
            capture_output=True,
            check=True,
            timeout=_START_TIMEOUT_S,
            text=True,
            env={**os.environ, **env},  # services it might activate get the private HOME
        )
        address, bus_pid = bus.stdout.split()[:2]
        started.append((int(bus_pid), "dbus-daemon"))
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        child_env = {**os.environ, **env}
        child_env.pop("PYTHON_KEYRING_BACKEND", None)
        with (root / "gnome-keyring.log").open("wb") as log:
            subprocess.run(
                ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
                input=KEYRING_PASSWORD,
                stdout=log,
                stderr=log,
                check=True,
                timeout=_START_TIMEOUT_S,
                env=child_env,
            )
        # Ready when the daemon's control socket exists and it owns the Secret Service name.
        control = run / "keyring" / "control"
        deadline = time.monotonic() + _START_TIMEOUT_S
        daemon_pid = None
        while daemon_pid is None:
            if control.is_socket():
                daemon_pid = _owner_pid(child_env, SECRETS_BUS_NAME)
            if daemon_pid is None:
                if time.monotonic() > deadline:
                    log_text = (root / "gnome-keyring.log").read_text(errors="replace")
                    pytest.fail(f"gnome-keyring-daemon did not start: {log_text}")
                time.sleep(0.02)
        started.append((daemon_pid, "gnome-keyring-daemon"))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
        yield GnomeKeyring(root, env, int(bus_pid), daemon_pid)
    finally:
        for pid, program in reversed(started):
            _stop(pid, program)
        shutil.rmtree(root, ignore_errors=True)
