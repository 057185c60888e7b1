"""Crash-safe file operations: atomic replace, directory fsync, advisory locks.

Public for plugin authors: a store or provider that keeps files uses these
rather than its own copies.  Every write that must survive a crash goes
through :func:`atomic_write`:
the bytes go to a private temporary file in the same directory, are
fsynced, renamed over the target and the directory is fsynced, so a reader
(or a restart after SIGKILL) sees the old file or the new one, never a mix.
Callers only ever hand it ciphertext or non-secret metadata.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "TEMP_SUFFIX",
    "atomic_write",
    "fsync_dir",
    "locked",
    "make_private_dir",
    "temp_path_for",
]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
TEMP_SUFFIX = ".tmp"


def make_private_dir(path: Path) -> None:
    """Create ``path`` and each missing parent owner-only; existing ones are left as they are."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR, exist_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(target: Path) -> Path:
    """A fresh, unpredictable temporary name beside ``target``."""
    import secrets

    return target.with_name(f".{target.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}")


def open_private(path: Path) -> int:
    """Create ``path`` exclusively with mode 0600 and return a write descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)


def atomic_write(target: Path, data: bytes | bytearray | memoryview) -> None:
    """Replace ``target`` with ``data`` atomically and durably.

    :raises OSError: the write failed and ``target`` is unchanged; or, when
        the final directory fsync fails, ``target`` already holds ``data`` but
        the rename may not survive a crash.
    """
    temp = temp_path_for(target)
    fd = open_private(temp)
    try:
        with os.fdopen(fd, "wb", closefd=True) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def locked(lock_file: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an advisory ``flock`` on ``lock_file`` (created 0600 if missing, never through a link).

    The kernel releases it when the process dies, so a killed holder never
    leaves it locked.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(lock_file, flags, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
