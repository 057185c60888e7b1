"""Data keys sealed under the master key, each bound to where it belongs.

Every data key version is kept in the record sealed (the sealed format,
AES-256-GCM, the master key's version as key version) and
bound to (account, purpose, version): a wrapped key copied to another
keyset, version or account fails to open.  Kept apart from
``AccountKeys`` so the one binding is written down once, for sealing and
opening alike.

The wrapping suite is built here on pyca/cryptography, not loaded as the
``aes-256-gcm`` plugin: the core must not depend on a plugin by name, and a
config that blocks that plugin must still be able to hold keys.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.cipher_suite import CipherSuite, KeyedAead, ReadableBuffer
from strongroom.errors import AuthenticationError
from strongroom.formats.context import Context
from strongroom.formats.sealed import open_sealed, seal
from strongroom.keys.purposes import MASTER
from strongroom.secret import Secret

__all__ = ["MASTER", "SuiteResolver", "open_data_key", "seal_data_key"]

SuiteResolver = Callable[[str], CipherSuite]


class _GcmKeyed(KeyedAead):
    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b"") -> bytes:
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b"") -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuthenticationError from None


class _WrapSuite(CipherSuite):
    """AES-256-GCM (suite code 0x0001, as the ``aes-256-gcm`` plugin) for key wraps only."""

    name = "aes-256-gcm"
    code = 0x0001
    key_size = 32
    nonce_size = 12

    def keyed(self, key: bytes) -> KeyedAead:
        return _GcmKeyed(bytes(key))


_WRAP_SUITE = _WrapSuite()


def seal_data_key(
    master: Secret,
    master_version: int,
    material: Secret,
    *,
    account: str,
    purpose: str,
    version: int,
) -> bytes:
    """``material``, the data key ``purpose`` #``version``, sealed under ``master``."""
    return seal(
        _WRAP_SUITE,
        master.view(),
        master_version,
        material.view(),
        _wrap_context(account, purpose, version),
    )


def open_data_key(
    master: Secret,
    wrapped: bytes,
    *,
    account: str,
    purpose: str,
    version: int,
) -> Secret:
    """The data key ``purpose`` #``version`` that ``wrapped`` seals under ``master``.

    :raises strongroom.errors.IntegrityError: it is not a sealed object.
    :raises strongroom.errors.AuthenticationError: it was altered, or sealed
        for another account, purpose or version.
    """

    def master_for(_version: int) -> tuple[CipherSuite, memoryview]:
        return _WRAP_SUITE, master.view()

    plain = open_sealed(wrapped, master_for, _wrap_context(account, purpose, version))
    return Secret(bytearray(plain), label=f"{account} {purpose} key v{version}")


def _wrap_context(account: str, purpose: str, version: int) -> Context:
    return Context(account=account, store="keys", record=f"{purpose}#{version}")
