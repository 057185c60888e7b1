"""The ``Store`` slot: named records and streamed blobs under a namespace.

Keys are strings chosen by the application; a store must not reveal them
in the clear where its medium can be read (file names, table contents).
Replacing a record is atomic: a reader sees the old value or the new one,
never a mix, even if the writer is killed midway.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

from strongroom.backend import Backend

__all__ = ["Store"]


class Store(Backend, ABC):
    """Encrypted key-value records and blobs."""

    @abstractmethod
    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, atomically replacing any previous value.

        :raises strongroom.errors.StoreError: the medium refused the write; the
            previous value is still readable.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the value stored under ``key``.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.IntegrityError: the stored value fails verification.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` and its value.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.StoreError: the medium refused the change.
        """

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys that start with ``prefix``, in sorted order.

        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    @abstractmethod
    def put_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        """Stream a large value in; it replaces ``key`` only once complete.

        :raises strongroom.errors.StoreError: the medium refused the write; the
            previous value is still readable.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    @abstractmethod
    def get_blob(self, key: str) -> Iterator[bytes]:
        """Stream a large value out, yielding only verified plaintext.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.IntegrityError: a chunk fails verification; the
            iteration stops there.
        """
