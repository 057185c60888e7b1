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
