"""``MemoryKeyProvider``: a key provider for tests, and nothing else.

It wraps with AES-256-GCM under a key-encryption key held in this
process's memory, so everything it wrapped is lost when the process ends.
It offers no protection at all: the KEK is an ordinary ``bytes`` object and
the provider is registered under no entry point, so no config can select
it.  Tests build it directly::

    provider = MemoryKeyProvider()                 # a random KEK
    shared = MemoryKeyProvider(kek=bytes(32))      # the same KEK in another process
"""

from __future__ import annotations

import os
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.errors import AuthenticationError, KeyUnavailableError, UsageError
from strongroom.key_provider import KeyProvider, KeyProviderTraits, WrapContext
from strongroom.settings import BackendSettings

__all__ = ["MemoryKeyProvider"]

_KEK_SIZE = 32
_NONCE_SIZE = 12


class MemoryKeyProvider(KeyProvider):
    """Wraps under an in-memory AES-256-GCM key.  For tests only; never for real data.

    ``kek`` fixes the key-encryption key (32 bytes) so that a child process
    can unwrap what its parent wrapped; by default it is random.
    :meth:`destroy` forgets an account: later unwraps for it fail.
    """

    traits: ClassVar[KeyProviderTraits] = KeyProviderTraits(
        non_exportable_root=False, needs_user_presence=False, survives_reinstall=False
    )

    def __init__(
        self, settings: BackendSettings | None = None, *, kek: bytes | None = None
    ) -> None:
        """:raises strongroom.errors.UsageError: ``kek`` is not 32 bytes."""
        super().__init__(settings)
        if kek is not None and len(kek) != _KEK_SIZE:
            raise UsageError(f"a MemoryKeyProvider KEK is {_KEK_SIZE} bytes")
        self._aead: AESGCM | None = AESGCM(kek if kek is not None else os.urandom(_KEK_SIZE))
        self._destroyed: set[str] = set()

    def _cipher(self, account: str) -> AESGCM:
        if self._aead is None:
            raise KeyUnavailableError("this MemoryKeyProvider is closed")
        if account in self._destroyed:
            raise KeyUnavailableError(f"the test provider destroyed account {account!r}")
        return self._aead

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Nonce (12 bytes) then AES-256-GCM ciphertext, ``context`` as associated data.

        :raises strongroom.errors.KeyUnavailableError: the account was destroyed
            or the provider closed.
        """
        nonce = os.urandom(_NONCE_SIZE)
        return nonce + self._cipher(context.account).encrypt(nonce, bytes(secret), context.encode())

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """:raises strongroom.errors.AuthenticationError: wrong KEK or context, or altered.
        :raises strongroom.errors.KeyUnavailableError: the account was destroyed
            or the provider closed.
        """
        aead = self._cipher(context.account)
        if len(blob) < _NONCE_SIZE + 16:
            raise AuthenticationError
        try:
            return aead.decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], context.encode())
        except InvalidTag:
            raise AuthenticationError from None

    def destroy(self, account: str) -> None:
        """Forget ``account``: nothing wrapped for it unwraps in this provider any more."""
        self._destroyed.add(account)

    def close(self) -> None:
        """Drop the KEK (best effort: it is an ordinary bytes object inside ``AESGCM``)."""
        self._aead = None

    def __repr__(self) -> str:
        return "<MemoryKeyProvider (for tests only, KEK hidden)>"
