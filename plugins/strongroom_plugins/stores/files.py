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

import contextlib
import hmac
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import Field

from strongroom.errors import (
    IntegrityError,
    RecordNotFoundError,
    StoreError,
    StrongroomError,
    UsageError,
)
from strongroom.formats import (
    ChunkedReader,
    ChunkedWriter,
    Context,
    open_sealed,
    peek_key_version,
    seal,
)
from strongroom.keys import AccountKeys, DataKey
from strongroom.secret import Secret
from strongroom.settings import BackendSettings
from strongroom.store import Store, StoreBinding
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._floor import Floor
from strongroom_plugins.stores._layout import (
    BLOBS,
    FLOOR_FILE,
    LOCK_FILE,
    RECORDS,
    StoredObject,
    encode_key,
    frame_record,
    orphan_key_files,
    scan,
    split_record,
)

__all__ = ["FilesStore", "FilesStoreSettings"]

log = logging.getLogger(__name__)

NAMES_INFO = b"strongroom/v1/record-names"
FLOOR_INFO = b"strongroom/v1/files-floor"
#: Enough of any object's start for ``peek_key_version``.
_PEEK = 16
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
        self._chunk_size = self.settings.chunk_size
        self._keys: AccountKeys = binding.keys
        self._root = binding.directory
        self._guard = threading.Lock()
        self._names_source: DataKey | None = None
        self._name_key: Secret | None = None
        self._floor_key: Secret | None = None
        self._floor = Floor(
            self._root / FLOOR_FILE,
            self._context(FLOOR_FILE).encode(),
            lambda: self._derived_keys()[1],
        )
        self._closed = False
        try:
            if not self._root.is_dir():
                raise FileNotFoundError(self._root)
            for sub in (RECORDS, BLOBS):
                _disk.ensure_private_dir(self._root / sub)
        except OSError as exc:
            raise StoreError(f"cannot open the files store in {self._root}: {exc}") from exc

    def close(self) -> None:
        with self._guard:
            self._closed = True
            for secret in (self._name_key, self._floor_key):
                if secret is not None:
                    secret.wipe()
            self._name_key = self._floor_key = None
            self._names_source = None

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
            data_key = self._primary()
            sealed = self._seal(data_key, plaintext, obj.context_record)
            with self._writing(obj.path):
                temp = _disk.write_temp(obj.path, sealed)
                if self._install(
                    [(temp, obj.path)], data_key.version, remove=(blob.path, blob.key_file)
                ):
                    return
                _disk.unlink_quietly(temp)  # sealed under a key older than the floor: again
        raise StoreError(f"could not store {key!r}: the store's keys keep changing")

    def get(self, key: str) -> bytes:
        obj = self._record(encode_key(key))
        data = self._read(obj.path)
        if data is None:
            raise RecordNotFoundError(f"no record {key!r} in store {self.binding.name!r}")
        _, value, plaintext, stale = self._open_record(obj, data)
        if stale:
            self._refresh_record(obj, data, plaintext)
        return value

    def delete(self, key: str) -> None:
        obj = self._record(encode_key(key))
        blob = StoredObject.blob(self._root, obj.name)
        try:
            with self._locked():
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
        self._derived_keys()  # a locked account fails here, before any file is read
        found: set[str] = set()
        for obj in scan(self._root):
            if obj.is_blob:
                key = self._blob_key(obj)
            else:
                data = self._read(obj.path)
                key = None if data is None else self._open_record(obj, data)[0]
            if key is not None and key.startswith(prefix):  # None: deleted since the scan
                found.add(key)
        return iter(sorted(found))

    def put_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        encoded = encode_key(key)
        obj = self._blob(encoded)
        data_key = self._primary()
        try:
            self._put_blob(obj, data_key, encoded, _pull(chunks))
        except _SourceFailed as failure:  # the caller's iterable raised: pass it on untouched
            raise failure.original from None

    def get_blob(self, key: str) -> Iterator[bytes]:
        obj = self._blob(encode_key(key))
        try:
            handle = _disk.open_for_reading(obj.path)
        except OSError as exc:
            raise _read_error(obj.path, exc) from exc
        if handle is None:
            raise RecordNotFoundError(f"no blob {key!r} in store {self.binding.name!r}")
        try:
            reader = self._blob_reader(obj, handle)
        except BaseException:
            handle.close()
            raise
        return _stream(reader, handle)

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
        target = self._primary().version
        return self._reencrypting(target, scan(self._root))

    # names, contexts and key versions

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the files store {self.binding.name!r} is closed")

    def _derived_keys(self) -> tuple[Secret, Secret]:
        """The name and floor keys, derived again whenever the account was re-locked."""
        self._check_open()
        with self._guard:
            source = self._names_source
            if (
                source is None
                or source.material.wiped
                or self._name_key is None
                or self._floor_key is None
            ):
                source = self._keys.data_key(self.binding.names_purpose, 1)
                for secret in (self._name_key, self._floor_key):
                    if secret is not None:
                        secret.wipe()
                label = f"{self.binding.account} store:{self.binding.name}"
                self._name_key = Secret(
                    bytearray(_hkdf(source.material.view(), NAMES_INFO)),
                    label=f"{label} name key",
                )
                self._floor_key = Secret(
                    bytearray(_hkdf(source.material.view(), FLOOR_INFO)),
                    label=f"{label} floor key",
                )
                self._names_source = source
            return self._name_key, self._floor_key

    def _name(self, encoded_key: bytes) -> str:
        name_key, _ = self._derived_keys()
        mac = crypto_hmac.HMAC(name_key.view(), hashes.SHA256())
        mac.update(encoded_key)
        return mac.finalize().hex()

    def _record(self, encoded_key: bytes) -> StoredObject:
        return StoredObject.record(self._root, self._name(encoded_key))

    def _blob(self, encoded_key: bytes) -> StoredObject:
        return StoredObject.blob(self._root, self._name(encoded_key))

    def _context(self, record: str) -> Context:
        return Context(account=self.binding.account, store=self.binding.name, record=record)

    def _primary(self) -> DataKey:
        return self._keys.data_key(self.binding.purpose)

    def _check_version(self, version: int) -> int:
        """Refuse a version the keyset never had, or one below the floor; return the primary."""
        primary = self._keys.primary_version(self.binding.purpose)
        if primary is None or not 1 <= version <= primary:
            raise IntegrityError(
                f"store {self.binding.name!r}: an object names a key version the store never had"
            )
        if version < self._floor.read():
            raise IntegrityError(
                f"store {self.binding.name!r}: an object is older than the last completed "
                "re-encryption; it was rolled back or planted"
            )
        return primary

    # reading

    def _read(self, path: Path) -> bytes | None:
        try:
            return _disk.read_file(path)
        except OSError as exc:
            raise _read_error(path, exc) from exc

    def _open_sealed(self, data: bytes, record: str) -> tuple[bytes, bool]:
        """Verify and decrypt; return the plaintext and whether it is under an old version."""
        version = peek_key_version(data[:_PEEK])
        primary = self._check_version(version)
        plaintext = open_sealed(
            data, self._keys.key_lookup(self.binding.purpose), self._context(record)
        )
        return plaintext, version < primary

    def _open_record(self, obj: StoredObject, data: bytes) -> tuple[str, bytes, bytes, bool]:
        """Verify a record file; return its key, value, whole plaintext and staleness."""
        plaintext, stale = self._open_sealed(data, obj.context_record)
        key, encoded, value = split_record(plaintext)
        if not hmac.compare_digest(self._name(encoded), obj.name):
            raise IntegrityError(f"store {self.binding.name!r}: a record is under the wrong name")
        return key, value, plaintext, stale

    def _open_key_file(self, obj: StoredObject) -> str | None:
        """The key a blob's key file holds, or ``None`` if there is none."""
        data = self._read(obj.key_file)
        if data is None:
            return None
        encoded, _ = self._open_sealed(data, obj.key_file_context_record)
        if not hmac.compare_digest(self._name(encoded), obj.name):
            raise IntegrityError(f"store {self.binding.name!r}: a blob is under the wrong name")
        return encoded.decode("utf-8")  # authenticated, so written from a str

    def _blob_key(self, obj: StoredObject) -> str | None:
        """The key of a listed blob, or ``None`` if the blob was removed meanwhile."""
        key = self._open_key_file(obj)
        if key is not None:
            return key
        # Writers remove the blob before its key file and install the key file
        # first, so a missing key file is settled by looking again under the lock.
        with self._locked():
            key = self._open_key_file(obj)
            if key is None and os.path.lexists(obj.path):
                raise IntegrityError(f"store {self.binding.name!r}: a blob has lost its key file")
        return key

    def _blob_reader(
        self, obj: StoredObject, handle: BinaryIO, *, own: bool = False
    ) -> ChunkedReader:
        """A verifying reader; ``own`` skips the version checks for our own temporary file."""
        if not own:
            self._check_version(peek_key_version(handle.read(_PEEK)))
            handle.seek(0)
        return ChunkedReader(
            handle, self._keys.key_lookup(self.binding.purpose), self._context(obj.context_record)
        )

    # writing

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with _disk.flocked(self._root / LOCK_FILE):
            yield

    @contextlib.contextmanager
    def _writing(self, target: Path) -> Iterator[None]:
        """Make the target's shard directory; turn ``OSError`` into ``StoreError``."""
        try:
            _disk.ensure_private_dir(target.parent)
            yield
        except OSError as exc:
            raise StoreError(f"could not write to store {self.binding.name!r}: {exc}") from exc

    def _seal(self, data_key: DataKey, plaintext: bytes, record: str) -> bytes:
        return seal(
            data_key.suite,
            data_key.material.view(),
            data_key.version,
            plaintext,
            self._context(record),
        )

    def _install(
        self, moves: list[tuple[Path, Path]], version: int, *, remove: tuple[Path, ...]
    ) -> bool:
        """Rename each ``(temp, target)`` in order, then remove ``remove``, under the lock.

        Refuses (returning ``False``, the temporary files left to the caller)
        when a re-encryption pass raised the floor above ``version`` meanwhile.
        """
        removed: list[Path] = []
        try:
            with self._locked():
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

    def _put_blob(
        self, obj: StoredObject, data_key: DataKey, encoded: bytes, chunks: Iterator[bytes]
    ) -> None:
        record = StoredObject.record(self._root, obj.name)
        with self._writing(obj.path):
            temp = self._encrypt_blob(obj, data_key, chunks)
            try:
                for _attempt in range(_WRITE_ATTEMPTS):
                    key_temp = _disk.write_temp(
                        obj.key_file, self._seal(data_key, encoded, obj.key_file_context_record)
                    )
                    # The key file goes first: a blob never exists without one.
                    moves = [(key_temp, obj.key_file), (temp, obj.path)]
                    if self._install(moves, data_key.version, remove=(record.path,)):
                        return
                    # A re-encryption pass finished meanwhile: re-encrypt what we wrote.
                    _disk.unlink_quietly(key_temp)
                    data_key = self._primary()
                    fresh = self._transcode_blob(obj, temp, data_key)
                    _disk.unlink_quietly(temp)
                    temp = fresh
            except BaseException:
                _disk.unlink_quietly(temp)
                raise
            _disk.unlink_quietly(temp)
        raise StoreError(f"could not store a blob in {self.binding.name!r}: its keys keep changing")

    def _encrypt_blob(self, obj: StoredObject, data_key: DataKey, chunks: Iterable[bytes]) -> Path:
        """Encrypt ``chunks`` into a fsynced temporary file beside the blob; return it."""
        with _disk.temp_file(obj.path) as (temp, handle):
            with ChunkedWriter(
                handle,
                data_key.suite,
                data_key.material.view(),
                data_key.version,
                self._context(obj.context_record),
                chunk_size=self._chunk_size,
            ) as writer:
                for chunk in chunks:
                    writer.write(chunk)
            return temp

    def _transcode_blob(self, obj: StoredObject, source: Path, data_key: DataKey) -> Path:
        """Re-encrypt the blob in ``source`` under ``data_key`` into a new temporary file."""
        handle = _disk.open_for_reading(source)
        if handle is None:
            raise StoreError(f"{source} vanished while being re-encrypted")
        with handle:
            reader = self._blob_reader(obj, handle, own=True)
            return self._encrypt_blob(obj, data_key, reader.iter_chunks())

    def _swap(
        self, target: Path, temp: Path, *, expected: bytes | _disk.FileIdentity | None
    ) -> None:
        """Rename ``temp`` over ``target`` only if ``target`` still is what was read.

        ``expected`` is the file's bytes (small files) or its identity.  If a
        writer replaced or removed it meanwhile, its write wins and ``temp``
        is dropped.
        """
        try:
            with self._locked():
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

    # re-encryption

    def _refresh_record(self, obj: StoredObject, data: bytes, plaintext: bytes) -> None:
        """Lazy re-encryption after a read: best effort, never fails the read."""
        try:
            self._replace_record(obj, data, plaintext)
        except (OSError, StrongroomError) as exc:
            log.debug("could not re-encrypt a record of store %r: %s", self.binding.name, exc)

    def _replace_record(self, obj: StoredObject, data: bytes, plaintext: bytes) -> None:
        sealed = self._seal(self._primary(), plaintext, obj.context_record)
        self._swap(obj.path, _disk.write_temp(obj.path, sealed), expected=data)

    def _reencrypting(self, target: int, objects: list[StoredObject]) -> Iterator[tuple[int, int]]:
        total = len(objects)
        yield 0, total
        for done, obj in enumerate(objects, 1):
            self._upgrade(obj, target)
            yield done, total
        # Raise the floor only once nothing on disk is older than the target.  The
        # final check runs under the lock, so no writer can slip an older object in.
        while True:
            with self._locked():
                stale = [obj for obj in scan(self._root) if self._stale(obj, target)]
                if not stale:
                    for orphan in orphan_key_files(self._root):
                        _disk.unlink_quietly(orphan)
                    self._floor.raise_to(target)
                    return
            for obj in stale:
                self._upgrade(obj, target)

    def _peek(self, path: Path) -> int | None:
        """The key version in ``path``'s header, unauthenticated; ``None`` if it is gone."""
        try:
            handle = _disk.open_for_reading(path)
        except OSError as exc:
            raise _read_error(path, exc) from exc
        if handle is None:
            return None
        with handle:
            return peek_key_version(handle.read(_PEEK))

    def _stale(self, obj: StoredObject, target: int) -> bool:
        paths = (obj.path, obj.key_file) if obj.is_blob else (obj.path,)
        return any((version := self._peek(path)) is not None and version < target for path in paths)

    def _upgrade(self, obj: StoredObject, target: int) -> None:
        """Bring one object up to at least ``target``; skip what is current or gone."""
        if obj.is_blob:
            self._upgrade_key_file(obj, target)
            self._upgrade_blob(obj, target)
            return
        data = self._read(obj.path)
        if data is None or peek_key_version(data[:_PEEK]) >= target:
            return
        self._replace_record(obj, data, self._open_record(obj, data)[2])

    def _upgrade_key_file(self, obj: StoredObject, target: int) -> None:
        data = self._read(obj.key_file)
        if data is None or peek_key_version(data[:_PEEK]) >= target:
            return
        encoded, _ = self._open_sealed(data, obj.key_file_context_record)
        sealed = self._seal(self._primary(), encoded, obj.key_file_context_record)
        self._swap(obj.key_file, _disk.write_temp(obj.key_file, sealed), expected=data)

    def _upgrade_blob(self, obj: StoredObject, target: int) -> None:
        handle = _disk.open_for_reading(obj.path)
        if handle is None:
            return
        with handle:
            before = _disk.identity(handle.fileno())
            if peek_key_version(handle.read(_PEEK)) >= target:
                return
            handle.seek(0)
            reader = self._blob_reader(obj, handle)
            temp = self._encrypt_blob(obj, self._primary(), reader.iter_chunks())
        self._swap(obj.path, temp, expected=before)


class _SourceFailed(Exception):
    """Carries an exception raised by the caller's chunk iterable past our own handlers."""

    def __init__(self, original: Exception) -> None:
        super().__init__("the blob's source failed")
        self.original = original


def _pull(chunks: Iterable[bytes]) -> Iterator[bytes]:
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _SourceFailed(exc) from exc
        yield chunk


def _stream(reader: ChunkedReader, handle: BinaryIO) -> Iterator[bytes]:
    try:
        yield from reader.iter_chunks()
    finally:
        handle.close()


def _hkdf(material: memoryview, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def _read_error(path: Path, exc: OSError) -> StrongroomError:
    if _disk.is_symlink_error(exc):
        return IntegrityError(f"{path} is a symbolic link; the store never makes one")
    return StoreError(f"cannot read {path}: {exc}")
