"""The unlock agent: one unlocked stack, served to the same user over a UNIX socket.

The agent does the cryptography itself and returns results (a record's
plaintext, a key listing); no key ever crosses the socket.  It serves one
connection at a time, and it ends, wiping the master key and every data key
and removing its socket, on the first of: a ``lock`` request, its idle
timeout (the config's ``[strongroom] idle_timeout``; 0 never), the exit of
the process it watches (the leader of the login session ``unlock`` ran in),
and ``SIGTERM``, ``SIGHUP`` or ``SIGINT``.  Killed outright, it leaves only
its socket, which holds no data and which the next command removes.

A peer is served only if the kernel says (``SO_PEERCRED``) it runs as the
agent's own uid, whatever the socket's mode: the 0700 directory and 0600
socket are a first fence, not the check.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from strongroom._stack import Strongroom
from strongroom.agent import _wire
from strongroom.cli._session import store_named
from strongroom.errors import StrongroomError

#: From ``<sys/mman.h>``.
MCL_CURRENT = 1
MCL_FUTURE = 2
#: A client that stalls mid-request is dropped after this many seconds.
CLIENT_TIMEOUT_S = 60.0


class _Stop(BaseException):
    """A signal asked the agent to end (no ``except Exception`` may swallow it)."""


def lock_memory() -> bool:
    """``mlockall(MCL_CURRENT | MCL_FUTURE)``: keep every page of the agent out of swap.

    Best effort: it needs ``RLIMIT_MEMLOCK`` above the process's size (or
    ``CAP_IPC_LOCK``); returns whether the kernel agreed.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.mlockall(MCL_CURRENT | MCL_FUTURE)) == 0


def listen(path: str) -> socket.socket:
    """A listening socket at ``path`` (mode 0600), put in place only once it accepts.

    Bound under a temporary name and renamed over ``path``, so a socket at
    ``path`` that refuses connections is always a dead agent's.
    """
    staging = _wire.staging_path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(staging)
    finally:
        os.umask(old_umask)
    listener.listen(16)
    os.rename(staging, path)
    return listener


def session_watch() -> int | None:
    """A pidfd for the process whose exit ends the agent: the session's leader.

    When ``unlock`` leads its own session, its parent stands in for it.
    None when this process is both (an agent in the foreground leading its
    session ends with itself).

    :raises StrongroomError: that process has already exited.
    """
    sid = os.getsid(0)
    watched = os.getppid() if sid == os.getpid() else sid
    if watched == os.getpid():
        return None
    try:
        pidfd = os.pidfd_open(watched)
        if sid != os.getpid() and os.getsid(watched) != sid:  # the leader's pid was reused
            raise ProcessLookupError
    except ProcessLookupError:
        raise StrongroomError(
            "the login session this command runs in has ended; run 'unlock' from a live session"
        ) from None
    return pidfd


class Agent:
    """Serves one unlocked stack until it is locked, idle, or its session ends."""

    def __init__(
        self,
        stack: Strongroom,
        listener: socket.socket,
        path: str,
        ident: str,
        *,
        idle_timeout: float,
        watch: int | None,
    ) -> None:
        self.stack = stack
        self.listener = listener
        self.path = path
        self.ident = ident
        self.idle_timeout = idle_timeout
        self.watch = watch
        self.memory_locked = False
        self._inode = os.stat(path).st_ino
        self._ops: dict[str, Callable[[socket.socket, dict[str, Any], bytes], bool]] = {
            "get": self._get,
            "put": self._put,
            "rm": self._remove,
            "ls": self._list,
            "state": self._state,
            "status": self._status,
            "lock": self._lock,
        }

    def serve(self) -> str:
        """Serve until the end; wipe the keys and remove the socket.  Returns why it ended."""
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, _raise_stop)
        try:
            return self._loop()
        except _Stop:
            return "signal"
        finally:
            self._shut()

    def _loop(self) -> str:
        deadline = time.monotonic() + self.idle_timeout if self.idle_timeout else None
        waiting = [self.listener] + ([self.watch] if self.watch is not None else [])
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(waiting, [], [], timeout)
            if self.watch is not None and self.watch in ready:
                return "session ended"
            if not ready:
                return "idle"
            connection, _ = self.listener.accept()
            with connection:
                if self._handle(connection):
                    return "locked"
            if deadline is not None:
                deadline = time.monotonic() + self.idle_timeout

    def _handle(self, connection: socket.socket) -> bool:
        """Answer one request; True when the agent must end."""
        connection.settimeout(CLIENT_TIMEOUT_S)
        try:
            if _wire.peer_uid(connection) != os.geteuid():
                _wire.send(connection, {"error": "refused: not the agent's user", "code": 1})
                return False
            header, body = _wire.receive(connection)
            if header.get("identity") != self.ident:
                _wire.send(connection, {"error": "this agent serves another config", "code": 1})
                return False
            op = self._ops.get(str(header.get("op")))
            if op is None:
                _wire.send(connection, {"error": "unknown agent request", "code": 1})
                return False
            try:
                return op(connection, header, body)
            except StrongroomError as exc:
                _wire.send(connection, {"error": str(exc), "code": exc.exit_code})
            except OSError as exc:
                from strongroom.cli.main import describe_os_error

                _wire.send(connection, {"error": describe_os_error(exc), "code": 1})
            except Exception as exc:  # the type only: its message could quote data
                _wire.send(
                    connection, {"error": f"internal error ({type(exc).__name__})", "code": 1}
                )
        except (OSError, StrongroomError):
            pass  # the client went away or spoke nonsense: nothing to answer
        return False

    def _get(self, connection: socket.socket, header: dict[str, Any], _body: bytes) -> bool:
        store = store_named(self.stack, str(header["store"]))
        for chunk in store.get_any(str(header["key"])):  # each chunk verified before it goes
            _wire.send(connection, {"chunk": True}, chunk)
        _wire.send(connection, {"ok": True})
        return False

    def _put(self, connection: socket.socket, header: dict[str, Any], body: bytes) -> bool:
        store_named(self.stack, str(header["store"])).put(str(header["key"]), body)
        _wire.send(connection, {"ok": True})
        return False

    def _remove(self, connection: socket.socket, header: dict[str, Any], _body: bytes) -> bool:
        store_named(self.stack, str(header["store"])).delete(str(header["key"]))
        _wire.send(connection, {"ok": True})
        return False

    def _list(self, connection: socket.socket, header: dict[str, Any], _body: bytes) -> bool:
        keys = list(store_named(self.stack, str(header["store"])).keys(str(header["prefix"])))
        _wire.send(connection, {"ok": True, "keys": keys})
        return False

    def _state(self, connection: socket.socket, _header: dict[str, Any], _body: bytes) -> bool:
        _wire.send(connection, {"ok": True, **self.state()})
        return False

    def _status(self, connection: socket.socket, _header: dict[str, Any], _body: bytes) -> bool:
        from strongroom.cli.status import collect

        _wire.send(connection, {"ok": True, "status": collect(self.stack, self.state())})
        return False

    def _lock(self, connection: socket.socket, _header: dict[str, Any], _body: bytes) -> bool:
        self.stack.keys.lock("request")
        _wire.send(connection, {"ok": True, **self.state()})
        return True

    def state(self) -> dict[str, Any]:
        """What ``status`` and ``lock`` report; never a secret."""
        return {
            "pid": os.getpid(),
            "account": self.stack.config.account,
            "unlocked": self.stack.keys.unlocked,
            "memory_locked": self.memory_locked,
            "idle_timeout": self.idle_timeout,
        }

    def _shut(self) -> None:
        """Wipe the keys first, then remove the socket if it is still ours."""
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # nothing may cut the wiping short
        try:
            self.stack.close()
        finally:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            self.listener.close()
            if self.watch is not None:
                os.close(self.watch)


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def detach() -> None:
    """In a forked child: leave the terminal's session and let go of its streams."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
