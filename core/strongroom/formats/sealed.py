"""The sealed record format: one small object, one AEAD call.

::

    magic "SRsl" (4) | version 0x01 (1) | suite code u16 BE (2) | key version u32 BE (4)
    | salt (32) | key commitment (32) | ciphertext || tag

The object key, the commitment and the nonce are derived from the data key
and the salt (``strongroom.formats._derive``); the nonce is not stored.  The
associated data is the 75-byte header followed by ``Context.encode()``.
``docs/formats.md`` specifies every byte.
"""

from __future__ import annotations

import struct

from strongroom.cipher_suite import CipherSuite, ReadableBuffer
from strongroom.errors import AuthenticationError, IntegrityError
from strongroom.formats._derive import (
    COMMITMENT_SIZE,
    PREFIX_SIZE,
    SALT_SIZE,
    KeyFor,
    derive,
    new_salt,
    nonce_size_sealed,
    open_object_key,
    pack_prefix,
    parse_prefix,
    peek_key_version,
)
from strongroom.formats.context import Context

__all__ = ["HEADER_SIZE", "MAGIC", "SEALED_OVERHEAD", "open_sealed", "peek_key_version", "seal"]

MAGIC = b"SRsl"
_KIND = b"sealed"
#: Bytes before the ciphertext: prefix (11), salt (32), commitment (32).
HEADER_SIZE = PREFIX_SIZE + SALT_SIZE + COMMITMENT_SIZE
#: Bytes a sealed object adds to its plaintext with a 16-byte-tag suite (all built-in ones).
SEALED_OVERHEAD = HEADER_SIZE + 16
_SALT_AND_COMMITMENT = struct.Struct(f">{SALT_SIZE}s{COMMITMENT_SIZE}s")


def seal(
    suite: CipherSuite,
    key: ReadableBuffer,
    key_version: int,
    plaintext: ReadableBuffer,
    context: Context,
    *,
    _salt: bytes | None = None,
) -> bytes:
    """Encrypt ``plaintext`` under a key derived from ``key`` and a fresh salt.

    ``key_version`` is recorded in the header for :func:`open_sealed`'s
    ``key_for`` lookup.  The result is ``len(plaintext) + HEADER_SIZE +
    suite.tag_size`` bytes long.

    :raises strongroom.errors.UsageError: ``key`` is shorter than the suite's
        key size, or ``key_version`` is not an unsigned 32-bit integer.
    """
    salt = new_salt(_salt)
    derived = derive(suite, key, salt, _KIND, nonce_size_sealed(suite))
    header = pack_prefix(MAGIC, suite, key_version) + salt + derived.commitment
    return header + derived.aead.encrypt(derived.nonce, plaintext, header + context.encode())


def open_sealed(blob: ReadableBuffer, key_for: KeyFor, context: Context) -> bytes:
    """Verify and decrypt a sealed object; nothing is returned unless all of it verifies.

    ``key_for`` maps the header's key version to ``(suite, data key)``;
    whatever it raises (``KeyUnavailableError`` for a destroyed version, say)
    propagates unchanged.

    :raises strongroom.errors.IntegrityError: ``blob`` is not a sealed object
        (wrong magic, unknown format version, shorter than a header).
    :raises strongroom.errors.AuthenticationError: anything else failed:
        another key, suite, context or key version, or altered bytes.  The
        error is the same for all of them.
    """
    view = memoryview(blob).cast("B")
    suite_code, key_version = parse_prefix(view, MAGIC)
    if len(view) < HEADER_SIZE:
        raise IntegrityError("truncated strongroom sealed object")
    salt, commitment = _SALT_AND_COMMITMENT.unpack_from(view, PREFIX_SIZE)
    derived = open_object_key(
        key_for,
        suite_code,
        key_version,
        salt,
        commitment,
        kind=_KIND,
        nonce_size=nonce_size_sealed,
    )
    body = view[HEADER_SIZE:]
    if len(body) < derived.tag_size:
        raise AuthenticationError
    aad = bytes(view[:HEADER_SIZE]) + context.encode()
    return derived.aead.decrypt(derived.nonce, body, aad)
