"""Which key version keys the database: a sidecar file, since the database cannot say.

A SQLCipher file cannot name its own key: everything in it, page 1
included, is encrypted.  ``store.key-version`` beside it records, as
non-secret JSON, the version the file is keyed under and, while a re-key
runs, the version it is going to::

    {"format": 1, "version": 2}
    {"format": 1, "version": 2, "target": 3}

It is written atomically (``strongroom.durable.atomic_write``) and is only
a hint: the opener verifies it by opening the file, and falls back to the
keyset's other active versions (see ``_keying``), so a stale, lost or
edited sidecar can never make the store open under the wrong key, only
cost a few failed attempts.  ``store.lock`` serialises creating and
re-keying the file across processes; readers and writers never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from strongroom.durable import PRIVATE_FILE, atomic_write

__all__ = ["FORMAT", "KeyVersionFile", "Recorded"]

FORMAT = 1


@dataclass(frozen=True)
class Recorded:
    """What the sidecar says: the file's version and, mid re-key, the one it is going to."""

    version: int
    target: int | None = None

    def candidates(self) -> list[int]:
        """The versions to try first, the recorded one first."""
        if self.target is None or self.target == self.version:
            return [self.version]
        return [self.version, self.target]


class KeyVersionFile:
    """The sidecar of one database file, and the lock that serialises re-keying it."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.stem + ".key-version")
        self.lock_path = database.with_name(database.stem + ".lock")

    def read(self) -> Recorded | None:
        """The recorded versions, or ``None`` if the file is missing or not one of ours."""
        try:
            data = json.loads(_read_small(self.path))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        version, target = data.get("version"), data.get("target")
        if not isinstance(version, int) or not _is_version(version):
            return None
        if target is not None and not (isinstance(target, int) and _is_version(target)):
            return None
        return Recorded(version, target)

    def write(self, recorded: Recorded) -> None:
        """Replace the sidecar atomically and durably."""
        data: dict[str, int] = {"format": FORMAT, "version": recorded.version}
        if recorded.target is not None:
            data["target"] = recorded.target
        atomic_write(self.path, json.dumps(data).encode() + b"\n")

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @contextlib.contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the store's ``flock``; yields False (not held) if ``wait`` is off and it is taken.

        The kernel drops it when the holder dies, so a killed re-key never
        leaves the store locked.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.lock_path, flags, PRIVATE_FILE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)


#: Far more than the sidecar ever holds; a longer file is not one of ours.
_MAX_BYTES = 4096


def _read_small(path: Path) -> bytes:
    """The file's bytes: never following a link, blocking on a FIFO or reading a device.

    :raises OSError: missing, not a regular file, or larger than a sidecar can be.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        data = os.read(fd, _MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_BYTES:
        raise OSError(f"{path} is too large to be a key-version file")
    return data


def _is_version(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
