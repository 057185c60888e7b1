"""Shared adapter for the AEADs in pyca/cryptography."""

from __future__ import annotations

from typing import ClassVar, Protocol

from cryptography.exceptions import InvalidTag

from strongroom.cipher_suite import CipherSuite, KeyedAead, ReadableBuffer, UncheckedDecrypt
from strongroom.errors import AuthenticationError


class _PycaAead(Protocol):
    def encrypt(self, nonce: bytes, data: ReadableBuffer, aad: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: ReadableBuffer, aad: bytes | None) -> bytes: ...


class PycaKeyedAead(KeyedAead):
    """Wraps a keyed pyca AEAD, translating ``InvalidTag`` at the boundary."""

    __slots__ = ("_aead", "_nonce_size")

    def __init__(self, aead: _PycaAead, nonce_size: int) -> None:
        self._aead = aead
        self._nonce_size = nonce_size

    def _check_nonce(self, nonce: bytes) -> None:
        if len(nonce) != self._nonce_size:
            raise ValueError(f"nonce must be {self._nonce_size} bytes")

    def encrypt(self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b"") -> bytes:
        self._check_nonce(nonce)
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b"") -> bytes:
        self._check_nonce(nonce)
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuthenticationError from None

    def unchecked_decrypt(self) -> UncheckedDecrypt:
        """pyca's own ``decrypt``, which refuses a truncated object by itself.

        It raises ``InvalidTag`` for a bad or missing tag and ``ValueError``
        for a nonce the algorithm does not take (AES-GCM also takes 8 to 11
        bytes, and then finds no tag).
        """
        return self._aead.decrypt, (InvalidTag,)

    def encrypt_into(
        self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        self._check_nonce(nonce)
        self._aead.encrypt_into(nonce, plaintext, aad, out)  # type: ignore[attr-defined]

    def decrypt_into(
        self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        self._check_nonce(nonce)
        try:
            self._aead.decrypt_into(nonce, ciphertext, aad, out)  # type: ignore[attr-defined]
        except InvalidTag:
            # OpenSSL decrypts before it checks the tag: scrub what it wrote.
            out[:] = bytes(len(out))
            raise AuthenticationError from None


class PycaSuite(CipherSuite):
    """A suite backed by one of cryptography's AEAD classes."""

    aead_class: ClassVar[type[_PycaAead]]

    def keyed(self, key: bytes) -> KeyedAead:
        if len(key) != self.key_size:
            raise ValueError(f"{self.name} keys are {self.key_size} bytes")
        return PycaKeyedAead(self.aead_class(key), self.nonce_size)  # type: ignore[call-arg]
