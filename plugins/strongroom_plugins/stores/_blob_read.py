"""Reading a blob out of the ``files`` store: streamed whole, or a range by random access.

Both wait for a batch being installed first (see ``_install``), check the
blob's key version before anything is decrypted (see ``_sealing``) and
release only verified plaintext.  A range decrypts the last chunk, which
the chunked reader authenticates to fix the size, and then only the
chunks that cover it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from strongroom.errors import RecordNotFoundError, UsageError
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._install import Installer
from strongroom_plugins.stores._layout import StoredObject
from strongroom_plugins.stores._sealing import Sealer, read_error
from strongroom_plugins.stores._streams import stream

__all__ = ["BlobReading"]


class BlobReading:
    """Opens one store's blobs for reading."""

    def __init__(self, sealer: Sealer, installer: Installer, store_name: str) -> None:
        self._sealer = sealer
        self._installer = installer
        self._store_name = store_name

    def whole(self, obj: StoredObject, key: str) -> Iterator[bytes]:
        """The blob's verified chunks; its file is closed when the caller stops."""
        return self.stream(obj, self._open(obj, key))

    def stream(self, obj: StoredObject, handle: BinaryIO) -> Iterator[bytes]:
        """The verified chunks of the blob open in ``handle``, which is closed after."""
        try:
            reader = self._sealer.blob_reader(obj, handle)
        except BaseException:
            handle.close()
            raise
        return stream(reader, handle)

    def range(self, obj: StoredObject, key: str, offset: int, length: int | None) -> bytes:
        """Up to ``length`` bytes (all if ``None``) from ``offset``; opens what covers them."""
        if offset < 0 or (length is not None and length < 0):
            raise UsageError("offset and length must not be negative")
        with self._open(obj, key) as handle:
            reader = self._sealer.blob_reader(obj, handle)
            rest = max(reader.plaintext_size - offset, 0)
            return reader.read_at(offset, rest if length is None else length)

    def _open(self, obj: StoredObject, key: str) -> BinaryIO:
        self._installer.settle()
        try:
            handle = _disk.open_for_reading(obj.path)
        except OSError as exc:
            raise read_error(obj.path, exc) from exc
        if handle is None:
            raise RecordNotFoundError(f"no blob {key!r} in store {self._store_name!r}")
        return handle
