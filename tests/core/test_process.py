"""``strongroom.harden_process`` and the CLI's use of it: no core dumps, no same-user ptrace.

The CLI is caught at the moment it reads a secret: its passphrase comes
from ``STRONGROOM_PASSPHRASE_COMMAND``, a ``cat`` of a FIFO, so the command
stays blocked there until the test opens the FIFO's other end.  While it
waits the test looks at it from outside: ``/proc/<pid>/limits``, a process
of the same user trying to read its memory, a ``SIGSEGV``.  Every child
starts with its soft core limit raised to the hard one, so nothing passes
because of this machine's defaults.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_cli_data import (
    PASSPHRASE,
    Unprivileged,
    clean_environ,
    cli_command,
    passphrase_table,
    unprivileged,
    write_config,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_DUMPABLE is Linux's")

PR_GET_DUMPABLE = 3
#: Runs ``argv[1:]`` with the soft core-file limit raised to the hard one.
RAISE_CORE_LIMIT = (
    sys.executable,
    "-c",
    "import os, resource, sys\n"
    "_, hard = resource.getrlimit(resource.RLIMIT_CORE)\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n",
)


def core_limit(limits: str) -> tuple[str, str]:
    """(soft, hard) of "Max core file size" in a ``/proc/<pid>/limits`` text."""
    found = re.search(r"^Max core file size\s+(\S+)\s+(\S+)", limits, re.MULTILINE)
    assert found, limits
    return found[1], found[2]


def test_harden_process_zeroes_the_core_limit_and_makes_the_process_undumpable() -> None:
    probe = (
        "import ctypes, resource, strongroom\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_CORE)\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))\n"
        "prctl = ctypes.CDLL(None).prctl\n"
        f"print(prctl({PR_GET_DUMPABLE}, 0, 0, 0, 0))\n"
        "strongroom.harden_process()\n"
        "strongroom.harden_process()  # idempotent\n"
        f"print(prctl({PR_GET_DUMPABLE}, 0, 0, 0, 0))\n"
        "print(open('/proc/self/limits').read())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    before, after, limits = done.stdout.split("\n", 2)
    assert (before, after) == ("1", "0")
    assert core_limit(limits) == ("0", "0")


def test_importing_strongroom_changes_no_process_setting(tmp_path: Path) -> None:
    probe = (
        "import ctypes, resource\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_CORE)\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))\n"
        "import strongroom, strongroom.cli.main, strongroom.keys, strongroom._process\n"
        "for name in strongroom.__all__:\n"
        "    getattr(strongroom, name)\n"
        "strongroom.Strongroom(strongroom.load_config(None)).close()\n"
        "assert resource.getrlimit(resource.RLIMIT_CORE) == (hard, hard)\n"
        f"print(ctypes.CDLL(None).prctl({PR_GET_DUMPABLE}, 0, 0, 0, 0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=clean_environ(),
        cwd=tmp_path,  # the embedded default stack
    )
    assert done.stdout == "1\n"


@dataclass
class Waiting:
    """A ``strongroom init`` stopped while it reads its passphrase from a FIFO."""

    process: subprocess.Popen[bytes]
    home: Path
    user: Unprivileged
    fifo: Path
    writer: int

    def give_passphrase(self) -> tuple[int, str, str]:
        """Answer, then wait for the command; any later read finds a plain file."""
        os.write(self.writer, PASSPHRASE.encode() + b"\n")
        answer = self.home / "answer"
        answer.write_text(PASSPHRASE + "\n")
        self.user.give(answer)
        answer.replace(self.fifo)
        os.close(self.writer)
        self.writer = -1
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out.decode(), err.decode()


@contextlib.contextmanager
def init_waiting_for_its_passphrase(tmp_path: Path) -> Iterator[Waiting]:
    user = unprivileged()
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("the hard core-file limit is 0 here: nothing to lower")
    home = tmp_path / "home"
    home.mkdir()
    fifo = home / "passphrase.fifo"
    os.mkfifo(fifo, 0o600)
    config = write_config(
        home / "strongroom.toml", home / "data", passphrase_table("main"), stores=("notes",)
    )
    user.give(home)
    env = clean_environ(STRONGROOM_PASSPHRASE_COMMAND=f"{shutil.which('cat')} {fifo}")
    process = subprocess.Popen(
        [*user.launcher, *RAISE_CORE_LIMIT, *cli_command(), "--config", str(config), "init"],
        cwd=home,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    stand_in: list[int] = []

    def stand_in_if_it_ends_first() -> None:
        process.wait()
        with contextlib.suppress(OSError):  # a reader, so the open below returns
            stand_in.append(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))

    watcher = threading.Thread(target=stand_in_if_it_ends_first, daemon=True)
    watcher.start()
    writer = os.open(fifo, os.O_WRONLY)  # returns once `cat` opened it: the secret is being read
    waiting = Waiting(process, home, user, fifo, writer)
    try:
        assert process.poll() is None, process.communicate()[1].decode()
        yield waiting
    finally:
        if waiting.writer >= 0:
            os.close(waiting.writer)
        if process.poll() is None:
            process.kill()
        process.communicate()
        watcher.join(timeout=60)
        for fd in stand_in:
            os.close(fd)


def test_the_cli_is_hardened_before_it_reads_a_secret(tmp_path: Path) -> None:
    with init_waiting_for_its_passphrase(tmp_path) as waiting:
        pid = waiting.process.pid
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert core_limit(limits) == ("0", "0")
        # A process of the same user may not read its memory or environment.
        peek = subprocess.run(
            [
                *waiting.user.launcher,
                sys.executable,
                "-c",
                f"open('/proc/{pid}/environ', 'rb').read()",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert peek.returncode == 1
        assert "PermissionError" in peek.stderr
        code, out, err = waiting.give_passphrase()
    assert (code, err) == (0, "")  # hardened, it still does its work
    assert out.startswith("created account 'alice'")


def test_a_crashing_cli_leaves_no_core_file(tmp_path: Path) -> None:
    user = unprivileged()
    # Control: an ordinary process crashing the same way does leave a core here.
    control = tmp_path / "control"
    control.mkdir()
    user.give(control)
    ordinary = subprocess.Popen(
        [*user.launcher, *RAISE_CORE_LIMIT, sys.executable, "-c", "print(1, flush=True); input()"],
        cwd=control,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert ordinary.stdout is not None
    assert ordinary.stdout.readline() == b"1\n"  # running, with its limit raised
    ordinary.send_signal(signal.SIGSEGV)
    assert ordinary.wait(timeout=60) == -signal.SIGSEGV
    ordinary.communicate()
    if not list(control.glob("core*")):
        pytest.skip("kernel.core_pattern does not write core files into the working directory")

    with init_waiting_for_its_passphrase(tmp_path) as waiting:
        waiting.process.send_signal(signal.SIGSEGV)
        assert waiting.process.wait(timeout=60) == -signal.SIGSEGV
        assert [path.name for path in waiting.home.rglob("core*")] == []
