"""What the sealed and chunked formats share: header prefix, key lookup, derivation.

Both formats start with the same 11-byte prefix (magic, format version,
suite code, key version) and derive everything they encrypt with from the
data key and a random salt stored in the header::

    HKDF-SHA256(ikm=data key, salt=salt,
                info=b"strongroom/v1/" + kind + b"/" + suite code as u16 BE)
      -> key (suite.key_size) || commitment (32) || nonce material, if any

The commitment is stored in the header and compared before any AEAD call,
so a ciphertext opens under one data key only.  Chunked objects and sealed
version 1 derive per object; sealed version 2 derives per batch of objects
(``strongroom.formats._batch``).
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.cipher_suite import CipherSuite, KeyedAead, ReadableBuffer
from strongroom.errors import AuthenticationError, IntegrityError, UsageError

if TYPE_CHECKING:
    from strongroom.formats._batch import Subkeys

__all__ = [
    "COMMITMENT_SIZE",
    "PREFIX_SIZE",
    "SALT_SIZE",
    "KeyFor",
    "ObjectKey",
    "check_key_version",
    "derive",
    "new_salt",
    "nonce_size_chunked",
    "nonce_size_sealed",
    "open_object_key",
    "pack_prefix",
    "parse_prefix",
    "peek_key_version",
    "read_prefix",
    "resolve_key",
]

#: Maps a header's key version to the suite and data key it was written with,
#: or to that version's :class:`~strongroom.formats.Subkeys`, whose cache of
#: verified subkeys sealed objects then use.
KeyFor = Callable[[int], "tuple[CipherSuite, ReadableBuffer] | Subkeys"]


SALT_SIZE = 32
COMMITMENT_SIZE = 32
#: magic (4) | format version (1) | suite code (u16 BE) | key version (u32 BE)
_PREFIX = struct.Struct(">4sBHI")
PREFIX_SIZE = _PREFIX.size
_MAX_KEY_VERSION = 0xFFFF_FFFF
_INFO_LABEL = b"strongroom/v1/"
_MAGICS = {b"SRsl": "sealed", b"SRck": "chunked"}
#: The format versions each magic has; a writer writes the last.
VERSIONS = {b"SRsl": (1, 2), b"SRck": (1,)}
_SHA256 = hashes.SHA256()


class ObjectKey:
    """The per-object AEAD, its key commitment, and its nonce (or nonce prefix).

    A plain slotted class: one is made per sealed object, twice per round
    trip, and a frozen dataclass's ``__init__`` costs several times more.
    """

    __slots__ = ("aead", "commitment", "nonce", "tag_size")

    def __init__(self, aead: KeyedAead, tag_size: int, commitment: bytes, nonce: bytes) -> None:
        self.aead = aead
        self.tag_size = tag_size
        self.commitment = commitment
        self.nonce = nonce

    def __repr__(self) -> str:
        return "<ObjectKey (hidden)>"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("an ObjectKey holds a key and cannot be pickled")


def new_salt(salt: bytes | None) -> bytes:
    """A fresh random salt, or ``salt`` where a test vector fixes it."""
    if salt is None:
        return os.urandom(SALT_SIZE)
    if len(salt) != SALT_SIZE:
        raise UsageError(f"a salt is {SALT_SIZE} bytes")
    return bytes(salt)


def check_key_version(key_version: int) -> None:
    """:raises strongroom.errors.UsageError: not an unsigned 32-bit integer."""
    if not 0 <= key_version <= _MAX_KEY_VERSION:
        raise UsageError("a key version is an integer from 0 to 2**32 - 1")


def derive(
    suite: CipherSuite, data_key: ReadableBuffer, salt: bytes, kind: bytes, nonce_size: int
) -> ObjectKey:
    """Derive the object key, commitment and ``nonce_size`` bytes of nonce material.

    :raises strongroom.errors.UsageError: ``data_key`` is shorter than the
        suite's key size.
    """
    if len(data_key) < suite.key_size:
        raise UsageError(f"a data key for {suite.name} is at least {suite.key_size} bytes")
    info = _INFO_LABEL + kind + b"/" + suite.code.to_bytes(2, "big")
    length = suite.key_size + COMMITMENT_SIZE + nonce_size
    okm = HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(data_key)
    split = suite.key_size + COMMITMENT_SIZE
    return ObjectKey(
        aead=suite.keyed(okm[: suite.key_size]),
        tag_size=suite.tag_size,
        commitment=okm[suite.key_size : split],
        nonce=okm[split:],
    )


def read_prefix(data: ReadableBuffer, magic: bytes) -> tuple[int, int, int]:
    """Check the magic and format version; return ``(format version, suite code, key version)``.

    :raises strongroom.errors.IntegrityError: ``data`` does not start with
        ``magic`` or has a format version that magic does not have.
    """
    if len(data) < PREFIX_SIZE or bytes(data[:4]) != magic:
        raise IntegrityError(f"not a strongroom {_MAGICS[magic]} object")
    _, version, suite_code, key_version = _PREFIX.unpack_from(data)
    if version not in VERSIONS[magic]:
        raise IntegrityError(f"unsupported format version {version}")
    return version, suite_code, key_version


def parse_prefix(data: ReadableBuffer, magic: bytes) -> tuple[int, int]:
    """:func:`read_prefix` without the format version: ``(suite code, key version)``."""
    return read_prefix(data, magic)[1:]


def pack_prefix(magic: bytes, suite: CipherSuite, key_version: int, version: int = 1) -> bytes:
    """The 11-byte prefix of a header."""
    check_key_version(key_version)
    return _PREFIX.pack(magic, version, suite.code, key_version)


def peek_key_version(data: ReadableBuffer) -> int:
    """The key version of a sealed or chunked object, read from its first 11 bytes.

    Nothing is authenticated: use it to decide whether to re-encrypt under
    the primary key after a successful open, or to fetch the right key.

    :raises strongroom.errors.IntegrityError: ``data`` is not the start of a
        strongroom sealed or chunked object of a known format version.
    """
    magic = bytes(data[:4])
    if magic not in _MAGICS:
        raise IntegrityError("not a strongroom sealed or chunked object")
    return read_prefix(data, magic)[2]


def resolve_key(
    found: tuple[CipherSuite, ReadableBuffer] | Subkeys,
) -> tuple[CipherSuite, ReadableBuffer]:
    """The ``(suite, data key)`` of what a ``key_for`` returned.

    :raises strongroom.errors.KeyLockedError: it is a ``Subkeys`` whose data
        key was wiped.
    """
    if isinstance(found, tuple):
        return found
    return found.suite, found.material()


def open_object_key(
    key_for: KeyFor,
    suite_code: int,
    key_version: int,
    salt: ReadableBuffer,
    commitment: ReadableBuffer,
    *,
    kind: bytes,
    nonce_size: Callable[[CipherSuite], int],
) -> ObjectKey:
    """Look the key up, derive the object key and check its commitment.

    Exceptions from ``key_for`` propagate unchanged.

    :raises strongroom.errors.AuthenticationError: the key's suite is not the
        header's, or the commitment does not match (the data key is not the
        one this object was written with, or the header was altered).
    """
    suite, data_key = resolve_key(key_for(key_version))
    if suite.code != suite_code:
        raise AuthenticationError
    derived = derive(suite, data_key, bytes(salt), kind, nonce_size(suite))
    if not hmac.compare_digest(derived.commitment, bytes(commitment)):
        raise AuthenticationError
    return derived


def nonce_size_sealed(suite: CipherSuite) -> int:
    """Sealed objects derive a whole nonce."""
    return suite.nonce_size


def nonce_size_chunked(suite: CipherSuite) -> int:
    """Chunked objects derive a prefix; 4 bytes of chunk index and 1 flag byte follow."""
    return suite.nonce_size - 5
