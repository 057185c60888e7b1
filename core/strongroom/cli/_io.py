"""Command-line inputs and outputs: ``-`` for stdio, devices written in place, files atomically.

An output path is handled by what it names:

- ``-``: standard output, streamed;
- something that exists and is not a regular file (a character or block
  device, a FIFO, ``/dev/stdout`` and other ``/dev/fd`` and ``/proc/*/fd``
  names, a symbolic link to any of them): opened and written in place,
  streamed, never replaced;
- a directory: refused before anything is read, unlocked or written;
- anything else: a regular file that appears, complete, only if the command
  succeeds (see :func:`output`).

Every ``OSError`` raised while reading or writing names the path as the
user gave it, so the CLI can report it in one line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import sys

from strongroom.errors import UsageError

TYPE_CHECKING = False  # typing is not imported at run time: commands the agent serves use this
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

CHUNK = 1 << 20
STDIN = "standard input"
STDOUT = "standard output"
#: Suffix of the name a finished output has for an instant before it is renamed
#: over an existing file; a command killed in that instant leaves it behind.
PARTIAL_SUFFIX = ".sr-partial"
_PARTIAL = re.compile(r"\..+\.[0-9a-f]{16}" + re.escape(PARTIAL_SUFFIX), re.DOTALL)
#: Names that reach an already-open file (``/dev/stdout``): written through, never replaced.
_OPEN_FILE_NAME = re.compile(r"/dev/(std(in|out|err)|fd/\d+)|/proc/(self|thread-self|\d+)/fd/\d+")
_HOPS = 40


def closed_stream(label: str) -> OSError:
    """The error for a standard stream the command was started without."""
    return OSError(errno.EBADF, f"{os.strerror(errno.EBADF)} (it is closed)", label)


@contextlib.contextmanager
def naming(label: str) -> Iterator[None]:
    """Give an ``OSError`` raised inside that names no file the name ``label``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, label) from exc


class Input:
    """A binary input whose read errors name it."""

    def __init__(self, inner: BinaryIO, label: str) -> None:
        self._inner = inner
        self.label = label

    def read(self, size: int = -1) -> bytes:
        with naming(self.label):
            return self._inner.read(size)

    def readinto(self, buffer: bytearray | memoryview) -> int | None:
        """``None``: a non-blocking source had nothing (the formats refuse those)."""
        with naming(self.label):
            return self._inner.readinto(buffer)  # type: ignore[attr-defined, no-any-return]

    def fileno(self) -> int:
        return self._inner.fileno()


class Output:
    """A binary output that takes all it is given; its write errors name it."""

    def __init__(self, inner: BinaryIO, label: str, *, is_stdout: bool = False) -> None:
        self._inner = inner
        self.label = label
        #: It reaches this process's standard output (``-``, ``/dev/stdout``):
        #: nothing else may be printed there.
        self.is_stdout = is_stdout

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        with naming(self.label):
            while view:
                view = view[self._inner.write(view) :]
        return size

    def flush(self) -> None:
        with naming(self.label):
            self._inner.flush()


def stdin() -> Input:
    """Standard input.

    :raises OSError: the command was started with standard input closed.
    """
    if sys.stdin is None:
        raise closed_stream(STDIN)
    return Input(sys.stdin.buffer, STDIN)


def stdout() -> Output:
    """Standard output.

    :raises OSError: the command was started with standard output closed.
    """
    if sys.stdout is None:
        raise closed_stream(STDOUT)
    return Output(sys.stdout.buffer, STDOUT, is_stdout=True)


@contextlib.contextmanager
def reading(path: str) -> Iterator[Input]:
    """stdin for ``-``, else the named file.

    :raises UsageError: the file cannot be opened.
    :raises OSError: standard input is closed.
    """
    if path == "-":
        yield stdin()
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        yield Input(handle, path)


def chunks(source: Input) -> Iterator[bytes]:
    """Read ``source`` to the end in 1 MiB pieces."""
    while chunk := source.read(CHUNK):
        yield chunk


def check_output(path: str) -> None:
    """Refuse an output that cannot be one before anything is read, unlocked or written.

    :raises UsageError: ``path`` is a directory, or its directory does not exist.
    """
    if path == "-":
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UsageError(f"{path}: cannot write ({os.strerror(errno.ENOENT)})") from None
        return
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path}: is a directory; name the output file")


@contextlib.contextmanager
def output(path: str) -> Iterator[Output]:
    """Where a command's output goes: stdout for ``-``, a device in place, else a file.

    A regular file target receives nothing until the block returns: the
    bytes go to an anonymous file (``O_TMPFILE``) in the target's directory
    that no one can open by name, which is then linked into place.  Linux
    cannot link an anonymous file over an existing name, so when the target
    exists the finished file is linked under a fresh name matching
    ``.<target>.<hex>.sr-partial`` and renamed over it at once; where the
    file system lacks ``O_TMPFILE`` the bytes are written under that name
    from the start.  Such a name is removed on every error, held under an
    exclusive ``flock`` while in use, and swept by the next output into the
    same directory when a killed command left it.

    Standard output and in-place outputs receive each write at once: on a
    failure they keep what was written before it.

    :raises UsageError: the output cannot be opened.
    :raises OSError: a write failed; it names ``path``.
    """
    check_output(path)
    if path == "-":
        out = stdout()
        yield out
        out.flush()
        return
    if _in_place(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
        with os.fdopen(fd, "wb", buffering=0) as device:
            yield Output(device, path, is_stdout=_same_file(fd, 1))
        return
    directory, name = os.path.split(os.path.abspath(path))
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        sweep_partials(dir_fd)
        with _staged(dir_fd, name, path) as handle:
            yield handle
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _staged(dir_fd: int, name: str, path: str) -> Iterator[Output]:
    fd, partial = _create(dir_fd, name, path)
    try:
        with os.fdopen(fd, "wb", buffering=0, closefd=False) as handle:
            yield Output(handle, path)
        with naming(path):
            os.fsync(fd)
            if partial is None:
                partial = _link_anonymous(fd, dir_fd, name)
            if partial is not None:
                _rename(partial, name, dir_fd)
                partial = None
            os.fsync(dir_fd)
    finally:
        if partial is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial, dir_fd=dir_fd)
        os.close(fd)  # releases the flock


def _create(dir_fd: int, name: str, path: str) -> tuple[int, str | None]:
    """A new private file, locked, to stage the output: anonymous if possible, else named."""
    tmpfile = getattr(os, "O_TMPFILE", 0)
    try:
        if not tmpfile:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        fd = os.open(".", tmpfile | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
    else:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd, None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        partial = partial_name(name)
        try:
            fd = os.open(partial, flags, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:  # else a sweep took it, still empty, before the lock
            return fd, partial
        os.close(fd)


def partial_name(name: str) -> str:
    """A fresh staging name for an output called ``name``, within the name length limit."""
    import secrets  # here only: commands served by the agent never name a partial file

    return f".{name[:200]}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}"


def _link_anonymous(fd: int, dir_fd: int, name: str) -> str | None:
    """Link the anonymous file ``fd`` as ``name``; if that exists, under a partial name.

    Returns the partial name still to be renamed over ``name``, or ``None``.
    """
    try:
        _link(fd, dir_fd, name)
    except FileExistsError:
        pass
    else:
        return None
    partial = partial_name(name)
    _link(fd, dir_fd, partial)
    return partial


def _link(fd: int, dir_fd: int, name: str) -> None:
    """Give the ``O_TMPFILE`` file open as ``fd`` the name ``name``; fails if it exists.

    open(2)'s recipe: ``linkat(AT_FDCWD, "/proc/self/fd/N", ..., AT_SYMLINK_FOLLOW)``.
    Plain ``os.link`` calls link(2), which on Linux does not follow that magic
    link and fails with ``EXDEV``; given a directory descriptor, it calls
    ``linkat`` with ``AT_SYMLINK_FOLLOW``.
    """
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)


def _rename(partial: str, name: str, dir_fd: int) -> None:
    os.replace(partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def sweep_partials(dir_fd: int) -> None:
    """Remove the partial outputs that killed commands left in the directory ``dir_fd``.

    Only regular files of this user, named as :func:`partial_name` names
    them and not locked by a live command, are removed.
    """
    try:
        names = [name for name in os.listdir(dir_fd) if _PARTIAL.fullmatch(name)]
    except OSError:
        return  # the output itself will report what is wrong with the directory
    for name in names:
        with contextlib.suppress(OSError):
            _sweep_one(dir_fd, name)


def _sweep_one(dir_fd: int, name: str) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: in use
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino):
            os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(fd)


def _in_place(path: str) -> bool:
    """Whether ``path`` names something to write into rather than replace."""
    try:
        info = os.stat(path)
    except OSError:
        return False  # absent (or unreachable: the output reports why)
    if not stat.S_ISREG(info.st_mode):
        return True
    hop = os.path.abspath(path)
    for _ in range(_HOPS):
        if _OPEN_FILE_NAME.fullmatch(hop):
            return True
        try:
            link = os.readlink(hop)
        except OSError:
            return False
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), link))
    return False


def _same_file(fd: int, other: int) -> bool:
    try:
        one, two = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)
