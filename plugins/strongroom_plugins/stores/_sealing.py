"""How the ``files`` store seals its objects, and checks them before opening.

Every object is bound to (account, store name, its ``record`` context
field), so one moved to another name, store or account fails
authentication.  Before anything is decrypted, the key version in its
header is checked against the key record (see ``_versions``), so a
version the keyset never had, a retired or destroyed one, or a copy older
than the last completed pass, is refused.  The store's operations and the
re-encryption pass use this one path, so neither can open an object the
other would refuse.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from strongroom.cipher_suite import CipherSuite
from strongroom.errors import IntegrityError, StoreError, StrongroomError
from strongroom.formats import (
    ChunkedReader,
    ChunkedWriter,
    Context,
    Subkeys,
    open_sealed,
    peek_key_version,
)
from strongroom.keys import DataKey
from strongroom.store import StoreBinding
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._layout import StoredObject, split_record
from strongroom_plugins.stores._names import NameKeys
from strongroom_plugins.stores._versions import KeyVersions

__all__ = ["PEEK", "Checked", "Sealer", "object_context", "peek_file", "read_error", "read_object"]

#: Enough of any object's start for ``peek_key_version``.
PEEK = 16

#: Per key version already checked: the primary then, and the version's subkeys.
Checked = dict[int, tuple[int, Subkeys]]


class Sealer:
    """Seals, checks and opens the records, key files and blobs of one store."""

    def __init__(
        self, binding: StoreBinding, names: NameKeys, versions: KeyVersions, chunk_size: int
    ) -> None:
        self._binding = binding
        self._names = names
        self.versions = versions
        self._chunk_size = chunk_size

    def primary(self) -> DataKey:
        """The primary version of the store's data keyset."""
        return self._binding.keys.data_key(self._binding.purpose)

    # sealed objects: records and blob key files

    def seal(self, data_key: DataKey, plaintext: bytes, record: str) -> bytes:
        """Seal in the key's current batch: one subkey derivation serves many records."""
        return data_key.subkeys.seal(plaintext, object_context(self._binding, record))

    def open(self, data: bytes, record: str, checked: Checked | None = None) -> tuple[bytes, bool]:
        """Verify and decrypt; return the plaintext and whether it is under an old version.

        ``checked`` holds, per version already checked against the key
        record, the primary then and the version's subkeys: a pass over many
        objects checks and looks up each version once per batch, not once
        per object (what it installs is checked again under the lock, see
        ``_install``).
        """
        version = peek_key_version(data[:PEEK])
        if checked is None:
            checked = {version: (self.versions.check(version), self._subkeys_for(version))}
        elif version not in checked:
            checked[version] = (self.versions.check(version), self._subkeys_for(version))
        primary, subkeys = checked[version]

        def key_for(asked: int) -> Subkeys:  # the header's version: the one peeked
            return subkeys if asked == version else self._subkeys_for(asked)

        plaintext = open_sealed(data, key_for, object_context(self._binding, record))
        return plaintext, version < primary

    def _subkeys_for(self, version: int) -> Subkeys:
        """A version's subkeys, whose cache spares a derivation per record of a seen batch."""
        return self._binding.keys.data_key(self._binding.purpose, version).subkeys

    def open_record(
        self, obj: StoredObject, data: bytes, checked: Checked | None = None
    ) -> tuple[str, bytes, bytes, bool]:
        """Verify a record file; return its key, value, whole plaintext and staleness."""
        plaintext, stale = self.open(data, obj.context_record, checked)
        key, encoded, value = split_record(plaintext)
        if not hmac.compare_digest(self._names.name(encoded), obj.name):
            raise IntegrityError(f"store {self._binding.name!r}: a record is under the wrong name")
        return key, value, plaintext, stale

    def open_key_file(self, obj: StoredObject, data: bytes) -> str:
        """Verify the bytes of a blob's key file; return the key it holds."""
        encoded, _ = self.open(data, obj.key_file_context_record)
        if not hmac.compare_digest(self._names.name(encoded), obj.name):
            raise IntegrityError(f"store {self._binding.name!r}: a blob is under the wrong name")
        return encoded.decode("utf-8")  # authenticated, so written from a str

    # chunked objects: blobs

    def blob_reader(self, obj: StoredObject, handle: BinaryIO) -> ChunkedReader:
        """A verifying reader of a stored blob, its key version checked first."""
        self.versions.check(peek_key_version(handle.read(PEEK)))
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

    def transcode_blob(self, obj: StoredObject, source: Path, old: DataKey, new: DataKey) -> Path:
        """Re-encrypt our own temporary blob ``source`` from ``old`` to ``new``.

        ``old`` is the key it was just written with, held since: its version
        may have been retired meanwhile, which is why the blob is redone.
        """
        handle = _disk.open_for_reading(source)
        if handle is None:
            raise StoreError(f"{source} vanished while being re-encrypted")

        def written_with(version: int) -> tuple[CipherSuite, memoryview]:
            if version != old.version:
                raise IntegrityError(f"{source} is not the blob this store just wrote")
            return old.suite, old.material.view()

        with handle:
            reader = ChunkedReader(
                handle, written_with, object_context(self._binding, obj.context_record)
            )
            return self.encrypt_blob(obj, new, reader.iter_chunks())


def object_context(binding: StoreBinding, record: str) -> Context:
    """The context an object of the store is bound to; ``record`` names the object."""
    return Context(account=binding.account, store=binding.name, record=record)


def read_object(path: Path) -> bytes | None:
    """A whole object file, or ``None`` if there is none."""
    try:
        return _disk.read_file(path)
    except OSError as exc:
        raise read_error(path, exc) from exc


def peek_file(path: Path | str) -> int | None:
    """The key version in ``path``'s header, unauthenticated; ``None`` if there is no file.

    :raises strongroom.errors.IntegrityError: it is not a strongroom object.
    """
    try:
        head = _disk.read_head(path, PEEK)
    except OSError as exc:
        raise read_error(path, exc) from exc
    return None if head is None else peek_key_version(head)


def read_error(path: Path | str, exc: OSError) -> StrongroomError:
    """The store's error for a file it could not read."""
    if _disk.is_symlink_error(exc):
        return IntegrityError(f"{path} is a symbolic link; the store never makes one")
    if isinstance(exc, _disk.NotRegularFileError):
        return IntegrityError(f"{path} is not a regular file; the store never makes one")
    return StoreError(f"cannot read {path}: {exc}")
