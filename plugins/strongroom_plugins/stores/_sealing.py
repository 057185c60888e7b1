"""How the ``files`` store seals its objects, and checks them before opening.

Every object is bound to (account, store name, its ``record`` context
field), so one moved to another name, store or account fails
authentication.  Before anything is decrypted, the key version in its
header is checked against the keyset and the re-encryption floor, so a
version the keyset never had, or a copy older than the last completed
pass, is refused.  The store's operations and the re-encryption pass use
this one path, so neither can open an object the other would refuse.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from strongroom.errors import IntegrityError, StoreError, StrongroomError
from strongroom.formats import (
    ChunkedReader,
    ChunkedWriter,
    Context,
    open_sealed,
    peek_key_version,
    seal,
)
from strongroom.keys import DataKey
from strongroom.store import StoreBinding
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._floor import Floor
from strongroom_plugins.stores._layout import StoredObject, split_record
from strongroom_plugins.stores._names import NameKeys

__all__ = ["PEEK", "Sealer", "object_context", "read_error", "read_object"]

#: Enough of any object's start for ``peek_key_version``.
PEEK = 16


class Sealer:
    """Seals, checks and opens the records, key files and blobs of one store."""

    def __init__(
        self, binding: StoreBinding, names: NameKeys, floor: Floor, chunk_size: int
    ) -> None:
        self._binding = binding
        self._names = names
        self._floor = floor
        self._chunk_size = chunk_size

    def primary(self) -> DataKey:
        """The primary version of the store's data keyset."""
        return self._binding.keys.data_key(self._binding.purpose)

    def check_version(self, version: int) -> int:
        """Refuse a version the keyset never had, or one below the floor; return the primary."""
        primary = self._binding.keys.primary_version(self._binding.purpose)
        if primary is None or not 1 <= version <= primary:
            raise IntegrityError(
                f"store {self._binding.name!r}: an object names a key version the store never had"
            )
        if version < self._floor.read():
            raise IntegrityError(
                f"store {self._binding.name!r}: an object is older than the last completed "
                "re-encryption; it was rolled back or planted"
            )
        return primary

    # sealed objects: records and blob key files

    def seal(self, data_key: DataKey, plaintext: bytes, record: str) -> bytes:
        return seal(
            data_key.suite,
            data_key.material.view(),
            data_key.version,
            plaintext,
            object_context(self._binding, record),
        )

    def open(self, data: bytes, record: str) -> tuple[bytes, bool]:
        """Verify and decrypt; return the plaintext and whether it is under an old version."""
        version = peek_key_version(data[:PEEK])
        primary = self.check_version(version)
        plaintext = open_sealed(
            data,
            self._binding.keys.key_lookup(self._binding.purpose),
            object_context(self._binding, record),
        )
        return plaintext, version < primary

    def open_record(self, obj: StoredObject, data: bytes) -> tuple[str, bytes, bytes, bool]:
        """Verify a record file; return its key, value, whole plaintext and staleness."""
        plaintext, stale = self.open(data, obj.context_record)
        key, encoded, value = split_record(plaintext)
        if not hmac.compare_digest(self._names.name(encoded), obj.name):
            raise IntegrityError(f"store {self._binding.name!r}: a record is under the wrong name")
        return key, value, plaintext, stale

    def open_key_file(self, obj: StoredObject) -> str | None:
        """The key a blob's key file holds, or ``None`` if there is none."""
        data = read_object(obj.key_file)
        if data is None:
            return None
        encoded, _ = self.open(data, obj.key_file_context_record)
        if not hmac.compare_digest(self._names.name(encoded), obj.name):
            raise IntegrityError(f"store {self._binding.name!r}: a blob is under the wrong name")
        return encoded.decode("utf-8")  # authenticated, so written from a str

    # chunked objects: blobs

    def blob_reader(
        self, obj: StoredObject, handle: BinaryIO, *, own: bool = False
    ) -> ChunkedReader:
        """A verifying reader; ``own`` skips the version checks for our own temporary file."""
        if not own:
            self.check_version(peek_key_version(handle.read(PEEK)))
            handle.seek(0)
        return ChunkedReader(
            handle,
            self._binding.keys.key_lookup(self._binding.purpose),
            object_context(self._binding, obj.context_record),
        )

    def encrypt_blob(self, obj: StoredObject, data_key: DataKey, chunks: Iterable[bytes]) -> Path:
        """Encrypt ``chunks`` into a fsynced temporary file beside the blob; return it."""
        with _disk.temp_file(obj.path) as (temp, handle):
            with ChunkedWriter(
                handle,
                data_key.suite,
                data_key.material.view(),
                data_key.version,
                object_context(self._binding, obj.context_record),
                chunk_size=self._chunk_size,
            ) as writer:
                for chunk in chunks:
                    writer.write(chunk)
            return temp

    def transcode_blob(self, obj: StoredObject, source: Path, data_key: DataKey) -> Path:
        """Re-encrypt the blob in ``source`` under ``data_key`` into a new temporary file."""
        handle = _disk.open_for_reading(source)
        if handle is None:
            raise StoreError(f"{source} vanished while being re-encrypted")
        with handle:
            reader = self.blob_reader(obj, handle, own=True)
            return self.encrypt_blob(obj, data_key, reader.iter_chunks())


def object_context(binding: StoreBinding, record: str) -> Context:
    """The context an object of the store is bound to; ``record`` names the object."""
    return Context(account=binding.account, store=binding.name, record=record)


def read_object(path: Path) -> bytes | None:
    """A whole object file, or ``None`` if there is none."""
    try:
        return _disk.read_file(path)
    except OSError as exc:
        raise read_error(path, exc) from exc


def read_error(path: Path, exc: OSError) -> StrongroomError:
    """The store's error for a file it could not read."""
    if _disk.is_symlink_error(exc):
        return IntegrityError(f"{path} is a symbolic link; the store never makes one")
    return StoreError(f"cannot read {path}: {exc}")
