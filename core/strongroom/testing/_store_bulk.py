"""The part of ``StoreContract`` on batches and ranged reads.

Every store is held to these: ``Store`` gives ``put_many`` and
``get_blob_range`` defaults that pass them, and a store that overrides
either (to make a batch all or nothing, or to decrypt only what a range
covers) must still give the same answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pytest

from strongroom.errors import KeyLockedError, RecordNotFoundError, UsageError
from strongroom.store import Store

__all__ = ["BulkContract"]


def _joined(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)


class BulkContract:
    """Mixed into ``StoreContract``; uses its ``store`` fixture and :meth:`blob`."""

    def blob(self, seed: int = 0) -> bytes:
        raise NotImplementedError  # StoreContract.blob

    def test_put_many_stores_every_item_the_last_of_a_key_winning(self, store: Store) -> None:
        store.put("replaced", b"before")
        store.put_blob("was a blob", [self.blob(9)])
        items = [(f"k{index}", os.urandom(index * 50)) for index in range(40)]
        store.put_many(
            iter([*items, ("replaced", b"first"), ("replaced", b"after"), ("was a blob", b"r")])
        )
        for key, value in items:
            assert store.get(key) == value
        assert store.get("replaced") == b"after"
        assert store.get("was a blob") == b"r"
        with pytest.raises(RecordNotFoundError):
            _joined(store.get_blob("was a blob"))
        assert list(store.keys()) == sorted([*(key for key, _ in items), "replaced", "was a blob"])
        store.put_many([])
        assert len(list(store.keys())) == 42

    def test_put_many_is_refused_while_locked(self, store: Store) -> None:
        store.binding.keys.lock()
        with pytest.raises(KeyLockedError):
            store.put_many([("k", b"v")])
        store.binding.keys.unlock()
        assert list(store.keys()) == []

    def test_ranged_reads_return_exactly_the_bytes_asked_for(self, store: Store) -> None:
        data = self.blob(10)
        store.put_blob("big", [data])
        size = len(data)
        ranges = [(0, 0), (0, 1), (0, None), (1, 4095), (4095, 2), (size // 2, 70000)]
        ranges += [(size - 5, 5), (size - 5, 100), (size, 10), (size + 100, None), (7, None)]
        for offset, length in ranges:
            end = None if length is None else offset + length
            assert store.get_blob_range("big", offset, length) == data[offset:end], (offset, length)
        assert store.get_blob_range("big") == data
        store.put_blob("empty", [])
        assert store.get_blob_range("empty", 0, 10) == b""
        with pytest.raises(UsageError):
            store.get_blob_range("big", -1, 10)
        with pytest.raises(UsageError):
            store.get_blob_range("big", 0, -1)
        with pytest.raises(RecordNotFoundError):
            store.get_blob_range("absent", 0, 1)

    def test_ranged_reads_are_refused_while_locked(self, store: Store) -> None:
        store.put_blob("b", [self.blob(11)])
        store.binding.keys.lock()
        with pytest.raises(KeyLockedError):
            store.get_blob_range("b", 10, 10)
        store.binding.keys.unlock()
        assert store.get_blob_range("b", 10, 10) == self.blob(11)[10:20]
