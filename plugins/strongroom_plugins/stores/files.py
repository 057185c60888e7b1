"""The ``files`` store: one sealed file per record, one chunked file per blob.

Layout under the store's directory (directories 0700, files 0600)::

    records/<2 hex>/<64 hex>          a sealed object: u16 BE key length | key | value
    blobs/<2 hex>/<64 hex>            a chunked object: the blob
    blobs/<2 hex>/<64 hex>.name       a sealed object: the blob's key
    floor                             the re-encryption floor (see below)
    .lock                             serialises the rename steps of concurrent writers

The 64-hex name is HMAC-SHA256 of the key's UTF-8 under a name key derived
with HKDF-SHA256 from version 1 of the store's ``store:<name>:names``
keyset (``info = b"strongroom/v1/record-names"``), so a file name tells
nothing about the key.  Every object is bound to (account, store name,
its 64-hex name; ``blob:``/``blob-name:`` prefixed for blobs and their
key files), so a file moved to another name, store or account fails
authentication.  Listing decrypts each record (or blob key file) to
recover its key.

Writes encrypt straight into a private temporary file beside the target
(``O_EXCL``, unpredictable name), fsync it, rename it into place under
the store's lock and fsync the directory: a reader, a concurrent process
or a restart after SIGKILL sees the old file or the new one, never a mix.
Plaintext never reaches the disk.  A killed writer may leave a
``.<name>.<random>.tmp`` file behind; it holds only ciphertext and is
ignored.

Records and blobs share one key namespace.  ``put`` renames the record
into place, then removes a blob of the same key; ``put_blob`` renames the
blob's key file, then the blob, then removes a record of the same key;
``delete`` removes the record, the blob, then the key file.  A crash
between those steps can leave:

- a key file without its blob: an orphan, ignored by listing and removed
  by :meth:`FilesStore.reencrypt`;
- a record and a blob of the same key: ``get`` answers with the record,
  ``get_blob`` with the blob, each the old or the new value; the next
  write or delete of the key removes the leftover.

A blob never exists without its key file.

Reading verifies everything.  A record written under an older version of
the store's keyset is re-sealed under the primary version and atomically
replaced, unless it changed meanwhile (compare-and-swap under the lock);
a failure to rewrite it does not fail the read.  :meth:`FilesStore.reencrypt`
does the same for every object, skipping those already current by peeking
at their headers.  When a pass completes, it records the version it
brought everything to in ``floor`` (see ``_floor``); from then on an
object under an older version is refused as rolled back
(:class:`~strongroom.errors.IntegrityError`) instead of decrypting an old
copy put back by someone with access to the files.  This stops single
objects being rolled back across a re-encryption; it cannot stop a
rollback to an older value under the same key version, nor the whole
directory being restored.  A header naming a key version the keyset never
had is refused the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

from pydantic import Field

from strongroom.errors import (
    IntegrityError,
    RecordNotFoundError,
    StoreError,
    StrongroomError,
    UsageError,
)
from strongroom.keys import DataKey
from strongroom.settings import BackendSettings
from strongroom.store import Store, StoreBinding
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._floor import Floor
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import (
    BLOBS,
    FLOOR_FILE,
    RECORDS,
    StoredObject,
    encode_key,
    frame_record,
    scan,
)
from strongroom_plugins.stores._names import NameKeys
from strongroom_plugins.stores._reencrypt import Reencryption
from strongroom_plugins.stores._sealing import Sealer, object_context, read_error, read_object
from strongroom_plugins.stores._streams import SourceFailed, pull, stream

__all__ = ["FilesStore", "FilesStoreSettings"]

log = logging.getLogger(__name__)

#: How often a write is redone because a re-encryption pass raised the floor under it.
_WRITE_ATTEMPTS = 5


class FilesStoreSettings(BackendSettings):
    """``[stores.<name>]`` settings of ``use = "files"``."""

    #: Plaintext bytes per chunk of a blob: from 4 KiB to 64 MiB.
    chunk_size: int = Field(default=1 << 20, ge=4096, le=64 << 20)


class FilesStore(Store):
    """Records and blobs as individually encrypted files in the store's directory."""

    Settings = FilesStoreSettings

    def __init__(self, settings: BackendSettings | None = None, *, binding: StoreBinding) -> None:
        """:raises strongroom.errors.StoreError: the directory cannot be prepared."""
        super().__init__(settings, binding=binding)
        if not isinstance(self.settings, FilesStoreSettings):
            raise UsageError("the files store takes FilesStoreSettings")
        self._root = binding.directory
        self._names = NameKeys(binding)
        self._floor = Floor(
            self._root / FLOOR_FILE,
            object_context(binding, FLOOR_FILE).encode(),
            self._names.floor_key,
        )
        self._sealer = Sealer(binding, self._names, self._floor, self.settings.chunk_size)
        self._installer = Installer(self._root, self._floor, binding.name)
        self._reencryption = Reencryption(self._root, self._sealer, self._installer, self._floor)
        try:
            if not self._root.is_dir():
                raise FileNotFoundError(self._root)
            for sub in (RECORDS, BLOBS):
                _disk.ensure_private_dir(self._root / sub)
        except OSError as exc:
            raise StoreError(f"cannot open the files store in {self._root}: {exc}") from exc

    def close(self) -> None:
        self._names.close()

    @property
    def key_purposes(self) -> tuple[str, ...]:
        return (self.binding.purpose, self.binding.names_purpose)

    def __repr__(self) -> str:
        return f"<FilesStore {self.binding.account}/{self.binding.name} in {self._root}>"

    # the Store interface

    def put(self, key: str, value: bytes) -> None:
        encoded = encode_key(key)
        obj = self._record(encoded)
        blob = StoredObject.blob(self._root, obj.name)
        plaintext = frame_record(encoded, value)
        for _attempt in range(_WRITE_ATTEMPTS):
            data_key = self._sealer.primary()
            sealed = self._sealer.seal(data_key, plaintext, obj.context_record)
            with self._installer.writing(obj.path):
                temp = _disk.write_temp(obj.path, sealed)
                if self._installer.install(
                    [(temp, obj.path)], data_key.version, remove=(blob.path, blob.key_file)
                ):
                    return
                _disk.unlink_quietly(temp)  # sealed under a key older than the floor: again
        raise StoreError(f"could not store {key!r}: the store's keys keep changing")

    def get(self, key: str) -> bytes:
        obj = self._record(encode_key(key))
        data = read_object(obj.path)
        if data is None:
            raise RecordNotFoundError(f"no record {key!r} in store {self.binding.name!r}")
        _, value, plaintext, stale = self._sealer.open_record(obj, data)
        if stale:  # re-encrypt lazily: best effort, never fails the read
            try:
                self._reencryption.replace_record(obj, data, plaintext)
            except (OSError, StrongroomError) as exc:
                log.debug("could not re-encrypt a record of store %r: %s", self.binding.name, exc)
        return value

    def delete(self, key: str) -> None:
        obj = self._record(encode_key(key))
        blob = StoredObject.blob(self._root, obj.name)
        try:
            with self._installer.locked():
                removed = _disk.unlink_quietly(obj.path)
                removed = _disk.unlink_quietly(blob.path) or removed
                _disk.unlink_quietly(blob.key_file)  # after the blob: never a blob without it
            for directory in (obj.path.parent, blob.path.parent):
                if directory.exists():
                    _disk.fsync_dir(directory)
        except OSError as exc:
            raise StoreError(f"could not delete {key!r}: {exc}") from exc
        if not removed:
            raise RecordNotFoundError(f"no record {key!r} in store {self.binding.name!r}")

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key, decrypted from its record or blob key file: all are verified.

        :raises strongroom.errors.IntegrityError: a file fails verification.
        :raises strongroom.errors.KeyUnavailableError: the account is locked, or
            an object is under a destroyed or retired key version.
        """
        self._names.derive()  # a locked account fails here, before any file is read
        found: set[str] = set()
        for obj in scan(self._root):
            if obj.is_blob:
                key = self._blob_key(obj)
            else:
                data = read_object(obj.path)
                key = None if data is None else self._sealer.open_record(obj, data)[0]
            if key is not None and key.startswith(prefix):  # None: deleted since the scan
                found.add(key)
        return iter(sorted(found))

    def put_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        encoded = encode_key(key)
        obj = self._blob(encoded)
        data_key = self._sealer.primary()
        try:
            self._put_blob(obj, data_key, encoded, pull(chunks))
        except SourceFailed as failure:  # the caller's iterable raised: pass it on untouched
            raise failure.original from None

    def get_blob(self, key: str) -> Iterator[bytes]:
        obj = self._blob(encode_key(key))
        try:
            handle = _disk.open_for_reading(obj.path)
        except OSError as exc:
            raise read_error(obj.path, exc) from exc
        if handle is None:
            raise RecordNotFoundError(f"no blob {key!r} in store {self.binding.name!r}")
        try:
            reader = self._sealer.blob_reader(obj, handle)
        except BaseException:
            handle.close()
            raise
        return stream(reader, handle)

    def reencrypt(self) -> Iterator[tuple[int, int]]:
        """Bring every object up to the primary version, then raise the floor.

        Objects already current are skipped after peeking at their headers,
        so an interrupted pass resumes where it stopped.  The store stays
        usable throughout.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.IntegrityError: an object fails verification.
        :raises strongroom.errors.KeyUnavailableError: an object is under a
            destroyed or retired version; it can only be deleted.
        """
        target = self._sealer.primary().version
        return self._reencryption.run(target, scan(self._root))

    # helpers of the operations above

    def _name(self, encoded_key: bytes) -> str:
        return self._names.name(encoded_key)

    def _record(self, encoded_key: bytes) -> StoredObject:
        return StoredObject.record(self._root, self._name(encoded_key))

    def _blob(self, encoded_key: bytes) -> StoredObject:
        return StoredObject.blob(self._root, self._name(encoded_key))

    def _blob_key(self, obj: StoredObject) -> str | None:
        """The key of a listed blob, or ``None`` if the blob was removed meanwhile."""
        key = self._sealer.open_key_file(obj)
        if key is not None:
            return key
        # Writers remove the blob before its key file and install the key file
        # first, so a missing key file is settled by looking again under the lock.
        with self._installer.locked():
            key = self._sealer.open_key_file(obj)
            if key is None and os.path.lexists(obj.path):
                raise IntegrityError(f"store {self.binding.name!r}: a blob has lost its key file")
        return key

    def _put_blob(
        self, obj: StoredObject, data_key: DataKey, encoded: bytes, chunks: Iterator[bytes]
    ) -> None:
        record = StoredObject.record(self._root, obj.name)
        with self._installer.writing(obj.path):
            temp = self._sealer.encrypt_blob(obj, data_key, chunks)
            try:
                for _attempt in range(_WRITE_ATTEMPTS):
                    key_temp = _disk.write_temp(
                        obj.key_file,
                        self._sealer.seal(data_key, encoded, obj.key_file_context_record),
                    )
                    # The key file goes first: a blob never exists without one.
                    moves = [(key_temp, obj.key_file), (temp, obj.path)]
                    if self._installer.install(moves, data_key.version, remove=(record.path,)):
                        return
                    # A re-encryption pass finished meanwhile: re-encrypt what we wrote.
                    _disk.unlink_quietly(key_temp)
                    data_key = self._sealer.primary()
                    fresh = self._sealer.transcode_blob(obj, temp, data_key)
                    _disk.unlink_quietly(temp)
                    temp = fresh
            except BaseException:
                _disk.unlink_quietly(temp)
                raise
            _disk.unlink_quietly(temp)
        raise StoreError(f"could not store a blob in {self.binding.name!r}: its keys keep changing")
