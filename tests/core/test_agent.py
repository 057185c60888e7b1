"""The unlock agent, run as a user runs it: ``strongroom unlock``, commands, ``strongroom lock``.

Each test gives the agent a runtime directory of its own under ``tmp_path``
(``XDG_RUNTIME_DIR``).  A command proves it was served by the agent by
succeeding without any passphrase source; a command proves the key is gone
by failing, exit 4, in the same way.  Waiting for an agent to end uses a
pidfd, so no test sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_data import (
    FILE_VARIABLE,
    Account,
    cli_command,
    make_account,
    snapshot,
    unprivileged,
)

from strongroom.agent import _wire

GONE_TIMEOUT_S = 60.0


@pytest.fixture
def account(tmp_path: Path) -> Iterator[Account]:
    """An initialised account with one record, and an agent runtime directory of its own."""
    made = make_account(tmp_path)
    run = Path(tempfile.mkdtemp(prefix="sr-"))  # short: a socket's path has at most 107 bytes
    made.env["XDG_RUNTIME_DIR"] = str(run)
    made.run("init")
    made.run("put", "notes", "a", stdin=b"hello")
    yield made
    while _STARTED:  # an agent a failing test left running
        pid = _STARTED.pop()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    shutil.rmtree(run)


#: Agents this module started, stopped by pid at teardown if still running.
_STARTED: list[int] = []


def without_passphrase(account: Account, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in account.env.items() if name != FILE_VARIABLE}
    return {**env, **extra}


def unlock(account: Account, *, env: dict[str, str] | None = None) -> dict[str, object]:
    state: dict[str, object] = json.loads(account.run("unlock", "--json", env=env).stdout)["agent"]
    assert state["unlocked"] is True
    _STARTED.append(int(str(state["pid"])))
    return state


def runtime(account: Account) -> Path:
    return Path(account.env["XDG_RUNTIME_DIR"]) / "strongroom"


def wait_gone(pid: int) -> None:
    """Return once process ``pid`` has exited (bounded: an agent that never ends fails)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], GONE_TIMEOUT_S)
        assert ready, f"agent {pid} is still running"
    finally:
        os.close(fd)


def test_the_agent_serves_commands_and_lock_drops_the_key(account: Account) -> None:
    state = unlock(account)
    pid = int(str(state["pid"]))
    directory = runtime(account)
    info = directory.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o700)
    (sock,) = directory.iterdir()
    info = sock.lstat()
    assert stat.S_ISSOCK(info.st_mode)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o600)

    bare = without_passphrase(account)  # only the agent can serve these
    assert account.run("get", "notes", "a", env=bare).stdout == b"hello"
    account.run("put", "notes", "b", stdin=b"world", env=bare)
    account.run("put", "notes", "x\ny", stdin=b"v", env=bare)
    assert account.json("ls", "notes")["keys"] == ["a", "b", "x\ny"]
    assert account.run("ls", "notes", env=bare).stdout == b"a\nb\n'x\\ny'\n"  # one line each
    account.run("rm", "notes", "x\ny", env=bare)
    account.run("rm", "notes", "a", env=bare)
    assert account.run("get", "notes", "b", env=bare).stdout == b"world"
    # another stack (here an override) is never served by this agent
    other = without_passphrase(account, STRONGROOM__STRONGROOM__IDLE_TIMEOUT="7")
    account.error("get", "notes", "b", code=4, env=other)
    again = json.loads(account.run("unlock", "--json", env=bare).stdout)["agent"]
    assert again["pid"] == pid  # one agent per stack; no second unlock needed
    status = json.loads(account.run("status", "--json", env=bare).stdout)
    assert (status["locked"], status["agent"]["pid"]) == (False, pid)

    locked = json.loads(account.run("lock", "--json").stdout)["agent"]
    assert locked["pid"] == pid
    assert locked["unlocked"] is False  # the keys were wiped before it answered
    wait_gone(pid)
    assert list(directory.iterdir()) == []
    account.error("get", "notes", "b", code=4, env=bare)
    assert json.loads(account.run("lock", "--json").stdout) == {"agent": None}
    status = json.loads(account.run("status", "--json", env=bare).stdout)
    assert (status["locked"], status["agent"]) == (True, None)


def test_the_idle_timeout_drops_the_key(account: Account) -> None:
    env = {**account.env, "STRONGROOM__STRONGROOM__IDLE_TIMEOUT": "0.5"}
    state = unlock(account, env=env)
    assert state["idle_timeout"] == 0.5
    wait_gone(int(str(state["pid"])))
    assert list(runtime(account).iterdir()) == []
    bare = without_passphrase(account, STRONGROOM__STRONGROOM__IDLE_TIMEOUT="0.5")
    account.error("get", "notes", "a", code=4, env=bare)


def test_the_end_of_the_login_session_drops_the_key(account: Account) -> None:
    """The agent watches the session's leader: here a shell, standing in for the login shell."""
    command = " ".join([*cli_command(), "--config", str(account.config), "unlock"])
    with subprocess.Popen(
        ["/bin/sh", "-c", f"{command} && exec cat"],
        env=account.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    ) as leader:
        try:
            assert leader.stdout is not None
            line = leader.stdout.readline().decode()  # unlocked: agent <pid> holds account ...
            pid = int(line.split()[2])
            _STARTED.append(pid)
            account.run("get", "notes", "a", env=without_passphrase(account))
        finally:
            leader.kill()
    wait_gone(pid)
    assert list(runtime(account).iterdir()) == []
    account.error("get", "notes", "a", code=4, env=without_passphrase(account))


def test_a_foreground_agent_serves_from_the_unlocking_process(account: Account) -> None:
    command = [*cli_command(), "--config", str(account.config), "unlock", "--foreground"]
    with subprocess.Popen(command, env=account.env, stdout=subprocess.PIPE) as agent:
        try:
            assert agent.stdout is not None
            line = agent.stdout.readline().decode()  # unlocked: agent <pid> holds account ...
            assert int(line.split()[2]) == agent.pid
            bare = without_passphrase(account)
            assert account.run("get", "notes", "a", env=bare).stdout == b"hello"
            account.run("lock")
            assert agent.wait(timeout=GONE_TIMEOUT_S) == 0
        finally:
            agent.kill()
    assert list(runtime(account).iterdir()) == []


def test_a_killed_agent_leaves_nothing_behind(account: Account) -> None:
    before = snapshot(account.data_dir)
    pid = int(str(unlock(account)["pid"]))
    account.run("get", "notes", "a", env=without_passphrase(account))
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    assert snapshot(account.data_dir) == before  # the agent wrote nothing anywhere
    (left,) = runtime(account).iterdir()  # its socket alone, which holds no data
    assert left.stat().st_size == 0
    account.error("get", "notes", "a", code=4, env=without_passphrase(account))
    assert list(runtime(account).iterdir()) == []  # the next command removed it


def test_a_terminated_agent_wipes_and_removes_its_socket(account: Account) -> None:
    pid = int(str(unlock(account)["pid"]))
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid)
    assert list(runtime(account).iterdir()) == []  # removed by the agent itself
    account.error("get", "notes", "a", code=4, env=without_passphrase(account))


def test_another_user_is_refused_even_through_open_modes(account: Account) -> None:
    other = unprivileged()
    if other.uid == os.geteuid():
        pytest.skip("needs root to run a client as another user")
    pid = int(str(unlock(account)["pid"]))
    (sock,) = runtime(account).iterdir()
    for directory in (sock.parent, *sock.parent.parents):
        if directory.stat().st_uid == os.geteuid():
            directory.chmod(stat.S_IMODE(directory.stat().st_mode) | 0o755)
    sock.chmod(0o666)
    client = (
        "import json, socket, sys\n"
        "from strongroom.agent import _wire\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect(sys.argv[1])\n"
        "try:\n"
        "    _wire.send(s, {'op': 'get', 'identity': '', 'store': 'notes', 'key': 'a'})\n"
        "except BrokenPipeError:\n"  # refused before it finished asking
        "    pass\n"
        "header, body = _wire.receive(s)\n"
        "print(json.dumps({'header': header, 'body': body.decode()}))\n"
    )
    result = subprocess.run(
        [*other.launcher, sys.executable, "-c", client, str(sock)],
        env={**account.env, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    answer = json.loads(result.stdout)
    assert answer == {"header": {"error": "refused: not the agent's user", "code": 1}, "body": ""}
    sock.parent.chmod(0o700)  # a client trusts no agent in a directory others can enter
    assert account.run("get", "notes", "a", env=without_passphrase(account)).stdout == b"hello"
    account.run("lock")
    wait_gone(pid)


def test_a_command_refuses_an_agent_run_by_another_user(account: Account, tmp_path: Path) -> None:
    """A socket in the right place is not enough: the process behind it must be the user's."""
    other = unprivileged()
    if other.uid == os.geteuid():
        pytest.skip("needs root to run a listener as another user")
    ident = _wire.identity(str(account.config), None, account.env, os.getcwd())
    assert ident is not None
    path = _wire.socket_path(str(runtime(account)), ident)
    assert path is not None
    lair = tmp_path / "lair"
    lair.mkdir()
    other.give(lair)
    listener = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.bind(sys.argv[1])\n"
        "s.listen(1)\n"
        "print('ready', flush=True)\n"
        "s.accept()[0].recv(1)\n"  # holds the connection until the client gives up
    )
    with subprocess.Popen(
        [*other.launcher, sys.executable, "-c", listener, str(lair / "s")],
        stdout=subprocess.PIPE,
    ) as impostor:
        try:
            assert impostor.stdout is not None
            assert impostor.stdout.readline() == b"ready\n"
            _wire.make_private_dir(str(runtime(account)))
            os.rename(lair / "s", path)  # as if it had been left there for us
            message = account.error("get", "notes", "a", code=1)
            assert message == f"{path}: the agent behind this socket is not yours"
        finally:
            impostor.kill()


def test_unlock_refuses_a_runtime_directory_others_can_enter(account: Account) -> None:
    runtime(account).mkdir(mode=0o755)
    runtime(account).chmod(0o755)
    message = account.error("unlock", code=1)
    assert message.endswith("the agent's runtime directory must have mode 0700")
    assert list(runtime(account).iterdir()) == []
    account.error("get", "notes", "a", code=4, env=without_passphrase(account))


def test_a_command_served_by_the_agent_imports_no_framework(account: Account) -> None:
    pid = int(str(unlock(account)["pid"]))
    probe = (
        "import sys\n"
        "from strongroom.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "sys.stdout.flush()\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, "--config", str(account.config), "get", "notes", "a"],
        env=without_passphrase(account),
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == b"hello"
    modules = set(result.stderr.decode().split())
    assert "strongroom.agent.client" in modules
    for heavy in ("pydantic", "cryptography", "importlib.metadata", "strongroom.config"):
        assert heavy not in modules
    account.run("lock")
    wait_gone(pid)
