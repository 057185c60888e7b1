"""Reaching the agent that serves this command's config, if one runs.

No agent (no socket, or a dead agent's socket, which is removed here) means
the command unlocks as usual; that is the normal path, not a weaker one.  An
agent whose socket is not in a private directory of this user is ignored for
the same reason.  An agent that answers but runs as another user is an error.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import stat

from strongroom.agent import _wire
from strongroom.errors import (
    IntegrityError,
    KeyUnavailableError,
    StrongroomError,
    UsageError,
)

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

_ERRORS = {2: UsageError, 3: IntegrityError, 4: KeyUnavailableError}
#: How long ``lock``, ``wipe`` and ``status`` wait on any one agent's answer.
_ASK_TIMEOUT_S = 10.0
#: How long they wait for an agent that agreed to end to exit.
_GONE_TIMEOUT_S = 10.0


class Connection:
    """One request to the agent and its replies."""

    def __init__(self, sock: _socket.socket, ident: str) -> None:
        self.sock = sock
        self.ident = ident

    def request(self, op: str, body: bytes = b"", **fields: Any) -> Iterator[dict[str, Any]]:
        """Send ``op``; yield each reply frame (its body under ``"body"``) until the last.

        :raises StrongroomError: the agent answered with an error, of the same exit code.
        """
        _wire.send(self.sock, {"op": op, "identity": self.ident, **fields}, body)
        while True:
            header, data = _wire.receive(self.sock)
            if "error" in header:
                code = header.get("code")
                raise _ERRORS.get(code if isinstance(code, int) else 1, StrongroomError)(
                    str(header["error"])
                )
            header["body"] = data
            yield header
            if not header.get("chunk"):
                return

    def close(self) -> None:
        self.sock.close()


def socket_for(
    config: str | None, account: str | None, environ: Mapping[str, str]
) -> tuple[str, str] | None:
    """``(socket path, identity)`` for this config; None without a private runtime dir."""
    ident = _wire.identity(config, account, environ, os.getcwd())
    if ident is None:
        return None
    directory = _wire.runtime_dir(environ)
    try:
        _wire.check_private_dir(directory)
    except (OSError, StrongroomError):
        return None
    path = _wire.socket_path(directory, ident)
    return None if path is None else (path, ident)


@contextlib.contextmanager
def connected(
    config: str | None, account: str | None, environ: Mapping[str, str] | None = None
) -> Iterator[Connection | None]:
    """A connection to this config's agent, or None when none runs.

    :raises StrongroomError: the process behind the socket is not this user's.
    """
    found = socket_for(config, account, os.environ if environ is None else environ)
    if found is None:
        yield None
        return
    path, ident = found
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except FileNotFoundError:
            yield None
            return
        except ConnectionRefusedError:
            remove_stale(path)
            yield None
            return
        if _wire.peer_uid(sock) != os.geteuid():
            raise StrongroomError(f"{path}: the agent behind this socket is not yours")
        connection = Connection(sock, ident)
        yield connection
    finally:
        sock.close()


def remove_stale(path: str) -> None:
    """Remove a dead agent's socket (it accepts nothing; it is only ever renamed in live)."""
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def agents(environ: Mapping[str, str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every agent of this user in the runtime directory, whatever config it serves.

    Yields each one's socket path and the state it reported.  Dead agents'
    sockets are removed on the way; an agent of another uid, or in a
    directory that is not private, is skipped (a command never trusts it).
    """
    directory = _wire.runtime_dir(os.environ if environ is None else environ)
    try:
        _wire.check_private_dir(directory)
        names = sorted(os.listdir(directory))
    except (OSError, StrongroomError):
        return
    for name in names:
        if name.startswith("agent-") and name.endswith(".sock"):
            path = os.path.join(directory, name)
            state = ask(path, "state")
            if state is not None:
                yield path, state


def ask(path: str, op: str) -> dict[str, Any] | None:
    """The answer of the agent at ``path`` to ``op`` (``state`` or ``lock``, which any
    config may ask); None when no agent of this user answers there.
    """
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(_ASK_TIMEOUT_S)
        try:
            sock.connect(path)
        except ConnectionRefusedError:
            remove_stale(path)
            return None
        if _wire.peer_uid(sock) != os.geteuid():
            return None
        answer = next(Connection(sock, "").request(op))
    except (OSError, StrongroomError):
        return None  # it ended meanwhile, or is not an agent that answers
    finally:
        sock.close()
    return {key: value for key, value in answer.items() if key not in ("body", "ok")}


def lock_agents(
    directory: str | None = None, environ: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Make every agent of this user end (only those holding account ``directory``, if given).

    Returns the state each reported once it had wiped its keys, and only
    once each has exited (waiting at most :data:`_GONE_TIMEOUT_S` for each).
    """
    locked: list[dict[str, Any]] = []
    wanted = None if directory is None else os.path.realpath(directory)
    for path, state in list(agents(environ)):
        if wanted is not None and os.path.realpath(str(state.get("directory"))) != wanted:
            continue
        answer = ask(path, "lock")
        if answer is not None:
            _wait_gone(int(answer["pid"]))
            locked.append(answer)
    return locked


def _wait_gone(pid: int) -> None:
    import select

    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # already gone
    try:
        select.select([fd], [], [], _GONE_TIMEOUT_S)
    finally:
        os.close(fd)
