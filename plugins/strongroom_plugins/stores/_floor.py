"""The ``files`` store's re-encryption floor.

When a re-encryption pass has brought every object up to key version *n*,
the store records *n* here; from then on an object under an older version
can only be an old copy put back, and is refused.  The file is tiny::

    magic "SRfl" (4) | format version 0x01 (1) | floor u32 BE (4)
    | HMAC-SHA256(floor key, those 9 bytes || Context(account, store, "floor").encode())

The floor key is derived from the store's name keyset, which is never
rotated, so the floor stays readable whatever happens to the data keys.
A missing file means floor 0.  Deleting the file, or putting an older one
back, only lowers the protection to what it was; it cannot make anything
that should open fail.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from strongroom.errors import IntegrityError, StoreError
from strongroom.secret import Secret
from strongroom_plugins.stores import _disk

__all__ = ["Floor"]

_HEAD = struct.Struct(">4sBI")
_MAGIC = b"SRfl"
_VERSION = 1
_SIZE = _HEAD.size + 32


class Floor:
    """The floor file of one store, cached by the file's identity."""

    def __init__(self, path: Path, context: bytes, key: Callable[[], Secret]) -> None:
        self._path = path
        self._context = context
        self._key = key
        self._cache: tuple[_disk.FileIdentity, int] | None = None

    def read(self) -> int:
        """The current floor; 0 if none was recorded.

        :raises strongroom.errors.IntegrityError: the file was altered.
        :raises strongroom.errors.StoreError: it cannot be read.
        """
        ident = _disk.identity(self._path)
        if ident is None:
            return 0
        cached = self._cache
        if cached is not None and cached[0] == ident:
            return cached[1]
        try:
            data = _disk.read_file(self._path)
        except OSError as exc:
            raise StoreError(f"cannot read {self._path}: {exc}") from exc
        if data is None:
            return 0
        floor = self._parse(data)
        self._cache = (ident, floor)
        return floor

    def raise_to(self, floor: int) -> None:
        """Record ``floor`` if it is higher; the caller holds the store's lock."""
        if floor <= self.read():
            return
        head = _HEAD.pack(_MAGIC, _VERSION, floor)
        temp = _disk.write_temp(self._path, head + self._mac(head))
        os.replace(temp, self._path)
        _disk.fsync_dir(self._path.parent)

    def _mac(self, head: bytes) -> bytes:
        mac = crypto_hmac.HMAC(self._key().view(), hashes.SHA256())
        mac.update(head + self._context)
        return mac.finalize()

    def _parse(self, data: bytes) -> int:
        if len(data) == _SIZE:
            magic, version, floor = _HEAD.unpack_from(data)
            head = data[: _HEAD.size]
            if (
                magic == _MAGIC
                and version == _VERSION
                and hmac.compare_digest(self._mac(head), data[_HEAD.size :])
            ):
                return int(floor)
        raise IntegrityError(f"{self._path}: the re-encryption floor was altered")
