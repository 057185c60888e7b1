"""Purging the ``files`` store's objects by age, for a configured retention.

An object's write time is its file's modification time: each ``put``,
batch entry and blob is a new file renamed into place, so the time is set
by the write itself, costs no bytes, and is read without a key (a locked
account's store can be purged).  The store's own rewrites keep it:
re-encryption gives the new file the old one's time before renaming it
over (``_install``, ``_journal``), so re-keying never extends a record's
life.  For data minimisation that is the right side to err on: anyone
able to set a file's time can read, copy or keep the file anyway, and a
file restored from a backup keeps its old time and goes at the next purge.
Copying the directory without keeping times (``cp`` without ``-p``) makes
everything in it new: a limit the docs state.

A blob is as old as its blob file (renamed in last, after its key file).
Candidates are found by a scan without the lock, then each is checked
again and removed under it, so a write made meanwhile (a newer time) is
kept; a blob goes before its key file, so one never exists without it.
A key file whose blob never arrived (a killed writer) is removed too once
it is past the cutoff.  Each removal is a single ``unlink``, and the
directories are fsynced at the end: a crash leaves each object whole or
gone.

A scan costs a ``stat`` per object, too much for every open of a large
store, so each scan leaves ``expiry`` in the store's directory: a lower
bound on every object's write time (the oldest it kept, or the scan's own
start if older, less a second for the kernel's coarse clock).  Writes
made since are newer and re-encryption keeps times, so while the cutoff
is not past it nothing can be due and no scan runs.  The file is a hint
only: missing, unreadable or in the future (set by hand) means "scan";
files restored with older times than it are found at the latest when it
falls due, one retention period after that scan.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from strongroom.errors import StoreError
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import StoredObject, orphan_key_files, scan

__all__ = ["HINT_FILE", "Expiry"]

#: Every object in the store was written at or after the nanosecond it holds (ASCII).
HINT_FILE = "expiry"
#: Margin for the kernel's file times lagging ``time.time_ns()`` (a coarse clock).
_CLOCK_SLACK_NS = 1_000_000_000


def _written_ns(path: Path | str) -> int | None:
    """The file's modification time in nanoseconds; ``None`` if it is gone."""
    try:
        return os.stat(path, follow_symlinks=False).st_mtime_ns
    except FileNotFoundError:
        return None


class Expiry:
    """Deletes one store's objects last written before a cutoff."""

    def __init__(self, root: Path, installer: Installer, store_name: str) -> None:
        self._root = root
        self._installer = installer
        self._store_name = store_name

    def purge(self, written_before: float) -> set[str]:
        """Delete every object written before ``written_before``; return their 64-hex names.

        Nothing is locked or written when nothing is due: the cost is one
        ``stat`` per object.
        """
        cutoff = int(written_before * 1_000_000_000)
        started = time.time_ns()
        if cutoff <= self._known_oldest(started):
            return set()
        oldest = started - _CLOCK_SLACK_NS

        def due(path: Path | str) -> bool:
            nonlocal oldest
            written = _written_ns(path)
            if written is None:
                return False
            if written >= cutoff:
                oldest = min(oldest, written)
            return written < cutoff

        candidates = [obj for obj in scan(self._root) if due(obj.location)]
        orphans = [path for path in orphan_key_files(self._root) if due(path)]
        if not candidates and not orphans:
            self._remember(oldest)
            return set()
        removed: list[StoredObject] = []
        touched: set[Path] = set()
        try:
            with self._installer.locked():  # a committed batch is finished first
                for obj in candidates:
                    if due(obj.location):  # not rewritten since the scan
                        _disk.unlink_quietly(obj.path)
                        if obj.is_blob:  # after the blob: never a blob without it
                            _disk.unlink_quietly(obj.key_file)
                        removed.append(obj)
                        touched.add(obj.path.parent)
                for path in orphans:
                    blob = path.with_name(path.name.removesuffix(".name"))
                    if due(path) and not os.path.lexists(blob):  # still no blob
                        _disk.unlink_quietly(path)
                        touched.add(path.parent)
            for directory in touched:
                _disk.fsync_dir(directory)
        except OSError as exc:
            raise StoreError(f"could not purge store {self._store_name!r}: {exc}") from exc
        self._remember(oldest)  # what it kept under the lock is at least as new
        return {obj.name for obj in removed}

    def _known_oldest(self, now: int) -> int:
        """The hint's bound, or -1 (scan) if it is missing, unreadable or in the future."""
        try:
            data = _disk.read_file(self._root / HINT_FILE)
            bound = int(data or b"-1")
        except (OSError, ValueError):
            return -1
        return bound if bound <= now else -1

    def _remember(self, oldest: int) -> None:
        """Save the hint, best effort: losing it costs one scan, never a missed purge."""
        target = self._root / HINT_FILE
        try:
            temp = _disk.write_temp(target, str(oldest).encode(), durable=False)
        except OSError:
            return
        try:
            os.replace(temp, target)
        except OSError:
            with contextlib.suppress(OSError):
                _disk.unlink_quietly(temp)
