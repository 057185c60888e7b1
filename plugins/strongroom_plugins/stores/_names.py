"""The ``files`` store's name key and floor key.

Both come from version 1 of the store's names keyset, which is never
rotated, so file names and the re-encryption floor stay valid whatever
happens to the data keys.  They live apart from the store because the
store only needs two answers from them: the file name of a key, and the
key that authenticates the floor.  They are derived again whenever the
account was re-locked (locking wipes their source), and wiped for good
when the store closes.
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
FLOOR_INFO = b"strongroom/v1/files-floor"


class NameKeys:
    """One store's name and floor keys; refused once the store is closed."""

    def __init__(self, binding: StoreBinding) -> None:
        self._binding = binding
        self._guard = threading.Lock()
        self._source: DataKey | None = None
        self._name_key: Secret | None = None
        self._floor_key: Secret | None = None
        self._closed = False

    def close(self) -> None:
        """Wipe both keys; every later use raises ``StoreError``."""
        with self._guard:
            self._closed = True
            for secret in (self._name_key, self._floor_key):
                if secret is not None:
                    secret.wipe()
            self._name_key = self._floor_key = None
            self._source = None

    def derive(self) -> tuple[Secret, Secret]:
        """The name and floor keys, derived again whenever the account was re-locked.

        :raises strongroom.errors.StoreError: the store is closed.
        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        if self._closed:
            raise StoreError(f"the files store {self._binding.name!r} is closed")
        with self._guard:
            source = self._source
            if (
                source is None
                or source.material.wiped
                or self._name_key is None
                or self._floor_key is None
            ):
                source = self._binding.keys.data_key(self._binding.names_purpose, 1)
                for secret in (self._name_key, self._floor_key):
                    if secret is not None:
                        secret.wipe()
                label = f"{self._binding.account} store:{self._binding.name}"
                self._name_key = Secret(
                    bytearray(_hkdf(source.material.view(), NAMES_INFO)),
                    label=f"{label} name key",
                )
                self._floor_key = Secret(
                    bytearray(_hkdf(source.material.view(), FLOOR_INFO)),
                    label=f"{label} floor key",
                )
                self._source = source
            return self._name_key, self._floor_key

    def name(self, encoded_key: bytes) -> str:
        """The 64-hex file name of a key: HMAC-SHA256 of its UTF-8 under the name key."""
        name_key, _ = self.derive()
        mac = crypto_hmac.HMAC(name_key.view(), hashes.SHA256())
        mac.update(encoded_key)
        return mac.finalize().hex()

    def floor_key(self) -> Secret:
        """The key that authenticates the store's floor file."""
        return self.derive()[1]


def _hkdf(material: memoryview, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)
