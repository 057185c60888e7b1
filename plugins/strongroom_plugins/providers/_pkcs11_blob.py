"""The pkcs11 provider's wrap blob: which token key sealed it, and the sealed secret.

Kept apart from the token calls so that the format can be read, checked and
specified without a token.  Version 1 (integers big-endian)::

    offset  size  field
         0     4  magic b"SRHW"
         4     1  format version, 0x01
         5     1  mechanism, 0x01 = AES-256-GCM computed inside the token
         6    12  CKA_ID of the token key: serial (u32) || 8 random bytes
        18    12  GCM nonce
        30   n+16 AES-256-GCM ciphertext of the n-byte secret, then the tag

    AAD = bytes 0..29 (everything before the ciphertext) || context.encode()

GCM needs no padding, so the length of the secret is exact (SoftHSM's
zero-padding of key-wrap input that is not a multiple of 8 bytes never
arises).  The key id is authenticated with the rest of the header: a blob
whose id was altered names a key the token does not hold, or fails the tag.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

from strongroom.errors import IntegrityError
from strongroom.key_provider import WrapContext

__all__ = [
    "AES_256_GCM",
    "HEADER_SIZE",
    "KEY_ID_SIZE",
    "MAX_SERIAL",
    "NONCE_SIZE",
    "TAG_SIZE",
    "Blob",
    "key_id",
    "key_serial",
    "new_header",
    "parse",
]

MAGIC: Final = b"SRHW"
VERSION: Final = 1
AES_256_GCM: Final = 1
KEY_ID_SIZE: Final = 12
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
HEADER_SIZE: Final = len(MAGIC) + 2 + KEY_ID_SIZE + NONCE_SIZE  # 30 bytes
_SERIAL = struct.Struct(">I")
#: The last rotation serial a CKA_ID can hold.
MAX_SERIAL: Final = 2**32 - 1
_WHAT = "PKCS#11-wrapped key"


@dataclass(frozen=True)
class Blob:
    """A parsed blob: the header (authenticated as AAD) and the sealed part."""

    header: bytes
    sealed: bytes

    @property
    def key_id(self) -> bytes:
        return self.header[6 : 6 + KEY_ID_SIZE]

    @property
    def nonce(self) -> bytes:
        return self.header[6 + KEY_ID_SIZE :]

    def aad(self, context: WrapContext) -> bytes:
        return self.header + context.encode()


def key_id(serial: int) -> bytes:
    """A fresh CKA_ID for the key of rotation ``serial``; the random tail keeps races apart."""
    return _SERIAL.pack(serial) + os.urandom(KEY_ID_SIZE - _SERIAL.size)


def key_serial(identifier: bytes) -> int | None:
    """The rotation serial in a CKA_ID this provider made, or ``None`` for any other id."""
    if len(identifier) != KEY_ID_SIZE:
        return None
    serial: int = _SERIAL.unpack_from(identifier)[0]
    return serial


def new_header(identifier: bytes) -> bytes:
    """The header of a new blob under the key ``identifier``, with a fresh nonce."""
    return MAGIC + bytes([VERSION, AES_256_GCM]) + identifier + os.urandom(NONCE_SIZE)


def parse(blob: bytes) -> Blob:
    """Split ``blob``, refusing anything that is not a version-1 blob of this provider.

    :raises strongroom.errors.IntegrityError: another kind of blob, an unknown
        version or mechanism, or too short to hold a tag.
    """
    if blob[: len(MAGIC)] != MAGIC:
        raise IntegrityError(f"not a {_WHAT} (unknown magic)")
    if len(blob) < HEADER_SIZE + TAG_SIZE:
        raise IntegrityError(f"the {_WHAT} is truncated")
    if blob[4] != VERSION:
        raise IntegrityError(f"{_WHAT} format version {blob[4]} is not supported (expected 1)")
    if blob[5] != AES_256_GCM:
        raise IntegrityError(f"the {_WHAT} names an unknown mechanism ({blob[5]})")
    return Blob(blob[:HEADER_SIZE], blob[HEADER_SIZE:])
