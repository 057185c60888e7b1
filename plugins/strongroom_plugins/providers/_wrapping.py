"""The AES-256-GCM envelope that the passphrase and keyring providers write.

A wrap blob is a provider-specific *prefix*, a nonce, then the sealed secret::

    prefix      magic (4 bytes), format version (1 byte), then what the
                provider needs to find its key-encryption key again
    nonce       12 random bytes
    ciphertext  AES-256-GCM(KEK, nonce, secret, aad) || 16-byte tag

The associated data is every byte before the ciphertext, then the wrap
context: ``aad = prefix || nonce || context.encode()``.  Altering any header
byte, or unwrapping under another account, purpose or version, therefore
fails authentication like a wrong key does.  A fresh random nonce per wrap
is safe: a KEK seals a handful of keys in its lifetime, far below the 2**32
random-nonce limit of GCM.
"""

from __future__ import annotations

import os

from strongroom.errors import AuthenticationError, IntegrityError
from strongroom.key_provider import WrapContext

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MAGIC_SIZE = 4

KeyBuffer = bytes | bytearray | memoryview


def seal_with_kek(kek: KeyBuffer, prefix: bytes, secret: bytes, context: WrapContext) -> bytes:
    """Return ``prefix || nonce || AES-256-GCM(kek, secret)`` bound to ``context``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # off the cold path

    _check_key(kek)
    nonce = os.urandom(NONCE_SIZE)
    aad = prefix + nonce + context.encode()
    return prefix + nonce + AESGCM(kek).encrypt(nonce, secret, aad)


def open_with_kek(kek: KeyBuffer, blob: bytes, prefix_size: int, context: WrapContext) -> bytes:
    """Recover the secret from a blob :func:`seal_with_kek` made with a ``prefix_size``-byte prefix.

    :raises strongroom.errors.IntegrityError: ``blob`` is too short to be sealed.
    :raises strongroom.errors.AuthenticationError: the tag did not verify: a
        wrong key, an altered blob or another context (indistinguishable).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _check_key(kek)
    check_length(blob, prefix_size)
    nonce_end = prefix_size + NONCE_SIZE
    nonce = blob[prefix_size:nonce_end]
    aad = blob[:nonce_end] + context.encode()
    try:
        return AESGCM(kek).decrypt(nonce, blob[nonce_end:], aad)
    except InvalidTag:
        raise AuthenticationError from None


def check_length(blob: bytes, prefix_size: int) -> None:
    """:raises strongroom.errors.IntegrityError: ``blob`` cannot hold a nonce and a tag."""
    if len(blob) < prefix_size + NONCE_SIZE + TAG_SIZE:
        raise IntegrityError("the wrapped key is truncated")


def check_magic(blob: bytes, magic: bytes, version: int, what: str) -> None:
    """Check the first five bytes: ``magic`` and a format ``version`` this code reads.

    :raises strongroom.errors.IntegrityError: another kind of blob, or a version
        this code does not know.
    """
    if blob[:MAGIC_SIZE] != magic:
        raise IntegrityError(f"not a {what} (unknown magic)")
    if len(blob) <= MAGIC_SIZE or blob[MAGIC_SIZE] != version:
        found = blob[MAGIC_SIZE] if len(blob) > MAGIC_SIZE else None
        raise IntegrityError(f"{what} format version {found} is not supported (expected {version})")


def wipe(buffer: bytearray) -> None:
    """Overwrite ``buffer`` with zeros (best effort: copies elsewhere are out of reach)."""
    buffer[:] = bytes(len(buffer))


def _check_key(kek: KeyBuffer) -> None:
    if len(kek) != KEY_SIZE:
        raise ValueError(f"a key-encryption key is {KEY_SIZE} bytes")
