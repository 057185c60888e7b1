"""The ``files`` store: one sealed file per record, one chunked file per blob.

Layout under the store's directory (directories 0700, files 0600)::

    records/<2 hex>/<64 hex>          a sealed object: u16 BE key length | key | value
    blobs/<2 hex>/<64 hex>            a chunked object: the blob
    blobs/<2 hex>/<64 hex>.name       a sealed object: the blob's key
    index                             a sealed object: which key each name holds (``_index``)
    journal                           a committed batch being installed (``_journal``)
    expiry                            no object is older than this, for retention (``_expiry``)
    .lock                             serialises the rename steps of concurrent writers

The 64-hex name is HMAC-SHA256 of the key's UTF-8 under a name key derived
with HKDF-SHA256 from version 1 of the store's ``store:<name>:names``
keyset (``info = b"strongroom/v1/record-names"``), so a file name tells
nothing about the key.  Every object is bound to (account, store name,
its 64-hex name; ``blob:``/``blob-name:`` prefixed for blobs and their
key files), so a file moved to another name, store or account fails
authentication.  Listing takes the names from the directories and their
keys from the name index, opening only objects it does not know yet
(``_listing``).  ``put_many`` and re-encryption install records in
batches, all or nothing, with one fsync per batch (``_journal``).

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
``delete`` removes the record, the blob, then the key file.  All of a
write's renames and removals happen in one hold of the lock, so a lookup
or a listing that misses a key in both forms looks again under the lock
and finds its current one (see ``_lookup``); :meth:`FilesStore.get_any`
reads whichever form a key has.  A crash between those steps can leave:

- a key file without its blob: an orphan, ignored by listing and removed
  by :meth:`FilesStore.reencrypt`;
- a record and a blob of the same key: ``get`` and ``get_any`` answer with
  the record, ``get_blob`` with the blob, each the old or the new value;
  the next write or delete of the key removes the leftover.

A blob never exists without its key file.

Reading verifies everything.  A record written under an older version of
the store's keyset is re-sealed under the primary version and atomically
replaced, unless it changed meanwhile (compare-and-swap under the lock);
a failure to rewrite it does not fail the read.  :meth:`FilesStore.reencrypt`
does the same for every object, skipping those already current by peeking
at their headers, and when a pass completes it raises the keyset's floor
in the account's key record, not in this directory.  From then on an
object under an older version is refused as rolled back and never
re-sealed, whatever files are deleted or put back here; a header naming a
version the keyset never had is refused the same way.  Nothing is ever
installed under a retired or destroyed version, and objects left under
one by a forced retire or destroy are skipped by listing and
re-encryption, named by :meth:`FilesStore.unreadable` and deleted by
:meth:`FilesStore.purge_unreadable` (see ``_versions``).  The floor cannot
stop a rollback to an older value under the same key version, nor the
whole account directory, key record included, being restored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Annotated

from msgspec import Meta

from strongroom.errors import RecordNotFoundError, StoreError, StrongroomError
from strongroom.settings import BackendSettings
from strongroom.store import ReencryptProgress, Store, StoreBinding
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._batch import BatchWriter
from strongroom_plugins.stores._blob_read import BlobReading
from strongroom_plugins.stores._blob_write import WRITE_ATTEMPTS, BlobWriter
from strongroom_plugins.stores._expiry import Expiry
from strongroom_plugins.stores._index import NameIndex
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._inventory import Inventory
from strongroom_plugins.stores._layout import (
    BLOBS,
    RECORDS,
    StoredObject,
    encode_key,
    frame_record,
    scan,
)
from strongroom_plugins.stores._listing import Lister
from strongroom_plugins.stores._lookup import Lookup
from strongroom_plugins.stores._names import NameKeys
from strongroom_plugins.stores._reencrypt import Reencryption
from strongroom_plugins.stores._sealing import Sealer, read_object
from strongroom_plugins.stores._streams import SourceFailed, pull
from strongroom_plugins.stores._versions import KeyVersions

__all__ = ["FilesStore", "FilesStoreSettings"]

log = logging.getLogger(__name__)


class FilesStoreSettings(BackendSettings, frozen=True, kw_only=True):
    """``[stores.<name>]`` settings of ``use = "files"``."""

    #: Plaintext bytes per chunk of a blob: from 4 KiB to 64 MiB.
    chunk_size: Annotated[
        int, Meta(ge=4096, le=64 << 20, description="plaintext bytes per chunk of a blob")
    ] = 1 << 20


class FilesStore(Store[FilesStoreSettings]):
    """Records and blobs as individually encrypted files in the store's directory."""

    Settings = FilesStoreSettings

    def __init__(
        self, settings: FilesStoreSettings | None = None, *, binding: StoreBinding
    ) -> None:
        """:raises strongroom.errors.StoreError: the directory cannot be prepared."""
        super().__init__(settings, binding=binding)
        self._root = root = binding.directory
        self._names = NameKeys(binding)
        self._versions = versions = KeyVersions(binding)
        self._sealer = Sealer(binding, self._names, versions, self.settings.chunk_size)
        self._installer = Installer(root, versions, binding.name)
        self._lookup = Lookup(root, self._installer, binding.name)
        self._inventory = Inventory(root, self._installer, versions, binding.name)
        self._batches = BatchWriter(binding, self._sealer, self._installer, self._names)
        self._reencryption = Reencryption(
            root, self._sealer, self._installer, self._batches, binding.name
        )
        self._blob_writer = BlobWriter(root, self._sealer, self._installer, binding.name)
        self._index = NameIndex(root, self._sealer, binding.name)
        self._blobs = BlobReading(self._sealer, self._installer, binding.name)
        self._lister = Lister(self._lookup, self._index, self._sealer, self._names)
        self._expiry = Expiry(root, self._installer, binding.name)
        try:
            if not root.is_dir():
                raise FileNotFoundError(root)
            for sub in (RECORDS, BLOBS):
                _disk.ensure_private_dir(root / sub)
        except OSError as exc:
            raise StoreError(f"cannot open the files store in {root}: {exc}") from exc

    def close(self) -> None:
        self._names.close()

    def forget_keys(self) -> None:
        """The keys went: wipe the name key derived from them."""
        self._names.forget()

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
        for _attempt in range(WRITE_ATTEMPTS):
            data_key = self._sealer.primary()
            sealed = self._sealer.seal(data_key, plaintext, obj.context_record)
            with self._installer.writing(obj.path):
                temp = _disk.write_temp(obj.path, sealed)
                if self._installer.install(
                    [(temp, obj.path)], data_key.version, remove=(blob.path, blob.key_file)
                ):
                    return
                _disk.unlink_quietly(temp)  # its key version stopped being the primary: again
        raise StoreError(f"could not store {key!r}: the store's keys keep changing")

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every ``(key, value)`` as records, all or none, with one fsync for the batch.

        See ``_journal``: the batch is committed by one rename, and a batch
        a killed writer committed is finished by the next user of the store.

        :raises strongroom.errors.UsageError: a key is invalid; nothing is stored.
        :raises strongroom.errors.StoreError: the medium refused the write;
            nothing is stored.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """
        try:
            self._batches.put_many(pull(items))
        except SourceFailed as failure:  # the caller's iterable raised: pass it on untouched
            raise failure.original from None

    def get(self, key: str) -> bytes:
        self._installer.settle()
        obj = self._record(encode_key(key))
        data = read_object(obj.path)
        if data is None:
            raise RecordNotFoundError(f"no record {key!r} in store {self.binding.name!r}")
        return self._value(obj, data)

    def get_any(self, key: str) -> Iterator[bytes]:
        """Stream the value under ``key`` whether it is a record or a blob now.

        ``get`` and then ``get_blob`` can miss a key that another process
        switches from one form to the other in between; this looks at both
        forms at once (see ``_lookup``).  A record comes out as one piece.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.IntegrityError: the value fails verification;
            for a blob, the iteration stops at the chunk that failed.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked,
            or the value is under a retired or destroyed version.
        """
        self._installer.settle()
        found = self._lookup.open_value(self._name(encode_key(key)))
        if found is None:
            raise RecordNotFoundError(f"no record or blob {key!r} in store {self.binding.name!r}")
        obj, content = found
        if isinstance(content, bytes):
            return iter((self._value(obj, content),))
        return self._blobs.stream(obj, content)

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
        """Every key, from the name index; objects it does not know yet are opened and verified.

        Objects under a retired or destroyed key version are left out: they
        are shredded (see :meth:`unreadable`).  Indexed objects have their
        headers peeked, and one that is implausible (not a strongroom object,
        a version never had, or older than the floor) is verified as if not
        indexed (see ``_listing``).

        :raises strongroom.errors.IntegrityError: a file not yet indexed, or
            an implausible one, fails verification.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        keys = self._lister.keys(self._versions)
        return iter(sorted(keys if not prefix else (key for key in keys if key.startswith(prefix))))

    def put_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        encoded = encode_key(key)
        try:
            self._blob_writer.write(self._blob(encoded), encoded, pull(chunks))
        except SourceFailed as failure:  # the caller's iterable raised: pass it on untouched
            raise failure.original from None

    def get_blob(self, key: str) -> Iterator[bytes]:
        return self._blobs.whole(self._blob(encode_key(key)), key)

    def get_blob_range(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Decrypt only the chunks that cover the range (and the last, which seals the size)."""
        return self._blobs.range(self._blob(encode_key(key)), key, offset, length)

    def reencrypt(self) -> Iterator[ReencryptProgress]:
        """Bring every object up to the primary version, then raise the floor.

        Objects already current are skipped after peeking at their headers,
        so an interrupted pass resumes where it stopped.  The store stays
        usable throughout.  Objects under a retired or destroyed version are
        skipped and not counted as done, so the last ``(done, total)`` falls
        short of ``total`` by their number (see :meth:`unreadable`).  Each step
        also carries the stored bytes rewritten so far.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.IntegrityError: an object fails verification.
        """
        target = self._sealer.primary().version
        self._index.reseal(target)  # before the floor rises past it
        return self._reencryption.run(target, scan(self._root))

    def versions_in_use(self) -> dict[int, int]:
        return self._inventory.in_use()

    def unreadable(self) -> Iterator[tuple[str, int]]:
        """Yield ``("record:<64 hex>" or "blob:<64 hex>", version)`` per unreadable object."""
        return self._inventory.unreadable()

    def purge_unreadable(self) -> int:
        purged = self._inventory.purge()
        self._index.forget(purged)
        return len(purged)

    def purge_expired(self, written_before: float) -> int:
        """Delete the records and blobs whose files were last written before ``written_before``.

        The write time is the file's modification time, kept across
        re-encryption (see ``_expiry`` for why that is enough for data
        minimisation).  Needs no key: while the account is locked the name
        index, which cannot be rewritten, is removed instead, so the purged
        keys' names do not outlive them there.
        """
        purged = self._expiry.purge(written_before)
        if purged:
            self._index.forget_or_drop(purged)
        return len(purged)

    # helpers of the operations above

    def _name(self, encoded_key: bytes) -> str:
        return self._names.name(encoded_key)

    def _record(self, encoded_key: bytes) -> StoredObject:
        return StoredObject.record(self._root, self._name(encoded_key))

    def _blob(self, encoded_key: bytes) -> StoredObject:
        return StoredObject.blob(self._root, self._name(encoded_key))

    def _value(self, obj: StoredObject, data: bytes) -> bytes:
        """A record's value; re-sealed under the primary if stale, best effort."""
        _, value, plaintext, stale = self._sealer.open_record(obj, data)
        if stale:  # re-encrypt lazily: never fails the read
            try:
                self._reencryption.replace_record(obj, data, plaintext)
            except (OSError, StrongroomError) as exc:
                log.debug("could not re-encrypt a record of store %r: %s", self.binding.name, exc)
        return value
