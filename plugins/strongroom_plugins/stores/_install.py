"""Putting the ``files`` store's freshly written files in place, under its lock.

Writers encrypt into private temporary files holding no lock; only the
renames and removals that follow take the store's ``flock``.  Two rules
keep concurrent writers and a re-encryption pass from undoing each other:
:meth:`Installer.install` refuses a file sealed under a key version the
floor was raised above meanwhile, so nothing older than the floor lands
after a pass checked; :meth:`Installer.swap` replaces a file only if it
still is what was read, so a write made meanwhile always wins.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from strongroom.errors import StoreError
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._floor import Floor
from strongroom_plugins.stores._layout import LOCK_FILE

__all__ = ["Installer"]


class Installer:
    """Renames temporary files over their targets in one store's directory."""

    def __init__(self, root: Path, floor: Floor, store_name: str) -> None:
        self._root = root
        self._floor = floor
        self._store_name = store_name

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock, shared with every other process using the directory."""
        with _disk.flocked(self._root / LOCK_FILE):
            yield

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
        when a re-encryption pass raised the floor above ``version`` meanwhile.
        """
        removed: list[Path] = []
        try:
            with self.locked():
                installed = version >= self._floor.read()
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
        self, target: Path, temp: Path, *, expected: bytes | _disk.FileIdentity | None
    ) -> None:
        """Rename ``temp`` over ``target`` only if ``target`` still is what was read.

        ``expected`` is the file's bytes (small files) or its identity.  If a
        writer replaced or removed it meanwhile, its write wins and ``temp``
        is dropped.
        """
        try:
            with self.locked():
                if isinstance(expected, bytes):
                    current: object = _disk.read_file(target)
                else:
                    current = _disk.identity(target)
                swapped = current is not None and current == expected
                if swapped:
                    os.replace(temp, target)
        except BaseException:
            _disk.unlink_quietly(temp)
            raise
        if swapped:
            _disk.fsync_dir(target.parent)
        else:
            _disk.unlink_quietly(temp)
