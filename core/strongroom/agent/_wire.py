"""Where an agent listens, which config it serves, and the frames it speaks.

Everything here is cheap to import: a command served by the agent pays for
this module, the socket and its output, not for the framework.

An agent serves exactly one config: the one the ``unlock`` command read,
as the CLI would find and override it.  Its identity is a hash of
everything that decides the stack (the config file's real path and bytes,
every ``STRONGROOM__`` override, ``--account``, and the variables the data
directory derives from); the socket is named after it, and the agent
compares it again on every request.  A command whose config differs in any
way finds no agent and unlocks as usual; only ``lock``, ``wipe`` and
``status`` look at every agent in the directory (``state`` and ``lock`` are
answered whatever the identity: they reveal no data).
"""

from __future__ import annotations

import _socket
import contextlib
import json
import os
import stat
import struct

from strongroom._config_path import locate
from strongroom.errors import StrongroomError

TYPE_CHECKING = False  # typing is not imported at run time, for cold start
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

#: Variables besides ``STRONGROOM__*`` that change which stack a config means.
_IDENTITY_VARIABLES = ("STRONGROOM_DISABLE_PLUGIN_AUTOLOAD", "XDG_DATA_HOME", "HOME")
_HEADER = struct.Struct(">I")
#: ``sizeof(sockaddr_un.sun_path)`` on Linux, with its terminating NUL.
_SUN_PATH_MAX = 108
_STAGING = ".new"

try:  # the built-in SHA-256: loading OpenSSL through hashlib costs the fast path ~10 ms
    from _sha256 import sha256  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import sha256
_MAX_HEADER = 1 << 16
#: Largest record body a request or a reply frame may carry.
MAX_BODY = 1 << 30


def runtime_dir(environ: Mapping[str, str]) -> str:
    """``$XDG_RUNTIME_DIR/strongroom``, else ``/tmp/strongroom-<uid>``.

    A relative ``XDG_RUNTIME_DIR`` is ignored, as the XDG spec says: it
    would name another directory from every working directory.
    """
    base = environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        return os.path.join(base, "strongroom")
    return f"/tmp/strongroom-{os.geteuid()}"  # noqa: S108 - private (0700, ours), checked


def check_private_dir(path: str) -> None:
    """The directory is ours, a real directory (not a link) and 0700.

    :raises StrongroomError: it is not; nothing in it is trusted then.
    """
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise StrongroomError(f"{path}: the agent's runtime directory is not a directory of yours")
    if stat.S_IMODE(info.st_mode) != 0o700:
        raise StrongroomError(f"{path}: the agent's runtime directory must have mode 0700")


def make_private_dir(path: str) -> None:
    """Create the runtime directory 0700 if it is missing, then check it.

    :raises StrongroomError: it exists and is not private to this user.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    check_private_dir(path)


@contextlib.contextmanager
def locked_dir(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the runtime directory (released on close, or on exit)."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def identity(
    config: str | None, account: str | None, environ: Mapping[str, str], cwd: str
) -> str | None:
    """The hex identity of the stack a command would open; None: no config to read.

    :raises ConfigError: ``--config`` or ``$STRONGROOM_CONFIG`` names a missing file.
    """
    found = locate(config, environ, cwd)
    digest = sha256(b"strongroom agent identity v1\0")
    if found is not None:
        try:
            with open(found, "rb") as handle:
                content = handle.read()
        except OSError:
            return None  # the normal path reports it
        digest.update(os.path.realpath(found).encode() + b"\0")
        digest.update(sha256(content).digest())
    else:
        digest.update(b"built-in\0")
    names = sorted(name for name in environ if name.startswith("STRONGROOM__"))
    for name in [*names, *_IDENTITY_VARIABLES]:
        digest.update(f"{name}={environ.get(name, '')}\0".encode(errors="surrogateescape"))
    digest.update(f"account={account or ''}".encode(errors="surrogateescape"))
    return str(digest.hexdigest())


def socket_path(directory: str, ident: str) -> str | None:
    """Where the agent for ``ident`` listens; None when the path is too long for a socket."""
    path = os.path.join(directory, f"agent-{ident[:32]}.sock")
    return path if len(os.fsencode(path)) + len(_STAGING) < _SUN_PATH_MAX else None


def staging_path(path: str) -> str:
    """The name a socket is bound under before it is renamed into place."""
    return path + _STAGING


def peer_uid(sock: _socket.socket) -> int:
    """The uid of the process at the other end, from the kernel (``SO_PEERCRED``)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def send(sock: _socket.socket, header: Mapping[str, Any], body: bytes = b"") -> None:
    """One frame: a JSON header (with ``size`` when a body follows), then the body."""
    sock.sendall(_header_bytes(header, body))
    if body:
        sock.sendall(body)


def encode(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    """The bytes of the frame :func:`send` sends."""
    return _header_bytes(header, body) + body


def _header_bytes(header: Mapping[str, Any], body: bytes) -> bytes:
    data = json.dumps({**header, "size": len(body)} if body else dict(header)).encode()
    return _HEADER.pack(len(data)) + data


def parse(buffer: bytearray) -> tuple[dict[str, Any], bytes] | None:
    """The frame at the start of ``buffer``; None while it is still incomplete.

    :raises StrongroomError: what arrived so far is already malformed or too large.
    """
    if len(buffer) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack_from(buffer)
    if length > _MAX_HEADER:
        raise StrongroomError("the agent's peer sent an oversized frame")
    end = _HEADER.size + length
    if len(buffer) < end:
        return None
    header, size = _decode_header(bytes(buffer[_HEADER.size : end]))
    if len(buffer) < end + size:
        return None
    return header, bytes(buffer[end : end + size])


def receive(sock: _socket.socket) -> tuple[dict[str, Any], bytes]:
    """One frame.

    :raises StrongroomError: the peer closed early or sent something malformed.
    """
    (length,) = _HEADER.unpack(_exactly(sock, _HEADER.size))
    if length > _MAX_HEADER:
        raise StrongroomError("the agent's peer sent an oversized frame")
    header, size = _decode_header(_exactly(sock, length))
    return header, _exactly(sock, size) if size else b""


def _decode_header(data: bytes) -> tuple[dict[str, Any], int]:
    try:
        header = json.loads(data)
    except ValueError:
        raise StrongroomError("the agent's peer sent a malformed frame") from None
    if not isinstance(header, dict):
        raise StrongroomError("the agent's peer sent a malformed frame")
    size = header.get("size", 0)
    if not isinstance(size, int) or not 0 <= size <= MAX_BODY:
        raise StrongroomError("the agent's peer sent an oversized frame")
    return header, size


def _exactly(sock: _socket.socket, count: int) -> bytes:
    buffer = bytearray(count)
    view = memoryview(buffer)
    done = 0
    while done < count:
        got = sock.recv_into(view[done:])
        if got == 0:
            raise StrongroomError("the connection to the agent closed early")
        done += got
    return bytes(buffer)
