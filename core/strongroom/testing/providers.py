"""``MemoryKeyProvider``: the one in-memory key provider for tests, and nothing else.

It wraps with AES-256-GCM under a key-encryption key (KEK) held in this
process's memory, so everything it wrapped is lost when the process ends.
It offers no protection at all: the KEK is an ordinary ``bytes`` object and
the provider is registered under no entry point, so no config can select
it.  It behaves like a provider that keeps a root per account (the OS
keyring): :meth:`~MemoryKeyProvider.destroy` forgets the account's KEK, and
the record generation is kept and only ever rises.  Tests build it
directly::

    provider = MemoryKeyProvider()                 # a random KEK
    shared = MemoryKeyProvider(kek=bytes(32))      # the same KEK in another process

Two switches let a test make it fail, with errors the
:class:`~strongroom.key_provider.KeyProvider` interface allows:
``provider.refuse = True`` makes unwrapping fail as a wrong passphrase does
(:class:`~strongroom.errors.UnlockFailedError`), and
``provider.fail = KeyLockedError("...")`` makes every call raise that error
(a locked or unreachable backend).
"""

from __future__ import annotations

import os
import threading
from typing import ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.errors import (
    AuthenticationError,
    KeyUnavailableError,
    ProviderUnreachableError,
    UnlockFailedError,
    UsageError,
)
from strongroom.key_provider import KeyProvider, KeyProviderTraits, WrapContext
from strongroom.settings import BackendSettings

__all__ = ["MemoryKeyProvider"]

_KEK_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16


class MemoryKeyProvider(KeyProvider):
    """Wraps under an in-memory AES-256-GCM key.  For tests only; never for real data.

    ``kek`` fixes the key-encryption key (32 bytes) so that a child process
    can unwrap what its parent wrapped; by default it is random.  Every
    account starts with that KEK.  :meth:`destroy` forgets the account's
    KEK (and its generation): unwrapping for it then raises
    :class:`~strongroom.errors.KeyUnavailableError`, and the next wrap makes
    a new random KEK, under which nothing older opens.

    Public attributes for tests: ``refuse`` and ``fail`` (see the module
    docstring) and ``destroyed``, the accounts :meth:`destroy` was called
    for, in order.
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
        self._root: AESGCM | None = AESGCM(kek if kek is not None else os.urandom(_KEK_SIZE))
        self._keks: dict[str, AESGCM] = {}  # accounts whose KEK was replaced after a destroy
        self._forgotten: set[str] = set()
        self._generations: dict[str, int] = {}
        self._lock = threading.Lock()
        #: While true, unwrapping raises UnlockFailedError("refused"), like a wrong passphrase.
        self.refuse = False
        #: While set, every call raises this error, like a locked or absent backend.
        self.fail: KeyUnavailableError | None = None
        #: The accounts :meth:`destroy` was called for, in order.
        self.destroyed: list[str] = []

    def wrap(self, secret: bytes, context: WrapContext) -> bytes:
        """Nonce (12 bytes) then AES-256-GCM ciphertext, ``context`` as associated data.

        Makes a new KEK for an account that was destroyed.

        :raises strongroom.errors.KeyUnavailableError: ``fail`` is set (that error).
        :raises strongroom.errors.ProviderUnreachableError: the provider is closed.
        """
        self._check()
        with self._lock:
            account = context.account
            if account in self._forgotten:
                self._keks[account] = AESGCM(os.urandom(_KEK_SIZE))
                self._forgotten.discard(account)
            aead = self._cipher(account)
        nonce = os.urandom(_NONCE_SIZE)
        return nonce + aead.encrypt(nonce, bytes(secret), context.encode())

    def unwrap(self, blob: bytes, context: WrapContext) -> bytes:
        """Open what :meth:`wrap` sealed under the same ``context``.

        :raises strongroom.errors.AuthenticationError: wrong KEK or context, or
            an altered or truncated blob (indistinguishable).
        :raises strongroom.errors.UnlockFailedError: ``refuse`` is set.
        :raises strongroom.errors.KeyUnavailableError: the account was
            destroyed, or ``fail`` is set (that error).
        :raises strongroom.errors.ProviderUnreachableError: the provider is closed.
        """
        self._check()
        if self.refuse:
            raise UnlockFailedError("refused")
        with self._lock:
            if context.account in self._forgotten:
                raise KeyUnavailableError(
                    f"the test provider holds no KEK for {context.account!r}: it was destroyed"
                )
            aead = self._cipher(context.account)
        if len(blob) < _NONCE_SIZE + _TAG_SIZE:
            raise AuthenticationError
        try:
            return aead.decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], context.encode())
        except InvalidTag:
            raise AuthenticationError from None

    def destroy(self, account: str) -> None:
        """Forget ``account``'s KEK and generation; idempotent.

        :raises strongroom.errors.KeyUnavailableError: ``fail`` is set (that error).
        """
        self._check()
        with self._lock:
            self.destroyed.append(account)
            self._keks.pop(account, None)
            self._forgotten.add(account)
            self._generations.pop(account, None)

    def record_generation(self, account: str, generation: int) -> None:
        """Keep ``generation`` for ``account`` unless a higher one is kept already.

        :raises strongroom.errors.KeyUnavailableError: ``fail`` is set (that error).
        """
        self._check()
        with self._lock:
            self._generations[account] = max(generation, self._generations.get(account, 0))

    def recorded_generation(self, account: str) -> int | None:
        """The generation kept for ``account``, or ``None``.

        :raises strongroom.errors.KeyUnavailableError: ``fail`` is set (that error).
        """
        self._check()
        with self._lock:
            return self._generations.get(account)

    def close(self) -> None:
        """Drop the KEKs (best effort: they are ordinary bytes objects inside ``AESGCM``)."""
        self._root = None
        self._keks.clear()

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail
        if self._root is None:
            raise ProviderUnreachableError("this MemoryKeyProvider is closed")

    def _cipher(self, account: str) -> AESGCM:
        root = self._root
        if root is None:
            raise ProviderUnreachableError("this MemoryKeyProvider is closed")
        return self._keks.get(account, root)

    def __repr__(self) -> str:
        return "<MemoryKeyProvider (for tests only, KEK hidden)>"
