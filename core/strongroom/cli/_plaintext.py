"""The plaintext SQLite file ``migrate`` reads: checked before use, removed only at the end."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from strongroom.errors import UsageError

#: The first 16 bytes of every plaintext SQLite 3 database; SQLCipher's are a random salt.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Files SQLite keeps beside a database: write-ahead log, its index, rollback journal.
SIBLING_SUFFIXES = ("-wal", "-shm", "-journal")

ERASURE_WARNING = (
    "on flash storage (SSDs, SD cards, phones) and copy-on-write or journaling file systems "
    "a deleted file's blocks can survive: only full-disk encryption, or destroying the "
    "medium, guarantees the plaintext is gone"
)


def check_plaintext(path: Path, *, removing: bool) -> None:
    """Refuse anything but a plaintext SQLite database file that can be removed cleanly.

    :raises UsageError: missing, a symbolic link, a directory, a pipe, socket
        or device, a file with other hard links (when ``removing``), or a file
        that is not a plaintext SQLite database (an encrypted one included).
    """
    try:
        info = path.lstat()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or 'cannot be read'}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(f"{path} is a symbolic link; name the database file itself")
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path} is a directory, not a SQLite database")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file (a pipe, socket or device)")
    if removing and info.st_nlink > 1:
        raise UsageError(
            f"{path} has {info.st_nlink - 1} other hard link(s), which would keep the "
            "plaintext; remove them or pass --keep-plaintext"
        )
    header = _header(path)
    if header and header != SQLITE_MAGIC:  # an empty file is an empty database to SQLite
        raise UsageError(
            f"{path} is not a plaintext SQLite database (an encrypted database, "
            "or another kind of file)"
        )


def _header(path: Path) -> bytes:
    """The first 16 bytes, read without following a link or blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or 'cannot be opened'}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since lstat
            raise UsageError(f"{path} is not a regular file (a pipe, socket or device)")
        return os.read(fd, len(SQLITE_MAGIC))
    finally:
        os.close(fd)


def remove_plaintext(path: Path, between: Callable[[], None] = lambda: None) -> None:
    """Remove the database's siblings, call ``between``, remove the database, sync the directory.

    The caller has checkpointed the write-ahead log into the file: a kill
    between two removals leaves the database whole and readable.
    """
    from strongroom.durable import fsync_dir

    for suffix in SIBLING_SUFFIXES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    between()
    path.unlink()
    fsync_dir(path.parent)
