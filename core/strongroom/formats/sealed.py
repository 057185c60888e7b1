"""The sealed record format: one small object, one AEAD call.

Version 2, the one written::

    magic "SRsl" (4) | version 0x02 (1) | suite code u16 BE (2) | key version u32 BE (4)
    | salt (32) | key commitment (32) | nonce (the suite's nonce size) | ciphertext || tag

Salt, commitment and subkey belong to a batch of objects sealed by one
writer (``strongroom.formats._batch``), which is what lets records run at
the speed of a bare AEAD; the nonce is stored.  Version 1, which derived a
key and nonce per object and stored no nonce, is still read.  The
associated data is the whole header followed by ``Context.encode()``.
``docs/formats.md`` specifies every byte.
"""

from __future__ import annotations

import struct

from strongroom.cipher_suite import CipherSuite, ReadableBuffer
from strongroom.errors import AuthenticationError, IntegrityError
from strongroom.formats._batch import HEAD_SIZE, MAGIC, V2_START, VERSION, Subkeys, verify_subkey
from strongroom.formats._derive import (
    SALT_SIZE,
    KeyFor,
    nonce_size_sealed,
    open_object_key,
    peek_key_version,
    read_prefix,
)
from strongroom.formats.context import Context

__all__ = [
    "HEAD_SIZE",
    "MAGIC",
    "VERSION",
    "Subkeys",
    "open_sealed",
    "peek_key_version",
    "seal",
    "sealed_overhead",
]

#: magic || format version | suite code | key version | salt || commitment
_HEAD = struct.Struct(f">5sHI{HEAD_SIZE - 11}s")
_V1_KIND = b"sealed"


def sealed_overhead(suite: CipherSuite) -> int:
    """Bytes a sealed object adds to its plaintext: header, nonce and tag."""
    return HEAD_SIZE + suite.nonce_size + suite.tag_size


def seal(
    suite: CipherSuite,
    key: ReadableBuffer,
    key_version: int,
    plaintext: ReadableBuffer,
    context: Context,
) -> bytes:
    """Encrypt ``plaintext`` alone, in a batch of its own: a fresh salt and subkey.

    To seal many objects under one key, keep a :class:`Subkeys` and call its
    ``seal``: it derives once per batch.  ``key_version`` is recorded in the
    header for :func:`open_sealed`'s ``key_for`` lookup.  The result is
    ``len(plaintext) + sealed_overhead(suite)`` bytes long.

    :raises strongroom.errors.UsageError: ``key`` is shorter than the suite's
        key size, or ``key_version`` is not an unsigned 32-bit integer.
    """
    subkeys = Subkeys(suite, key, key_version)
    return subkeys.seal(plaintext, context)


def open_sealed(blob: ReadableBuffer, key_for: KeyFor, context: Context) -> bytes:
    """Verify and decrypt a sealed object; nothing is returned unless all of it verifies.

    ``key_for`` maps the header's key version to ``(suite, data key)``, or to
    that version's :class:`Subkeys`, whose verified subkeys then spare a
    derivation for every object of a batch it has seen.  Whatever ``key_for``
    raises (``KeyUnavailableError`` for a destroyed version, say) propagates
    unchanged.

    :raises strongroom.errors.IntegrityError: ``blob`` is not a sealed object
        (wrong magic, unknown format version, shorter than 75 bytes).
    :raises strongroom.errors.AuthenticationError: anything else failed:
        another key, suite, context or key version, or altered bytes.  The
        error is the same for all of them.
    """
    data = blob if type(blob) is bytes else bytes(blob)
    try:
        start, suite_code, key_version, tail = _HEAD.unpack_from(data)
    except struct.error:  # shorter than a header
        start = None
    if start != V2_START:
        return _open_other(data, key_for, context)
    found = key_for(key_version)
    if not isinstance(found, Subkeys):
        return _open_with_key(data, found, suite_code, tail, context)
    # The Subkeys reader, inlined here to spare a Python call per object.
    if suite_code != found.code:
        raise AuthenticationError
    # The salt and commitment verified last, else a subkey from the cache or
    # derived, its commitment compared (Subkeys._lookup): no AEAD call before.
    verified, decrypt, refusals, nonce, body, header = found._last  # one read
    if tail != verified:
        verified, decrypt, refusals, nonce, body, header = found._lookup(tail)
    try:  # a truncated object is refused by the AEAD: a short nonce or no whole tag
        return decrypt(data[nonce], data[body], data[header] + context._encoded)
    except refusals:
        raise AuthenticationError from None


def _open_with_key(
    data: bytes,
    found: tuple[CipherSuite, ReadableBuffer],
    suite_code: int,
    salt_and_commitment: bytes,
    context: Context,
) -> bytes:
    """Version 2 under a ``(suite, data key)`` pair: the subkey derived for this object."""
    suite, key = found
    if suite.code != suite_code:
        raise AuthenticationError
    decrypt = verify_subkey(suite, key, salt_and_commitment).decrypt
    end = HEAD_SIZE + suite.nonce_size
    if len(data) < end + suite.tag_size:
        raise AuthenticationError
    header = data[:end]
    return decrypt(header[HEAD_SIZE:], data[end:], header + context._encoded)


def _open_other(data: bytes, key_for: KeyFor, context: Context) -> bytes:
    """Anything but a whole version 2 header: version 1, or refused before ``key_for``."""
    _, suite_code, key_version = read_prefix(data, MAGIC)  # names foreign data first
    if len(data) < HEAD_SIZE:
        raise IntegrityError("truncated strongroom sealed object")
    return _open_v1(data, key_for, suite_code, key_version, context)


def _open_v1(
    data: bytes, key_for: KeyFor, suite_code: int, key_version: int, context: Context
) -> bytes:
    """Version 1: a key, commitment and nonce derived for the one object; no nonce stored."""
    derived = open_object_key(
        key_for,
        suite_code,
        key_version,
        data[11 : 11 + SALT_SIZE],
        data[11 + SALT_SIZE : HEAD_SIZE],
        kind=_V1_KIND,
        nonce_size=nonce_size_sealed,
    )
    body = data[HEAD_SIZE:]
    if len(body) < derived.tag_size:
        raise AuthenticationError
    return derived.aead.decrypt(derived.nonce, body, data[:HEAD_SIZE] + context.encode())
