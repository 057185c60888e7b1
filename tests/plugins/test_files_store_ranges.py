"""Ranged reads: the ``files`` store opens only the chunks a range covers; the defaults hold too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from files_store_support import CHUNK, RawRecordFiles, bind, blob_paths, open_files_store

from strongroom.errors import IntegrityError, KeyUnavailableError, RecordNotFoundError
from strongroom.formats import ChunkedReader
from strongroom.store import Store, StoreBinding
from strongroom.testing import StoreContract, make_account_keys
from strongroom_plugins.stores.files import FilesStore, FilesStoreSettings

#: Where chunk ``i`` starts in a chunked file: after the header, one stride a chunk.
HEADER = 4 + 1 + 2 + 4 + 4 + 32 + 32
STRIDE = CHUNK + 16


class InterfaceDefaults(FilesStore):
    """The ``files`` store with ``put_many`` and ``get_blob_range`` left to ``Store``."""

    put_many = Store.put_many
    get_blob_range = Store.get_blob_range


class TestTheInterfaceDefaults(RawRecordFiles, StoreContract):
    """What a third-party store gets without writing ``put_many`` or ``get_blob_range``."""

    blob_size = 5 * CHUNK + 123

    def open_store(self, binding: StoreBinding) -> Store:
        return InterfaceDefaults(FilesStoreSettings(chunk_size=CHUNK), binding=binding)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FilesStore]:
    keys = make_account_keys(tmp_path / "alice")
    keys.create()
    with open_files_store(bind(keys)) as store:
        yield store
    keys.close()


@pytest.fixture
def opened_chunks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The index of every chunk a reader decrypts."""
    opened: list[int] = []
    open_chunk = ChunkedReader._open_chunk

    def counting(self: ChunkedReader, index: int, out: memoryview) -> int:
        opened.append(index)
        return open_chunk(self, index, out)

    monkeypatch.setattr(ChunkedReader, "_open_chunk", counting)
    return opened


def test_a_range_opens_only_the_chunks_it_covers(
    store: FilesStore, opened_chunks: list[int]
) -> None:
    data = os.urandom(40 * CHUNK + 7)
    store.put_blob("big", [data])
    opened_chunks.clear()
    assert store.get_blob_range("big", 17 * CHUNK + 100, CHUNK) == data[17 * CHUNK + 100 :][:CHUNK]
    # the last chunk authenticates the size when the reader is built; then the two covered
    assert opened_chunks == [40, 17, 18]


def test_a_damaged_chunk_fails_only_the_ranges_that_cover_it(store: FilesStore) -> None:
    data = os.urandom(8 * CHUNK)
    store.put_blob("big", [data])
    blob, _ = blob_paths(store, "big")
    damaged = bytearray(blob.read_bytes())
    damaged[HEADER + 3 * STRIDE + 10] ^= 1
    blob.write_bytes(bytes(damaged))
    assert store.get_blob_range("big", 0, 3 * CHUNK) == data[: 3 * CHUNK]
    assert store.get_blob_range("big", 4 * CHUNK, CHUNK) == data[4 * CHUNK : 5 * CHUNK]
    with pytest.raises(IntegrityError):
        store.get_blob_range("big", 3 * CHUNK - 1, 2)


def test_a_range_of_a_blob_under_a_destroyed_version_is_refused(store: FilesStore) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put_blob("b", [b"x" * 10000])
    keys.rotate(purpose)
    keys.destroy(purpose, 1, force=True)
    with pytest.raises(KeyUnavailableError):
        store.get_blob_range("b", 0, 10)


def test_a_record_has_no_range(store: FilesStore) -> None:
    store.put("r", b"a record")
    with pytest.raises(RecordNotFoundError):
        store.get_blob_range("r", 0, 1)
