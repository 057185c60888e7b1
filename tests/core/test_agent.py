"""The unlock agent, run as a user runs it: ``strongroom unlock``, commands, ``strongroom lock``.

Each test gives the agent a runtime directory of its own under ``tmp_path``
(``XDG_RUNTIME_DIR``).  A command proves it was served by the agent by
succeeding without any passphrase source; a command proves the key is gone
by failing, exit 4, in the same way.  Waiting for an agent to end uses a
pidfd; the only sleeps are the bounded ones that let a stalling client get
inside a request, which the agent does not report.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
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

    (locked,) = json.loads(account.run("lock", "--json").stdout)["locked"]
    assert locked["pid"] == pid
    assert locked["unlocked"] is False  # the keys were wiped before it answered
    wait_gone(pid)
    assert list(directory.iterdir()) == []
    account.error("get", "notes", "b", code=4, env=bare)
    assert json.loads(account.run("lock", "--json").stdout) == {"locked": []}
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


def _in_a_pid_namespace() -> list[str]:
    """``unshare`` into a PID namespace of its own, whose session leader is outside it."""
    launcher = ["unshare", "--pid", "--fork"]
    entered = shutil.which("unshare") is not None and not (
        subprocess.run([*launcher, "true"], check=False, capture_output=True).returncode
    )
    if not entered:
        pytest.skip("cannot enter a new PID namespace here (needs unshare and CAP_SYS_ADMIN)")
    return launcher


def test_unlock_works_where_the_session_leader_is_outside_the_pid_namespace(
    account: Account,
) -> None:
    """In a container ``getsid`` says 0: the agent watches its parent there, and still serves."""
    strongroom = " ".join([*cli_command(), "--config", str(account.config)])
    script = (
        f"{strongroom} unlock && env -u {FILE_VARIABLE} {strongroom} get notes a && "
        f"{strongroom} lock"
    )
    done = subprocess.run(
        [*_in_a_pid_namespace(), "/bin/sh", "-c", script],
        env=account.env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"hello" in done.stdout
    assert b"wiped the keys and ended" in done.stdout
    assert list(runtime(account).iterdir()) == []


def test_the_first_process_of_a_pid_namespace_watches_nothing(account: Account) -> None:
    """Its exit ends every process in the namespace, an agent it forked included."""
    probe = (
        "from strongroom.agent.server import session_watch; "
        "import os; print(os.getsid(0), session_watch())"
    )
    done = subprocess.run(
        [*_in_a_pid_namespace(), sys.executable, "-c", probe],
        env=account.env,
        capture_output=True,
        check=True,
    )
    assert done.stdout.split() == [b"0", b"None"]


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


# ways the agent's keys could outlive what the user was told


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited agent not yet reaped holds no memory)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat_line.rpartition(")")[2].split()[0] not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    """Whether process ``pid`` exits within ``seconds``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], seconds)
        return bool(ready)
    finally:
        os.close(fd)


def trickle(path: str, stop: threading.Event, started: threading.Event) -> None:
    """A process of the user (or a hung client) that sends its request one byte at a time."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(struct.pack(">I", 60000))  # a 60000-byte header announced ...
        started.set()
        while not stop.wait(0.3):  # ... and fed, a byte at a time, for as long as it takes
            try:
                sock.send(b" ")
            except OSError:
                return


class Trickling:
    def __init__(self, path: Path) -> None:
        self.stop = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=trickle, args=(str(path), self.stop, self.started))

    def __enter__(self) -> Trickling:
        self.thread.start()
        assert self.started.wait(GONE_TIMEOUT_S)
        time.sleep(0.5)  # nothing shows when the agent has read the header: let it get there
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_a_stalling_client_does_not_keep_the_keys_past_the_idle_timeout(account: Account) -> None:
    env = {**account.env, "STRONGROOM__STRONGROOM__IDLE_TIMEOUT": "1"}
    pid = int(str(unlock(account, env=env)["pid"]))
    (sock,) = runtime(account).iterdir()
    with Trickling(sock):
        ended = gone_within(pid, 6)  # six idle timeouts
    assert ended, "the agent still holds the keys six idle timeouts later"


def test_lock_ends_the_agent_while_a_client_stalls(account: Account) -> None:
    pid = int(str(unlock(account)["pid"]))
    (sock,) = runtime(account).iterdir()
    with Trickling(sock):
        try:
            code = subprocess.run(
                [*cli_command(), "--config", str(account.config), "lock"],
                env=account.env,
                capture_output=True,
                timeout=10,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            code = None  # lock waited behind the stalled request
        ended = gone_within(pid, 10)
    assert (code, ended) == (0, True)


def test_a_stalling_client_does_not_hold_the_other_clients_up(account: Account) -> None:
    pid = int(str(unlock(account)["pid"]))
    (sock,) = runtime(account).iterdir()
    with Trickling(sock):
        got = subprocess.run(
            [*cli_command(), "--config", str(account.config), "get", "notes", "a"],
            env=without_passphrase(account),
            capture_output=True,
            timeout=10,
            check=False,
        )
    assert (got.returncode, got.stdout) == (0, b"hello")
    account.run("lock")
    wait_gone(pid)


def test_lock_after_the_config_file_changed_still_ends_the_agent(account: Account) -> None:
    pid = int(str(unlock(account)["pid"]))
    account.config.write_text(account.config.read_text() + "\n# a comment, nothing else\n")
    bare = without_passphrase(account)
    # status knows the account is held, though not by an agent of this very config
    status = json.loads(account.run("status", "--json", env=bare).stdout)
    assert (status["locked"], status["agent"]["pid"], status["agent"]["other_config"]) == (
        False,
        pid,
        True,
    )
    result = account.run("lock")
    assert b"no unlock agent" not in result.stdout
    assert f"locked: agent {pid} (account ".encode() in result.stdout
    wait_gone(pid)


def test_wipe_ends_the_agent_and_a_restored_copy_is_not_served(
    account: Account, tmp_path: Path
) -> None:
    pid = int(str(unlock(account)["pid"]))
    backup = tmp_path / "backup"
    shutil.copytree(account.data_dir, backup)  # a backup taken before the wipe
    wiped = json.loads(account.run("wipe", "--yes", "--json").stdout)
    assert wiped["agents_locked"] == [pid]
    still = alive(pid)  # wipe returns only once the agent has ended
    shutil.rmtree(account.data_dir, ignore_errors=True)
    shutil.copytree(backup, account.data_dir)  # ... restored after it
    account.error("get", "notes", "a", code=4, env=without_passphrase(account))
    assert not still


def test_an_agent_ends_when_its_key_record_disappears(account: Account) -> None:
    """Whoever removes the record (a wipe by another tool, say), the agent forgets it soon."""
    pid = int(str(unlock(account)["pid"]))
    record = account.directory / "keys.json"
    saved = record.read_bytes()
    record.unlink()
    wait_gone(pid)
    record.write_bytes(saved)
    account.error("get", "notes", "a", code=4, env=without_passphrase(account))


def test_an_agent_ends_on_a_key_record_it_cannot_authenticate(account: Account) -> None:
    pid = int(str(unlock(account)["pid"]))
    record = account.directory / "keys.json"
    data = json.loads(record.read_bytes())
    data["generation"] += 1  # no longer what the MAC covers
    replacement = record.with_name("keys.json.replacement")
    replacement.write_text(json.dumps(data))
    os.replace(replacement, record)
    message = account.error("get", "notes", "a", code=4, env=without_passphrase(account))
    assert "the unlock agent locked and ended" in message
    wait_gone(pid)


def test_a_relative_runtime_directory_is_ignored() -> None:
    fallback = f"/tmp/strongroom-{os.geteuid()}"  # the documented fallback
    assert _wire.runtime_dir({"XDG_RUNTIME_DIR": "run"}) == fallback
    assert _wire.runtime_dir({"XDG_RUNTIME_DIR": "/run/user/1"}) == "/run/user/1/strongroom"
