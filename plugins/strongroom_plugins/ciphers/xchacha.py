"""XChaCha20-Poly1305 from libsodium through PyNaCl (the ``nacl`` extra).

Its 192-bit nonce can be drawn at random for every message without a
realistic chance of collision.
"""

from __future__ import annotations

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from strongroom.cipher_suite import CipherSuite, KeyedAead, ReadableBuffer
from strongroom.errors import AuthenticationError


class _KeyedXChaCha(KeyedAead):
    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b"") -> bytes:
        _check_nonce(nonce)
        result: bytes = crypto_aead_xchacha20poly1305_ietf_encrypt(
            bytes(plaintext), aad or None, nonce, self._key
        )
        return result

    def decrypt(self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b"") -> bytes:
        _check_nonce(nonce)
        sealed = bytes(ciphertext)
        if len(sealed) < XChaCha20Poly1305.tag_size:
            # Too short to hold a tag: PyNaCl would raise ValueError, not CryptoError.
            raise AuthenticationError
        try:
            result: bytes = crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed, aad or None, nonce, self._key
            )
        except CryptoError:
            raise AuthenticationError from None
        return result


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != XChaCha20Poly1305.nonce_size:
        raise ValueError(f"nonce must be {XChaCha20Poly1305.nonce_size} bytes")


class XChaCha20Poly1305(CipherSuite):
    """XChaCha20-Poly1305 with 192-bit nonces (draft-irtf-cfrg-xchacha)."""

    name = "xchacha20-poly1305"
    code = 0x0003
    key_size = 32
    nonce_size = 24

    def keyed(self, key: bytes) -> KeyedAead:
        if len(key) != self.key_size:
            raise ValueError(f"{self.name} keys are {self.key_size} bytes")
        return _KeyedXChaCha(bytes(key))
