"""The unlock agent: one unlocked stack, served to the same user over a UNIX socket.

The agent does the cryptography itself and returns results (a record's
plaintext, a key listing); no key ever crosses the socket.  It serves every
connection from one non-blocking loop, carrying requests out one at a time,
and it ends, wiping the master key and every data key and removing its
socket, on the first of: a ``lock`` request (from a command of any config),
its idle timeout (the config's ``[strongroom] idle_timeout``; 0 never), the
exit of the process it watches (the leader of the login session ``unlock``
ran in), ``SIGTERM``, ``SIGHUP`` or ``SIGINT``, and the account's key record
disappearing (checked every second) or no longer backing its keys (checked
before each request).  No client, however slow, delays any of these.
Killed outright, it leaves only its socket, which holds no data and which
the next command removes.

A peer is served only if the kernel says (``SO_PEERCRED``) it runs as the
agent's own uid, whatever the socket's mode: the 0700 directory and 0600
socket are a first fence, not the check.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from strongroom._stack import Strongroom
from strongroom.agent import _wire
from strongroom.cli._session import store_named
from strongroom.errors import KeyUnavailableError, StrongroomError

#: From ``<sys/mman.h>``.
MCL_CURRENT = 1
MCL_FUTURE = 2
#: A request must arrive whole this many seconds after its connection, and a
#: reply that makes no progress for as long is dropped.
CLIENT_TIMEOUT_S = 60.0
#: How often the agent checks that the account's key record is still there.
RECORD_CHECK_S = 1.0
#: Connections served at once; a new one beyond them drops the oldest.
MAX_CLIENTS = 32
READ_SIZE = 1 << 18
#: How long the agent waits to hand a client its last reply before it ends.
LAST_WORD_S = 1.0


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

    When ``unlock`` leads its own session, or the leader lives outside this
    PID namespace (``getsid`` says 0, as in a container started from a
    shell outside it), its parent stands in for it.  None when there is no
    such process to watch: this process is the one that ends the agent
    (a foreground agent leading its session, or the first process of a PID
    namespace, whose exit ends every process in it).

    :raises StrongroomError: that process has already exited.
    """
    sid = os.getsid(0)
    leader_visible = sid not in (0, os.getpid())
    watched = sid if leader_visible else os.getppid()
    if watched in (0, os.getpid()):
        return None
    try:
        pidfd = os.pidfd_open(watched)
        if leader_visible and os.getsid(watched) != sid:  # the leader's pid was reused
            raise ProcessLookupError
    except ProcessLookupError:
        raise StrongroomError(
            "the login session this command runs in has ended; run 'unlock' from a live session"
        ) from None
    return pidfd


class _Client:
    """One connection: the request read so far, then the reply frames still to send."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbox = bytearray()
        self.out = b""
        self.frames: Iterator[bytes] | None = None
        #: A request of the agent's user was read: its reply counts as activity.
        self.served = False


class Agent:
    """Serves one unlocked stack until it is locked, idle, or its session ends.

    One thread, one selector: no connection can hold the loop, so the idle
    deadline, the session's end, a ``lock`` request, a signal and the
    account's key record are honoured whatever a client does.  A request
    must arrive whole within :data:`CLIENT_TIMEOUT_S` of the connection; a
    reply that makes no progress for as long is dropped.
    """

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
        self._master_version = stack.keys.status().master_version
        self._clients: dict[int, _Client] = {}
        self._idle: float | None = None
        self._selector = selectors.DefaultSelector()
        self._ops: dict[
            str, Callable[[dict[str, Any], bytes], Iterator[tuple[dict[str, Any], bytes]]]
        ] = {
            "get": self._get,
            "put": self._put,
            "rm": self._remove,
            "ls": self._list,
            "state": self._state,
            "status": self._status,
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
        self.listener.setblocking(False)
        self._selector.register(self.listener, selectors.EVENT_READ)
        if self.watch is not None:
            self._selector.register(self.watch, selectors.EVENT_READ)
        self._touch()
        check = time.monotonic() + RECORD_CHECK_S
        while True:
            now = time.monotonic()
            if self._idle is not None and now >= self._idle:
                return "idle"
            if now >= check:
                if not self.stack.keys.exists():
                    return "key record removed"
                check = now + RECORD_CHECK_S
            for client in [c for c in self._clients.values() if now >= c.deadline]:
                self._drop(client)  # stalled: dropped, whatever it was doing
            deadlines = [check, *(c.deadline for c in self._clients.values())]
            if self._idle is not None:
                deadlines.append(self._idle)
            ended = self._dispatch(max(0.0, min(deadlines) - now))
            if ended:
                return ended

    def _dispatch(self, timeout: float) -> str | None:
        """Handle what is ready within ``timeout``; returns why the agent ends, if it does."""
        for key, events in self._selector.select(timeout):
            if key.fileobj == self.watch:
                return "session ended"
            if key.fileobj is self.listener:
                self._accept()
                continue
            client = key.data
            if client.sock.fileno() not in self._clients:
                continue  # dropped earlier in this round
            if events & selectors.EVENT_READ:
                ended = self._read(client)
                if ended:
                    return ended
            elif events & selectors.EVENT_WRITE:
                self._write(client)
        return None

    def _touch(self) -> None:
        self._idle = time.monotonic() + self.idle_timeout if self.idle_timeout else None

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # out of descriptors, say: the client sees its connection close
        if len(self._clients) >= MAX_CLIENTS:  # the oldest goes: a lock always gets in
            self._drop(min(self._clients.values(), key=lambda c: c.deadline))
        sock.setblocking(False)
        client = _Client(sock, time.monotonic() + CLIENT_TIMEOUT_S)
        self._clients[sock.fileno()] = client
        try:
            uid = _wire.peer_uid(sock)
        except OSError:
            self._drop(client)
            return
        if uid != os.geteuid():
            self._reply(client, iter([_wire.encode(_error("refused: not the agent's user", 1))]))
            return
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _read(self, client: _Client) -> str | None:
        """Take what arrived; serve the request once it is whole.  Returns why the agent ends."""
        try:
            data = client.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self._drop(client)
            return None
        if not data:
            self._drop(client)  # the client went away before it finished asking
            return None
        client.inbox += data
        try:
            request = _wire.parse(client.inbox)
        except StrongroomError:
            self._drop(client)  # nonsense: nothing to answer
            return None
        if request is None:
            return None
        client.inbox = bytearray()
        client.served = True
        self._touch()
        return self._serve(client, *request)

    def _serve(self, client: _Client, header: dict[str, Any], body: bytes) -> str | None:
        op_name = str(header.get("op"))
        if op_name == "lock":  # any config's command may end the agent: it only forgets
            self.stack.keys.lock("request")
            self._last_word(client, _wire.encode({"ok": True, **self.state()}))
            return "locked"
        problem = self._record_problem()
        if problem is not None:
            self.stack.keys.lock("key record")
            message = f"the unlock agent locked and ended: {problem}; unlock again"
            self._last_word(client, _wire.encode(_error(message, 4)))
            return "key record " + problem
        if op_name != "state" and header.get("identity") != self.ident:
            frames = iter([_wire.encode(_error("this agent serves another config", 1))])
        elif op_name not in self._ops:
            frames = iter([_wire.encode(_error("unknown agent request", 1))])
        else:
            frames = self._frames(self._ops[op_name], header, body)
        self._reply(client, frames)
        return None

    def _record_problem(self) -> str | None:
        """Why the account's key record no longer backs the keys held; None: it still does.

        The record must still be there, still the one the agent unlocked
        (same master key version) and still authentic under that key.
        """
        try:
            if self.stack.keys.status().master_version != self._master_version:
                return "the master key was replaced"
            self.stack.keys.unlock()  # authenticates a changed record; unwraps nothing here
        except KeyUnavailableError:
            return "the account's key record is gone"
        except (StrongroomError, OSError) as exc:
            return f"the account's key record cannot be trusted ({type(exc).__name__})"
        return None

    def _frames(
        self,
        op: Callable[[dict[str, Any], bytes], Iterator[tuple[dict[str, Any], bytes]]],
        header: dict[str, Any],
        body: bytes,
    ) -> Iterator[bytes]:
        """The encoded reply frames of ``op``; an error ends them with one error frame."""
        try:
            for reply, data in op(header, body):
                yield _wire.encode(reply, data)
        except StrongroomError as exc:
            yield _wire.encode(_error(str(exc), exc.exit_code))
        except OSError as exc:
            from strongroom.cli.main import describe_os_error

            yield _wire.encode(_error(describe_os_error(exc), 1))
        except Exception as exc:  # the type only: its message could quote data
            yield _wire.encode(_error(f"internal error ({type(exc).__name__})", 1))

    def _reply(self, client: _Client, frames: Iterator[bytes]) -> None:
        client.frames = frames
        client.deadline = time.monotonic() + CLIENT_TIMEOUT_S
        with contextlib.suppress(KeyError):
            self._selector.unregister(client.sock)
        self._selector.register(client.sock, selectors.EVENT_WRITE, client)
        self._write(client)

    def _write(self, client: _Client) -> None:
        """Send what the client can take now; pull the next frame only once one is sent."""
        while True:
            if not client.out:
                frame = next(client.frames, None) if client.frames is not None else None
                if frame is None:
                    self._drop(client)  # the whole reply is sent
                    if client.served:
                        self._touch()
                    return
                client.out = frame
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(client)
                return
            client.out = client.out[sent:]
            client.deadline = time.monotonic() + CLIENT_TIMEOUT_S  # it is reading: progress

    def _last_word(self, client: _Client, frame: bytes) -> None:
        """Send one short frame before the agent ends, waiting at most a moment."""
        with contextlib.suppress(OSError):
            client.sock.settimeout(LAST_WORD_S)
            client.sock.sendall(frame)
        self._drop(client)

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.frames = None
        client.sock.close()

    def _get(self, header: dict[str, Any], _body: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
        store = store_named(self.stack, str(header["store"]))
        for chunk in store.get_any(str(header["key"])):  # each chunk verified before it goes
            yield {"chunk": True}, chunk
        yield {"ok": True}, b""

    def _put(self, header: dict[str, Any], body: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
        store_named(self.stack, str(header["store"])).put(str(header["key"]), body)
        yield {"ok": True}, b""

    def _remove(
        self, header: dict[str, Any], _body: bytes
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        store_named(self.stack, str(header["store"])).delete(str(header["key"]))
        yield {"ok": True}, b""

    def _list(self, header: dict[str, Any], _body: bytes) -> Iterator[tuple[dict[str, Any], bytes]]:
        keys = list(store_named(self.stack, str(header["store"])).keys(str(header["prefix"])))
        yield {"ok": True, "keys": keys}, b""

    def _state(
        self, _header: dict[str, Any], _body: bytes
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        yield {"ok": True, **self.state()}, b""

    def _status(
        self, _header: dict[str, Any], _body: bytes
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        from strongroom.cli.status import collect

        yield {"ok": True, "status": collect(self.stack, self.state())}, b""

    def state(self) -> dict[str, Any]:
        """What ``status`` and ``lock`` report; never a secret."""
        return {
            "pid": os.getpid(),
            "account": self.stack.config.account,
            "directory": str(self.stack.config.account_dir),
            "config": self.stack.config.source,
            "identity": self.ident,
            "unlocked": self.stack.keys.unlocked,
            "memory_locked": self.memory_locked,
            "idle_timeout": self.idle_timeout,
        }

    def _shut(self) -> None:
        """Wipe the keys first, then drop every client and remove the socket if it is ours."""
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # nothing may cut the wiping short
        try:
            self.stack.close()
        finally:
            for client in list(self._clients.values()):
                self._drop(client)
            self._selector.close()
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            self.listener.close()
            if self.watch is not None:
                os.close(self.watch)


def _error(message: str, code: int) -> dict[str, Any]:
    return {"error": message, "code": code}


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def detach() -> None:
    """In a forked child: leave the terminal's session and let go of its streams."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
