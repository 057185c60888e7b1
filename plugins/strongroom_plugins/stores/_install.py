"""Putting the ``files`` store's freshly written files in place, under its lock.

Writers encrypt into private temporary files holding no lock; only the
renames and removals that follow take the store's ``flock``.  Two rules
keep concurrent writers, a re-encryption pass and the key hierarchy from
undoing each other (see ``_versions``):

- a file is renamed in only if the version it was sealed under is still
  the primary, so nothing lands under a version a pass has raised the floor
  past, or one counted, retired or destroyed meanwhile: the writer seals
  it again, and a write that reports success is never already shredded;
- :meth:`Installer.swap` replaces a file only if it still is what was read,
  and only if what was read may still be re-sealed (not older than the
  floor, not retired), so a write made meanwhile always wins and a copy put
  back is never laundered under a newer key.

Both are decided under the lock, from the key record as it is then.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from strongroom.errors import StoreError
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._journal import JOURNAL_FILE, apply
from strongroom_plugins.stores._layout import LOCK_FILE
from strongroom_plugins.stores._versions import KeyVersions

__all__ = ["Installer"]


class Installer:
    """Renames temporary files over their targets in one store's directory."""

    def __init__(self, root: Path, versions: KeyVersions, store_name: str) -> None:
        self._root = root
        self._versions = versions
        self._store_name = store_name

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock, shared with every other process using the directory.

        A batch a killed writer committed is finished first (see ``_journal``).
        """
        with _disk.flocked(self._root / LOCK_FILE):
            journal = self._root / JOURNAL_FILE
            if os.path.lexists(journal):
                self._replay(journal)
            yield

    def settle(self) -> None:
        """Wait for a batch being installed (or left committed) to be in place.

        Readers call it before they read, so that none sees part of a batch:
        the journal exists exactly while a committed batch is not all in place.
        """
        if os.path.lexists(self._root / JOURNAL_FILE):
            with self.locked():
                pass

    def commit(
        self,
        temp: Path,
        version: int,
        read_under: frozenset[int] = frozenset(),
        retired: list[str] | None = None,
    ) -> bool:
        """Commit and install the batch journal ``temp``, sealed under ``version``, under the lock.

        Refuses (returning ``False``, ``temp`` left to the caller) when
        ``version`` stopped being the primary, or a version in ``read_under``
        (what conditional entries were read under) may no longer be re-sealed.
        ``retired``: the records replaced keep a temporary name, added to it
        for the caller to remove (see ``_journal.apply``).
        """
        journal = self._root / JOURNAL_FILE
        try:
            with self.locked():
                if not self._versions.writable(version) or not all(
                    self._versions.resealable(read) for read in read_under
                ):
                    return False
                os.replace(temp, journal)
                _disk.fsync_dir(self._root)
                self._replay(journal, retired)
        except OSError as exc:
            _disk.unlink_quietly(temp)
            raise StoreError(f"could not write to store {self._store_name!r}: {exc}") from exc
        return True

    def _replay(self, journal: Path, retired: list[str] | None = None) -> None:
        try:
            if retired is None:
                apply(self._root, journal)
            else:
                apply(self._root, journal, retired)
        except OSError as exc:
            raise StoreError(
                f"could not finish a batch in store {self._store_name!r}: {exc}"
            ) from exc

    @contextlib.contextmanager
    def writing(self, target: Path) -> Iterator[None]:
        """Make the target's shard directory; turn ``OSError`` into ``StoreError``."""
        try:
            _disk.ensure_private_dir(target.parent)
            yield
        except OSError as exc:
            raise StoreError(f"could not write to store {self._store_name!r}: {exc}") from exc

    def install(
        self, moves: list[tuple[Path, Path]], version: int, *, remove: tuple[Path, ...]
    ) -> bool:
        """Rename each ``(temp, target)`` in order, then remove ``remove``, under the lock.

        Refuses (returning ``False``, the temporary files left to the caller)
        when ``version`` stopped being the primary meanwhile.
        """
        removed: list[Path] = []
        try:
            with self.locked():
                installed = self._versions.writable(version)
                if installed:
                    for temp, target in moves:
                        os.replace(temp, target)
                    removed = [path for path in remove if _disk.unlink_quietly(path)]
        except BaseException:
            for temp, _ in moves:
                _disk.unlink_quietly(temp)
            raise
        if not installed:
            return False
        for directory in {target.parent for _, target in moves} | {p.parent for p in removed}:
            _disk.fsync_dir(directory)
        return True

    def swap(
        self,
        target: Path,
        temp: Path,
        *,
        expected: bytes | _disk.FileIdentity,
        versions: tuple[int, int],
    ) -> bool:
        """Rename ``temp`` over ``target`` only if ``target`` still is what was read.

        ``expected`` is the file's bytes (small files) or its identity, and
        ``versions`` the key versions of what was read and of ``temp``.  If a
        writer replaced or removed the file meanwhile, its write wins; if what
        was read is now older than the floor, it was put back and must not be
        re-sealed; if it was retired meanwhile, the retirement wins; if
        ``temp`` is no longer under the primary, the next pass redoes it.
        Then ``temp`` is dropped.  Returns whether it was swapped.

        ``temp`` takes ``target``'s modification time first: a re-seal is
        not a write, and a retention counts from the last write (``_expiry``).
        """
        try:
            with self.locked():
                if isinstance(expected, bytes):
                    current: object = _disk.read_file(target)
                else:
                    current = _disk.identity(target)
                read_under, sealed_under = versions
                swapped = (
                    current is not None
                    and current == expected
                    and self._versions.resealable(read_under)
                    and self._versions.writable(sealed_under)
                )
                if swapped:
                    _disk.keep_written_time(target, temp)
                    os.replace(temp, target)
        except BaseException:
            _disk.unlink_quietly(temp)
            raise
        if swapped:
            _disk.fsync_dir(target.parent)
        else:
            _disk.unlink_quietly(temp)
        return swapped
