"""Writing many records at once: sealed into one journal, installed all or nothing.

``put_many`` seals every record under the primary version into a batch
journal (see ``_journal``) with no lock held, then commits and installs it
under the lock.  If the primary changed meanwhile, the journal is opened
with the key it was written with (held since, as a blob's is) and sealed
again under the new primary, as ``put`` would seal again.  Re-encryption
uses the same path with conditional entries, so a write made since always
wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import IntegrityError, StoreError
from strongroom.formats import open_sealed
from strongroom.keys import DataKey
from strongroom.store import StoreBinding
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._blob_write import WRITE_ATTEMPTS
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._journal import JOURNAL_FILE, JournalWriter, digest, entries
from strongroom_plugins.stores._layout import encode_key, frame_record
from strongroom_plugins.stores._names import NameKeys
from strongroom_plugins.stores._sealing import Sealer, object_context

__all__ = ["BatchWriter", "Reseal"]

#: A record to re-seal: its name, plaintext, the bytes read and the version they were under.
Reseal = tuple[str, bytes, bytes, int]


class BatchWriter:
    """Installs batches of records in one store's directory."""

    def __init__(
        self, binding: StoreBinding, sealer: Sealer, installer: Installer, names: NameKeys
    ) -> None:
        self._binding = binding
        self._root = binding.directory
        self._sealer = sealer
        self._installer = installer
        self._names = names

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Store every ``(key, value)``, all or none; return how many (the last of a key wins).

        :raises strongroom.errors.UsageError: a key is not a valid record key;
            nothing is stored.
        """
        data_key = self._sealer.primary()

        def sealed() -> Iterable[tuple[str, bytes, bytes | None]]:
            for key, value in items:
                encoded = encode_key(key)
                name = self._names.name(encoded)
                plaintext = frame_record(encoded, value)
                yield name, self._sealer.seal(data_key, plaintext, name), None

        return self._install(data_key, sealed(), frozenset())

    def reseal(self, records: list[Reseal], retired: list[str] | None = None) -> bool:
        """Re-seal ``records`` under the primary, each only if still what was read.

        Returns ``False``, having changed nothing, when a version read may no
        longer be re-sealed (retired or rolled back meanwhile): the caller
        then goes one record at a time.  ``retired``: the files replaced
        keep a temporary name, added to it (see ``_journal.apply``).
        """
        data_key = self._sealer.primary()
        batch = (
            (name, self._sealer.seal(data_key, plaintext, name), digest(read))
            for name, plaintext, read, _version in records
        )
        read_under = frozenset(version for *_, version in records)
        try:
            self._install(data_key, batch, read_under, retired)
        except _Refused:
            return False
        return True

    def _install(
        self,
        data_key: DataKey,
        batch: Iterable[tuple[str, bytes, bytes | None]],
        read_under: frozenset[int],
        retired: list[str] | None = None,
    ) -> int:
        target = self._root / JOURNAL_FILE
        temp, count = self._write(target, batch)
        if not count:
            _disk.unlink_quietly(temp)
            return 0
        try:
            for _attempt in range(WRITE_ATTEMPTS):
                if self._installer.commit(temp, data_key.version, read_under, retired):
                    return count
                if read_under and not all(
                    self._sealer.versions.resealable(read) for read in read_under
                ):
                    raise _Refused
                written_with, data_key = data_key, self._sealer.primary()
                fresh, _ = self._write(target, self._transcode(temp, written_with, data_key))
                _disk.unlink_quietly(temp)
                temp = fresh
        except BaseException:
            _disk.unlink_quietly(temp)
            raise
        _disk.unlink_quietly(temp)
        raise StoreError(
            f"could not store a batch in {self._binding.name!r}: its keys keep changing"
        )

    def _write(
        self, target: Path, batch: Iterable[tuple[str, bytes, bytes | None]]
    ) -> tuple[Path, int]:
        with self._installer.writing(target), _disk.temp_file(target) as (temp, handle):
            journal = JournalWriter(handle)
            for name, sealed, expected in batch:
                journal.add(name, sealed, expected)
            journal.finish()
        return temp, journal.count

    def _transcode(
        self, temp: Path, old: DataKey, new: DataKey
    ) -> Iterable[tuple[str, bytes, bytes | None]]:
        def written_with(version: int) -> tuple[CipherSuite, memoryview]:
            if version != old.version:
                raise IntegrityError(f"{temp} is not the batch this store just wrote")
            return old.suite, old.material.view()

        for name, sealed, expected in entries(temp):
            context = object_context(self._binding, name)
            plaintext = open_sealed(sealed, written_with, context)
            yield name, self._sealer.seal(new, plaintext, name), expected


class _Refused(Exception):
    """A conditional batch may no longer be installed as a whole."""
