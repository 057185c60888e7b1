"""Crash-safe file primitives for the ``files`` store, on top of :mod:`strongroom.durable`.

The public module gives the directory fsync, the private modes and the
``flock`` (re-exported here as ``fsync_dir`` and ``flocked``); what is the
store's own is its hot path of many files at once:

- every file is created exclusively (``O_EXCL``) with mode 0600 under an
  unpredictable temporary name beside its target, written, fsynced, and
  only then renamed over the target; the directory is fsynced afterwards;
- directories are created with mode 0700;
- reads refuse to follow symbolic links, and anything but a regular file
  (opened without blocking, so a FIFO cannot hang a reader);
- an advisory ``flock`` serialises the short rename steps of concurrent
  processes.

Callers only ever hand these functions ciphertext.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from strongroom.durable import PRIVATE_DIR, PRIVATE_FILE, TEMP_SUFFIX, fsync_dir
from strongroom.durable import locked as flocked

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "FileIdentity",
    "NotRegularFileError",
    "ensure_private_dir",
    "flocked",
    "fsync_dir",
    "identity",
    "is_symlink_error",
    "keep_written_time",
    "link_aside",
    "open_for_reading",
    "read_file",
    "read_head",
    "sync_filesystem",
    "temp_file",
    "unlink_quietly",
    "write_temp",
    "write_unsynced",
]

_TEMP_SUFFIX = TEMP_SUFFIX
#: ``O_NONBLOCK``: opening a FIFO planted where a file belongs must not wait for a writer.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

#: ``link`` errors of a file system without hard links (or out of them for a file).
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV})

#: What tells two versions of a file apart: every write makes a new inode.
FileIdentity = tuple[int, int, int, int]


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (not its parents) with mode 0700 if it is missing."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, PRIVATE_DIR)


def _create_temp(target: Path) -> tuple[Path, int]:
    temp, fd = _create_temp_in(os.fspath(target.parent), target.name)
    return Path(temp), fd


def _create_temp_in(directory: str, name: str) -> tuple[str, int]:
    """A new private file for ``directory/name``; plain strings, for batches' hot loop."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        temp = f"{directory}/.{name}.{secrets.token_hex(12)}{_TEMP_SUFFIX}"
        try:
            return temp, os.open(temp, flags, PRIVATE_FILE)
        except FileExistsError:  # pragma: no cover - 96 random bits collided
            continue


def link_aside(directory: str, name: str) -> str | None:
    """Give ``directory/name`` a second, temporary name beside it; return that name.

    A file replaced while it has that name is freed only when the name is
    removed (see ``_reencrypt``).  ``None`` where the file system has no
    hard links: the caller then lets the file be freed at once.
    """
    target = f"{directory}/{name}"
    while True:
        aside = f"{directory}/.{name}.{secrets.token_hex(12)}{_TEMP_SUFFIX}"
        try:
            os.link(target, aside, follow_symlinks=False)
        except FileExistsError:  # pragma: no cover - 96 random bits collided
            continue
        except OSError as exc:
            if exc.errno in _NO_LINKS:
                return None
            raise
        return aside


def write_unsynced(directory: str, name: str, data: bytes) -> str:
    """Write ``data`` to a temporary file for ``directory/name`` without an fsync; return it.

    For a batch made durable as a whole by :func:`sync_filesystem`.
    """
    temp, fd = _create_temp_in(directory, name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        unlink_quietly(temp)
        raise
    os.close(fd)
    return temp


@contextlib.contextmanager
def temp_file(target: Path, *, durable: bool = True) -> Iterator[tuple[Path, BinaryIO]]:
    """A new private temporary file beside ``target``, fsynced and closed on success.

    On an exception the file is removed.  Renaming it into place is the
    caller's business (usually under :func:`flocked`).  ``durable=False``
    skips the fsync, for a caller that makes a whole batch durable at once
    (:func:`sync_filesystem`) before it counts on any of it.
    """
    temp, fd = _create_temp(target)
    try:
        with os.fdopen(fd, "wb", closefd=True) as handle:
            yield temp, handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        unlink_quietly(temp)
        raise


def write_temp(target: Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to a (fsynced) temporary file beside ``target``; return its path."""
    with temp_file(target, durable=durable) as (temp, handle):
        handle.write(data)
    return temp


def sync_filesystem(path: Path) -> None:
    """Make everything written to ``path``'s file system durable: ``syncfs``, else ``sync``.

    One call for a whole batch of files and renames, instead of an fsync each.
    """
    import ctypes  # only batches pay for it

    syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def read_file(path: Path | str) -> bytes | None:
    """The bytes of ``path``, or ``None`` if it does not exist.

    :raises OSError: it is a symbolic link (``ELOOP``) or cannot be read.
    """
    handle = open_for_reading(path)
    if handle is None:
        return None
    with handle:
        return handle.read()


class NotRegularFileError(OSError):
    """Something other than a regular file (a FIFO, a device, a directory) where one belongs."""


def open_for_reading(path: Path | str) -> BinaryIO | None:
    """``path`` opened for binary reading without following links, or ``None`` if missing.

    :raises NotRegularFileError: it is not a regular file (checked on the open
        descriptor, never blocking on a FIFO).
    :raises OSError: it is a symbolic link (``ELOOP``) or cannot be opened.
    """
    fd = _open_regular(path)
    if fd is None:
        return None
    try:
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", closefd=True)


def read_head(path: Path | str, size: int) -> bytes | None:
    """The first ``size`` bytes of ``path`` (fewer if shorter), or ``None`` if it is missing.

    The checks of :func:`open_for_reading` at the cost of a listing's hot
    loop: no file object.

    :raises NotRegularFileError: it is not a regular file.
    :raises OSError: it is a symbolic link (``ELOOP``) or cannot be read.
    """
    fd = _open_regular(path)
    if fd is None:
        return None
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _open_regular(path: Path | str) -> int | None:
    """A descriptor of ``path``, a regular file reached without a link; ``None`` if missing."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def identity(path: Path | int) -> FileIdentity | None:
    """Device, inode, size and modification time of ``path`` (or an open descriptor)."""
    try:
        info = os.stat(path, follow_symlinks=False) if isinstance(path, Path) else os.fstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def keep_written_time(source: Path | str, target: Path | str) -> None:
    """Give ``target`` the modification time of ``source`` (if it still exists).

    For a file that replaces another with the same content re-sealed: the
    time is when the value was written, which a retention counts from.
    """
    try:
        info = os.stat(source, follow_symlinks=False)
    except FileNotFoundError:
        return
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def unlink_quietly(path: Path | str) -> bool:
    """Remove ``path``; return whether it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def is_symlink_error(exc: OSError) -> bool:
    """Whether ``exc`` is what ``O_NOFOLLOW`` raises on a symbolic link."""
    return exc.errno == errno.ELOOP
