"""The ``files`` store's re-encryption pass, and the rewrite it shares with reads.

A pass brings every object up to a target key version, skipping those
already current by peeking at their unauthenticated headers, so an
interrupted pass resumes where it stopped.  Each rewrite is a
compare-and-swap, so a concurrent write always wins.  The floor is raised
only under the store's lock, once a final scan finds nothing older than
the target: no writer can slip an older object in between the check and
the raise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from strongroom.formats import peek_key_version
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._floor import Floor
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import StoredObject, orphan_key_files, scan
from strongroom_plugins.stores._sealing import PEEK, Sealer, read_error, read_object

__all__ = ["Reencryption"]


class Reencryption:
    """Re-encrypts one store's objects under the primary version of its keyset."""

    def __init__(self, root: Path, sealer: Sealer, installer: Installer, floor: Floor) -> None:
        self._root = root
        self._sealer = sealer
        self._installer = installer
        self._floor = floor

    def run(self, target: int, objects: list[StoredObject]) -> Iterator[tuple[int, int]]:
        """Upgrade ``objects`` to at least ``target``, yielding progress, then raise the floor."""
        total = len(objects)
        yield 0, total
        for done, obj in enumerate(objects, 1):
            self._upgrade(obj, target)
            yield done, total
        # Raise the floor only once nothing on disk is older than the target.  The
        # final check runs under the lock, so no writer can slip an older object in.
        while True:
            with self._installer.locked():
                stale = [obj for obj in scan(self._root) if self._stale(obj, target)]
                if not stale:
                    for orphan in orphan_key_files(self._root):
                        _disk.unlink_quietly(orphan)
                    self._floor.raise_to(target)
                    return
            for obj in stale:
                self._upgrade(obj, target)

    def replace_record(self, obj: StoredObject, data: bytes, plaintext: bytes) -> None:
        """Re-seal a record under the primary version, unless it changed since ``data``."""
        sealed = self._sealer.seal(self._sealer.primary(), plaintext, obj.context_record)
        self._installer.swap(obj.path, _disk.write_temp(obj.path, sealed), expected=data)

    def _peek(self, path: Path) -> int | None:
        """The key version in ``path``'s header, unauthenticated; ``None`` if it is gone."""
        try:
            handle = _disk.open_for_reading(path)
        except OSError as exc:
            raise read_error(path, exc) from exc
        if handle is None:
            return None
        with handle:
            return peek_key_version(handle.read(PEEK))

    def _stale(self, obj: StoredObject, target: int) -> bool:
        paths = (obj.path, obj.key_file) if obj.is_blob else (obj.path,)
        return any((version := self._peek(path)) is not None and version < target for path in paths)

    def _upgrade(self, obj: StoredObject, target: int) -> None:
        """Bring one object up to at least ``target``; skip what is current or gone."""
        if obj.is_blob:
            self._upgrade_key_file(obj, target)
            self._upgrade_blob(obj, target)
            return
        data = read_object(obj.path)
        if data is None or peek_key_version(data[:PEEK]) >= target:
            return
        self.replace_record(obj, data, self._sealer.open_record(obj, data)[2])

    def _upgrade_key_file(self, obj: StoredObject, target: int) -> None:
        data = read_object(obj.key_file)
        if data is None or peek_key_version(data[:PEEK]) >= target:
            return
        encoded, _ = self._sealer.open(data, obj.key_file_context_record)
        sealed = self._sealer.seal(self._sealer.primary(), encoded, obj.key_file_context_record)
        self._installer.swap(obj.key_file, _disk.write_temp(obj.key_file, sealed), expected=data)

    def _upgrade_blob(self, obj: StoredObject, target: int) -> None:
        handle = _disk.open_for_reading(obj.path)
        if handle is None:
            return
        with handle:
            before = _disk.identity(handle.fileno())
            if peek_key_version(handle.read(PEEK)) >= target:
                return
            handle.seek(0)
            reader = self._sealer.blob_reader(obj, handle)
            temp = self._sealer.encrypt_blob(obj, self._sealer.primary(), reader.iter_chunks())
        self._installer.swap(obj.path, temp, expected=before)
