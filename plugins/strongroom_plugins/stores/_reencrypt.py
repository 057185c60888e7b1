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

A batch costs one ``syncfs`` and a few fsyncs, so a pass's time goes to its
files.  Key versions are checked against the key record, and their subkeys
looked up, once per batch (installing checks again under the lock).  The
records a batch replaces are not freed at once: each keeps a temporary name
(a hard link, ``_disk.link_aside``) until the pass ends, however it ends,
and is then removed, by a few threads when there are many (freeing a file
waits on the device).  On ext4 without a journal, creating a file skips,
one by one, every inode freed in the last minutes (``recently_deleted``),
so a pass that freed one file per record between creating one per record
grew quadratic in its length.  The price is room for the old and the new
copy of every record rewritten until the pass ends.  A pass killed before
its end leaves those names as ordinary temporary files of ciphertext,
ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from strongroom.formats import peek_key_version
from strongroom.store import ReencryptProgress
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._batch import BatchWriter, Reseal
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import StoredObject, orphan_key_files, scan
from strongroom_plugins.stores._sealing import PEEK, Checked, Sealer, peek_file, read_object

__all__ = ["BATCH", "Reencryption", "object_versions"]

#: Records re-sealed per batch: one journal, one ``syncfs``, not an fsync each.
BATCH = 1024
#: From how many replaced records a pass frees them with ``FREEING_THREADS`` threads.
FREE_IN_PARALLEL = 256
FREEING_THREADS = 4

log = logging.getLogger(__name__)


def _free(paths: list[str]) -> None:
    """Remove the temporary names of the records a pass replaced, freeing them.

    Freeing a file waits on the device (ext4 may discard its block), so
    many are removed by a few threads; the order is of no consequence.  A
    name that cannot be removed is left behind like any temporary file:
    it must not fail a pass that has done its work.
    """
    if len(paths) >= FREE_IN_PARALLEL:
        shares = [paths[start::FREEING_THREADS] for start in range(FREEING_THREADS)]
        try:
            with ThreadPoolExecutor(FREEING_THREADS) as pool:
                for _ in pool.map(_free_all, shares):
                    pass
            return
        except RuntimeError:  # no new threads (the interpreter is exiting): one by one
            pass
    _free_all(paths)


def _free_all(paths: list[str]) -> None:
    for path in paths:
        try:
            _disk.unlink_quietly(path)
        except OSError as exc:
            log.debug("could not remove %s: %s", path, exc)


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
        The records it replaces are freed when it ends, however it ends.
        """
        retired: list[str] = []
        try:
            yield from self._run(target, objects, retired)
        finally:
            _free(retired)

    def _run(
        self, target: int, objects: list[StoredObject], retired: list[str]
    ) -> Iterator[ReencryptProgress]:
        total = len(objects)
        yield ReencryptProgress(0, total)
        inactive = set(self._sealer.versions.inactive())
        done = skipped = rewritten = 0
        pending: list[Reseal] = []
        checked: Checked = {}  # versions checked against the key record, per batch
        for obj in objects:
            outcome = self._visit(obj, target, inactive, pending, checked)
            if outcome is None:
                skipped += 1
            else:
                done, rewritten = done + outcome[0], rewritten + outcome[1]
            if len(pending) >= BATCH:
                done, rewritten = done + len(pending), rewritten + self._reseal(pending, retired)
                pending, checked = [], {}
            yield ReencryptProgress(done, total, rewritten)
        if pending:
            done, rewritten = done + len(pending), rewritten + self._reseal(pending, retired)
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
        self,
        obj: StoredObject,
        target: int,
        inactive: set[int],
        pending: list[Reseal],
        checked: Checked,
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
        pending.append((obj.name, self._sealer.open_record(obj, data, checked)[2], data, version))
        return 0, 0

    def _reseal(self, pending: list[Reseal], retired: list[str]) -> int:
        """Re-seal records in one batch (one at a time if it may not be installed); their bytes."""
        if not self._batches.reseal(pending, retired):
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
