"""Writing a blob into the ``files`` store: stream it, seal its key, install both.

The blob is encrypted as it streams in, into a temporary file, with no
lock held.  Its key file is sealed next, and both are renamed in under the
lock, key file first, so a blob never exists without one; a record of the
same key is removed in the same hold.  If the key version they were sealed
under stopped being the primary meanwhile (see ``_versions``), the blob is
re-encrypted from its temporary file under the new primary and tried
again: the caller's chunks are consumed and cannot be asked for twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from strongroom.errors import StoreError
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import StoredObject
from strongroom_plugins.stores._sealing import Sealer

__all__ = ["WRITE_ATTEMPTS", "BlobWriter"]

#: How often a write is redone because its key version stopped being the primary under it.
WRITE_ATTEMPTS = 5


class BlobWriter:
    """Puts blobs into one store's directory."""

    def __init__(self, root: Path, sealer: Sealer, installer: Installer, store_name: str) -> None:
        self._root = root
        self._sealer = sealer
        self._installer = installer
        self._store_name = store_name

    def write(self, obj: StoredObject, encoded: bytes, chunks: Iterator[bytes]) -> None:
        """Store ``chunks`` as the blob ``obj`` of the key whose UTF-8 is ``encoded``."""
        data_key = self._sealer.primary()
        record = StoredObject.record(self._root, obj.name)
        with self._installer.writing(obj.path):
            temp = self._sealer.encrypt_blob(obj, data_key, chunks)
            try:
                for _attempt in range(WRITE_ATTEMPTS):
                    key_temp = _disk.write_temp(
                        obj.key_file,
                        self._sealer.seal(data_key, encoded, obj.key_file_context_record),
                    )
                    moves = [(key_temp, obj.key_file), (temp, obj.path)]
                    if self._installer.install(moves, data_key.version, remove=(record.path,)):
                        return
                    _disk.unlink_quietly(key_temp)
                    written_with, data_key = data_key, self._sealer.primary()
                    fresh = self._sealer.transcode_blob(obj, temp, written_with, data_key)
                    _disk.unlink_quietly(temp)
                    temp = fresh
            except BaseException:
                _disk.unlink_quietly(temp)
                raise
            _disk.unlink_quietly(temp)
        raise StoreError(f"could not store a blob in {self._store_name!r}: its keys keep changing")
