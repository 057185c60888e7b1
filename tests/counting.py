"""A cipher suite that counts: the subkeys made from it and the decryptions they run.

Tests use it to prove that a check happens *before* any AEAD call (a forged
commitment costs no decryption) and that a batch derives its subkey once.
"""

from __future__ import annotations

from strongroom.cipher_suite import KeyedAead, ReadableBuffer
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm


class CountingAead(KeyedAead):
    """Forwards to a real AEAD and counts its decryptions on the suite."""

    def __init__(self, inner: KeyedAead, suite: CountingSuite) -> None:
        self._inner = inner
        self._suite = suite

    def encrypt(self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b"") -> bytes:
        return self._inner.encrypt(nonce, plaintext, aad)

    def encrypt_into(
        self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        self._inner.encrypt_into(nonce, plaintext, aad, out)

    def decrypt(self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b"") -> bytes:
        self._suite.decryptions += 1
        return self._inner.decrypt(nonce, ciphertext, aad)

    def decrypt_into(
        self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        self._suite.decryptions += 1
        self._inner.decrypt_into(nonce, ciphertext, aad, out)


class CountingSuite(Aes256Gcm):
    """AES-256-GCM whose keyed AEADs count every decryption; ``keyed_count`` counts keys made."""

    def __init__(self) -> None:
        super().__init__()
        self.keyed_count = 0
        self.decryptions = 0

    def keyed(self, key: bytes) -> KeyedAead:
        self.keyed_count += 1
        return CountingAead(super().keyed(key), self)
