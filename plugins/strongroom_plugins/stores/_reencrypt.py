"""The ``files`` store's re-encryption pass, and the rewrite it shares with reads.

A pass brings every object up to a target key version, skipping those
already current by peeking at their unauthenticated headers, so an
interrupted pass resumes where it stopped.  Records are re-sealed in
batches through the batch journal (see ``_journal``), each entry
conditional on the record being unchanged since it was read; blobs one
by one.  Objects under a retired or
destroyed version cannot be opened again; they are skipped and counted,
not allowed to stop the pass.  Each rewrite is a compare-and-swap, so a
concurrent write always wins.  The floor is raised only under the store's
lock, once a final scan finds nothing readable older than the target: no
writer can slip an older object in between the check and the raise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from strongroom.formats import peek_key_version
from strongroom.store import ReencryptProgress
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._batch import BatchWriter, Reseal
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import StoredObject, orphan_key_files, scan
from strongroom_plugins.stores._sealing import PEEK, Sealer, peek_file, read_object

__all__ = ["BATCH", "Reencryption", "object_versions"]

#: Records re-sealed per batch: one journal, one ``syncfs``, not an fsync each.
BATCH = 1024

log = logging.getLogger(__name__)


def object_versions(obj: StoredObject) -> set[int]:
    """The key versions in the headers of an object's files; empty if it is gone."""
    paths = (obj.path, obj.key_file) if obj.is_blob else (obj.path,)
    return {version for path in paths if (version := peek_file(path)) is not None}


class Reencryption:
    """Re-encrypts one store's objects under the primary version of its keyset."""

    def __init__(
        self,
        root: Path,
        sealer: Sealer,
        installer: Installer,
        batches: BatchWriter,
        store_name: str,
    ) -> None:
        self._root = root
        self._sealer = sealer
        self._installer = installer
        self._batches = batches
        self._store_name = store_name

    def run(self, target: int, objects: list[StoredObject]) -> Iterator[ReencryptProgress]:
        """Upgrade ``objects`` to at least ``target``, yielding progress, then raise the floor.

        ``done`` counts the objects that are current; one under a retired or
        destroyed version is skipped, so a pass that meets any ends below
        ``total``.  ``rewritten_bytes`` sums the stored size of what was rewritten.
        """
        total = len(objects)
        yield ReencryptProgress(0, total)
        inactive = set(self._sealer.versions.inactive())
        done = skipped = rewritten = 0
        pending: list[Reseal] = []
        for obj in objects:
            outcome = self._visit(obj, target, inactive, pending)
            if outcome is None:
                skipped += 1
            else:
                done, rewritten = done + outcome[0], rewritten + outcome[1]
            if len(pending) >= BATCH:
                done, rewritten = done + len(pending), rewritten + self._reseal(pending)
                pending = []
            yield ReencryptProgress(done, total, rewritten)
        if pending:
            done, rewritten = done + len(pending), rewritten + self._reseal(pending)
            yield ReencryptProgress(done, total, rewritten)
        # Raise the floor only once nothing readable on disk is older than the target.
        # The final check runs under the lock, so no writer can slip an older object in.
        while True:
            with self._installer.locked():
                inactive = set(self._sealer.versions.inactive())
                stale = [obj for obj in scan(self._root) if self._stale(obj, target, inactive)]
                if not stale:
                    for orphan in orphan_key_files(self._root):
                        _disk.unlink_quietly(orphan)
                    self._sealer.versions.raise_floor(target)
                    break
            for obj in stale:
                self._upgrade(obj, target)
        if skipped:
            log.warning(
                "store %r: skipped %d objects under retired or destroyed key versions",
                self._store_name,
                skipped,
            )

    def replace_record(self, obj: StoredObject, data: bytes, plaintext: bytes) -> None:
        """Re-seal a record under the primary version, unless it changed since ``data``."""
        data_key = self._sealer.primary()
        sealed = self._sealer.seal(data_key, plaintext, obj.context_record)
        self._installer.swap(
            obj.path,
            _disk.write_temp(obj.path, sealed),
            expected=data,
            versions=(peek_key_version(data[:PEEK]), data_key.version),
        )

    def _visit(
        self, obj: StoredObject, target: int, inactive: set[int], pending: list[Reseal]
    ) -> tuple[int, int] | None:
        """Upgrade a blob, or queue a stale record in ``pending``; ``None`` if it is shredded.

        Returns how many objects are now current (1, or 0 for a queued
        record) and how many stored bytes were rewritten.
        """
        if obj.is_blob:
            if object_versions(obj) & inactive:
                return None
            return 1, self._upgrade(obj, target)
        data = read_object(obj.path)
        if data is None:
            return 1, 0  # gone since the scan
        version = peek_key_version(data[:PEEK])
        if version in inactive:
            return None
        if version >= target:
            return 1, 0
        pending.append((obj.name, self._sealer.open_record(obj, data)[2], data, version))
        return 0, 0

    def _reseal(self, pending: list[Reseal]) -> int:
        """Re-seal records in one batch (one at a time if it may not be installed); their bytes."""
        if not self._batches.reseal(pending):
            for name, plaintext, data, _version in pending:
                self.replace_record(StoredObject.record(self._root, name), data, plaintext)
        return sum(len(data) for _name, _plaintext, data, _version in pending)

    def _stale(self, obj: StoredObject, target: int, inactive: set[int]) -> bool:
        versions = object_versions(obj)
        return not versions & inactive and any(version < target for version in versions)

    def _upgrade(self, obj: StoredObject, target: int) -> int:
        """Bring one object up to at least ``target``, skipping what is current or gone.

        Returns the stored bytes it rewrote.
        """
        if obj.is_blob:
            return self._upgrade_key_file(obj, target) + self._upgrade_blob(obj, target)
        data = read_object(obj.path)
        if data is None or peek_key_version(data[:PEEK]) >= target:
            return 0
        self.replace_record(obj, data, self._sealer.open_record(obj, data)[2])
        return len(data)

    def _upgrade_key_file(self, obj: StoredObject, target: int) -> int:
        data = read_object(obj.key_file)
        if data is None:
            return 0
        version = peek_key_version(data[:PEEK])
        if version >= target:
            return 0
        encoded, _ = self._sealer.open(data, obj.key_file_context_record)
        data_key = self._sealer.primary()
        sealed = self._sealer.seal(data_key, encoded, obj.key_file_context_record)
        self._installer.swap(
            obj.key_file,
            _disk.write_temp(obj.key_file, sealed),
            expected=data,
            versions=(version, data_key.version),
        )
        return len(data)

    def _upgrade_blob(self, obj: StoredObject, target: int) -> int:
        handle = _disk.open_for_reading(obj.path)
        if handle is None:
            return 0
        with handle:
            before = _disk.identity(handle.fileno())
            version = peek_key_version(handle.read(PEEK))
            if before is None or version >= target:
                return 0
            handle.seek(0)
            reader = self._sealer.blob_reader(obj, handle)
            data_key = self._sealer.primary()
            temp = self._sealer.encrypt_blob(obj, data_key, reader.iter_chunks())
        self._installer.swap(obj.path, temp, expected=before, versions=(version, data_key.version))
        return before[2]  # its size
