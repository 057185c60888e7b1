"""The ``files`` store's name key.

It comes from version 1 of the store's names keyset, which is never
rotated, so file names stay valid whatever happens to the data keys.  It
lives apart from the store because the store needs one answer from it: the
file name of a key.  It is derived again whenever the account was
re-locked (locking wipes its source), and wiped for good when the store
closes.
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.errors import StoreError
from strongroom.keys import DataKey
from strongroom.secret import Secret
from strongroom.store import StoreBinding

__all__ = ["NameKeys"]

NAMES_INFO = b"strongroom/v1/record-names"


class NameKeys:
    """One store's name key; refused once the store is closed."""

    def __init__(self, binding: StoreBinding) -> None:
        self._binding = binding
        self._guard = threading.Lock()
        self._source: DataKey | None = None
        self._name_key: Secret | None = None
        self._closed = False

    def close(self) -> None:
        """Wipe the key; every later use raises ``StoreError``."""
        with self._guard:
            self._closed = True
            if self._name_key is not None:
                self._name_key.wipe()
            self._name_key = None
            self._source = None

    def forget(self) -> None:
        """Let the name key go, unless a derivation holds it now (it checks its source next).

        Dropped, not wiped here: a name being computed in another thread may
        hold it still; ``Secret.__del__`` wipes it when that one is done.
        """
        if self._guard.acquire(blocking=False):
            try:
                self._name_key = None
                self._source = None
            finally:
                self._guard.release()

    def derive(self) -> Secret:
        """The name key, derived again whenever the account was re-locked.

        :raises strongroom.errors.StoreError: the store is closed.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        if self._closed:
            raise StoreError(f"the files store {self._binding.name!r} is closed")
        with self._guard:
            source = self._source
            if source is None or source.material.wiped or self._name_key is None:
                source = self._binding.keys.data_key(self._binding.names_purpose, 1)
                if self._name_key is not None:
                    self._name_key.wipe()
                self._name_key = Secret(
                    bytearray(_hkdf(source.material.view(), NAMES_INFO)),
                    label=f"{self._binding.account} store:{self._binding.name} name key",
                )
                self._source = source
            return self._name_key

    def name(self, encoded_key: bytes) -> str:
        """The 64-hex file name of a key: HMAC-SHA256 of its UTF-8 under the name key."""
        name_key = self.derive()
        mac = crypto_hmac.HMAC(name_key.view(), hashes.SHA256())
        mac.update(encoded_key)
        return mac.finalize().hex()


def _hkdf(material: memoryview, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)
