"""Finding a key's current object, whichever form it has, while others write.

A key is a record or a blob, and ``put``/``put_blob`` switch it from one to
the other.  The two forms live in different directories, so a reader that
looks in one and then the other can miss a key that switched in between,
and a listing that scans one directory and then the other can leave it
out.  Writers do their renames and removals under the store's lock, so
there a key's current form is settled:

- a lookup that finds neither form looks again under the lock;
- a listing takes the names in both directories under the lock (directory
  reads only, cheap), reads and decrypts outside it, and looks a name up
  again under the lock when its file vanished meanwhile.

A record and a blob of one key side by side (a crash between two steps of
a write) resolve to the record, as ``get`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from strongroom.errors import IntegrityError
from strongroom.formats import peek_key_version
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import KEY_FILE_SUFFIX, StoredObject, scan_names
from strongroom_plugins.stores._sealing import PEEK, peek_file, read_error, read_object

__all__ = ["Found", "Lookup"]


@dataclass(frozen=True)
class Found:
    """A key's current object and the bytes that name its key: the record, or the key file."""

    obj: StoredObject
    data: bytes
    #: The key versions in the headers of the object's files.
    versions: frozenset[int]


class Lookup:
    """Resolves names to current objects in one store's directory."""

    def __init__(self, root: Path, installer: Installer, store_name: str) -> None:
        self._root = root
        self._installer = installer
        self._store_name = store_name

    def open_value(self, name: str) -> tuple[StoredObject, bytes | BinaryIO] | None:
        """The current object of ``name``: a record's bytes or an open blob; ``None`` if absent."""
        found = self._try_open(name)
        if found is None:
            with self._installer.locked():
                found = self._try_open(name)
        return found

    def snapshot(self) -> dict[str, bool]:
        """Every name in the store and whether it is a blob, as of one moment under the lock.

        Directory reads only: nothing is opened.
        """
        with self._installer.locked():
            return scan_names(self._root)

    def object(self, name: str, is_blob: bool) -> StoredObject:
        """The object of ``name`` in the given form."""
        return (StoredObject.blob if is_blob else StoredObject.record)(self._root, name)

    def current(self, obj: StoredObject) -> Found | None:
        """The current object of ``obj``'s name, read now; ``None`` if it is gone."""
        found = self._read(obj)
        if found is None:  # switched form or deleted since the snapshot
            with self._installer.locked():
                found = self._read(StoredObject.record(self._root, obj.name), locked=True)
                if found is None:
                    found = self._read(StoredObject.blob(self._root, obj.name), locked=True)
        return found

    def peek(self, obj: StoredObject) -> tuple[StoredObject, frozenset[int]] | None:
        """The current object of ``obj``'s name and its files' header versions; nothing decrypted.

        ``None`` if it is gone.  The headers are not authenticated: a listing
        only uses them to decide whether an object it already knows is
        plausible (see ``_listing``).

        :raises strongroom.errors.IntegrityError: a file is not a strongroom object.
        """
        found = self._peek(obj)
        if found is None:  # switched form or deleted since the snapshot
            with self._installer.locked():
                found = self._peek(StoredObject.record(self._root, obj.name))
                if found is None:
                    found = self._peek(StoredObject.blob(self._root, obj.name))
        return found

    @staticmethod
    def _peek(obj: StoredObject) -> tuple[StoredObject, frozenset[int]] | None:
        version = peek_file(obj.location)
        if version is None:
            return None
        if not obj.is_blob:
            return obj, frozenset({version})
        key_file_version = peek_file(obj.location + KEY_FILE_SUFFIX)
        if key_file_version is None:
            return None
        return obj, frozenset({version, key_file_version})

    def _try_open(self, name: str) -> tuple[StoredObject, bytes | BinaryIO] | None:
        record = StoredObject.record(self._root, name)
        data = read_object(record.path)
        if data is not None:
            return record, data
        blob = StoredObject.blob(self._root, name)
        try:
            handle = _disk.open_for_reading(blob.path)
        except OSError as exc:
            raise read_error(blob.path, exc) from exc
        return None if handle is None else (blob, handle)

    def _read(self, obj: StoredObject, *, locked: bool = False) -> Found | None:
        """``obj``'s key-naming bytes, or ``None`` if it is gone.

        Writers install a blob's key file before the blob and remove it after,
        so under the lock a blob without its key file was tampered with.
        """
        if not obj.is_blob:
            data = read_object(obj.path)
            if data is None:
                return None
            return Found(obj, data, frozenset({peek_key_version(data[:PEEK])}))
        data = read_object(obj.key_file)
        blob_version = peek_file(obj.path)
        if data is None or blob_version is None:
            if locked and data is None and os.path.lexists(obj.path):
                raise IntegrityError(f"store {self._store_name!r}: a blob has lost its key file")
            return None
        return Found(obj, data, frozenset({peek_key_version(data[:PEEK]), blob_version}))
