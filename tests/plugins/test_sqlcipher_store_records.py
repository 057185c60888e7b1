"""The ``sqlcipher`` store beyond the contract: blob chunks and ranges, retention, odd keys."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlcipher_support import CHUNK, bind, open_sqlcipher_store

from strongroom.errors import KeyLockedError, RecordNotFoundError, StoreError, UsageError
from strongroom.keys import AccountKeys
from strongroom_plugins.sqlcipher.store import SqlcipherStore


@pytest.fixture
def store(account_keys: AccountKeys) -> Iterator[SqlcipherStore]:
    with open_sqlcipher_store(bind(account_keys)) as opened:
        yield opened


def blob_data(size: int) -> bytes:
    return bytes(index % 253 for index in range(size))


def count(store: SqlcipherStore, table: str) -> int:
    conn = store.connect()
    try:
        query = f"SELECT count(*) FROM {table}"  # noqa: S608 - the test's own table names
        return int(conn.execute(query).fetchone()[0])
    finally:
        conn.close()


def test_blobs_stream_out_one_chunk_at_a_time(store: SqlcipherStore) -> None:
    data = blob_data(5 * CHUNK + 17)
    store.put_blob("b", (data[at : at + 1000] for at in range(0, len(data), 1000)))
    pieces = list(store.get_blob("b"))
    assert [len(piece) for piece in pieces] == [CHUNK] * 5 + [17]
    assert b"".join(pieces) == data
    assert count(store, "strongroom_blob_chunks") == 6


def test_a_large_blob_is_never_held_whole(store: SqlcipherStore) -> None:
    size, piece = 24 << 20, b"\x5a" * 65536

    def pieces() -> Iterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    store.put("warm", b"")  # the key hierarchy's first unwrap has its own peak
    tracemalloc.start()
    try:
        store.put_blob("big", pieces())
        written = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        total = sum(len(chunk) for chunk in store.get_blob("big"))
        read = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == size
    assert written < 4 * CHUNK + 4 * len(piece) + (1 << 20), written
    assert read < 4 * CHUNK + (1 << 20), read


def test_ranged_reads_touch_only_the_chunks_they_cover(store: SqlcipherStore) -> None:
    data = blob_data(6 * CHUNK)
    store.put_blob("b", [data])
    conn = store.connect()
    conn.execute("DELETE FROM strongroom_blob_chunks WHERE seq NOT IN (2, 3)")
    conn.commit()
    conn.close()
    assert store.get_blob_range("b", 2 * CHUNK + 5, CHUNK) == data[2 * CHUNK + 5 : 3 * CHUNK + 5]
    assert store.get_blob_range("b", 3 * CHUNK, CHUNK) == data[3 * CHUNK : 4 * CHUNK]
    with pytest.raises(StoreError, match="replaced or deleted while being read"):
        store.get_blob_range("b", CHUNK, CHUNK + 1)  # chunk 1 is gone: noticed, not skipped


def test_a_blob_replaced_while_streamed_is_noticed(store: SqlcipherStore) -> None:
    store.put_blob("b", [blob_data(4 * CHUNK)])
    stream = store.get_blob("b")
    assert next(stream) == blob_data(4 * CHUNK)[:CHUNK]
    store.put_blob("b", [b"new"])
    with pytest.raises(StoreError, match="replaced or deleted while being read"):
        list(stream)


def test_replacing_and_deleting_blobs_leaves_no_chunks(store: SqlcipherStore) -> None:
    store.put_blob("b", [blob_data(3 * CHUNK)])
    store.put_blob("b", [blob_data(2 * CHUNK)])
    assert count(store, "strongroom_blob_chunks") == 2
    store.put("b", b"now a record")
    assert count(store, "strongroom_blob_chunks") == 0
    store.put_blob("c", [blob_data(CHUNK + 1)])
    store.delete("c")
    assert (count(store, "strongroom_blob_chunks"), count(store, "strongroom_blobs")) == (0, 0)


def test_purge_expired_deletes_what_was_written_before(store: SqlcipherStore) -> None:
    store.put("old record", b"1")
    store.put_many([("old batch", b"2")])
    store.put_blob("old blob", [blob_data(3 * CHUNK)])
    store.put("rewritten", b"old")
    time.sleep(0.01)
    cutoff = time.time()
    time.sleep(0.01)
    store.put("rewritten", b"new")
    store.put("new", b"3")
    store.binding.keys.rotate(store.binding.purpose)
    list(store.reencrypt())  # a re-key keeps every write time
    assert store.purge_expired(cutoff) == 3
    assert list(store.keys()) == ["new", "rewritten"]
    assert count(store, "strongroom_blob_chunks") == 0
    assert store.purge_expired(cutoff) == 0
    assert store.purge_expired(time.time() + 1) == 2
    assert list(store.keys()) == []


def test_keys_by_prefix_at_the_edges_of_unicode(store: SqlcipherStore) -> None:
    keys = [
        "a\0b",
        "a\0",
        "a",
        "\ud7ff",
        "\ud7ffz",
        "\ue000",
        "\U0010ffff",
        "\U0010ffff\U0010ffff",
        "z\U0010ffff",
        "z\U0010ffffa",
        "{",
    ]
    store.put_many((key, key.encode()) for key in keys)
    assert list(store.keys()) == sorted(keys)
    for prefix in ["a", "a\0", "\ud7ff", "\U0010ffff", "z\U0010ffff", "z", ""]:
        assert list(store.keys(prefix)) == sorted(k for k in keys if k.startswith(prefix)), prefix
    assert store.get("a\0b") == b"a\0b"


def test_listing_pages_through_many_keys(store: SqlcipherStore) -> None:
    keys = [f"k/{index:05d}" for index in range(10_000)]
    store.put_many((key, b"") for key in keys)
    assert list(store.keys("k/")) == keys
    assert list(store.keys("k/0999")) == keys[9990:10000]


@pytest.mark.parametrize("key", ["\ud800", "x" * 65536, "é" * 40000])
def test_bad_keys_are_usage_errors(store: SqlcipherStore, key: str) -> None:
    for call in (
        lambda: store.put(key, b""),
        lambda: store.get(key),
        lambda: list(store.keys(key)),
    ):
        with pytest.raises(UsageError):
            call()
    with pytest.raises(UsageError):
        store.put_many([("fine", b""), (key, b"")])
    assert list(store.keys()) == []  # the batch stored nothing


def test_a_closed_store_refuses_work(store: SqlcipherStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.put("k", b"v")
    with pytest.raises(StoreError, match="closed"):
        store.connect()


def test_get_of_a_blob_and_get_blob_of_a_record_are_not_found(store: SqlcipherStore) -> None:
    store.put("r", b"record")
    store.put_blob("b", [b"blob"])
    with pytest.raises(RecordNotFoundError):
        store.get("b")
    with pytest.raises(RecordNotFoundError):
        store.get_blob("r")
    with pytest.raises(RecordNotFoundError):
        store.get_blob_range("r", 0, 1)


def test_a_batch_over_blobs_replaces_them_in_order(store: SqlcipherStore) -> None:
    store.put_blob("b1", [blob_data(3 * CHUNK)])
    store.put_blob("b2", [blob_data(2 * CHUNK)])
    store.put_many([("b1", b"first"), ("r", b"record"), ("b1", b"last"), ("b2", b"two")])
    assert (store.get("b1"), store.get("b2"), store.get("r")) == (b"last", b"two", b"record")
    assert (count(store, "strongroom_blobs"), count(store, "strongroom_blob_chunks")) == (0, 0)
    store.put_blob("b3", [b"blob"])
    store.put("b3", b"record now")
    store.put("b3", b"and again")
    assert store.get("b3") == b"and again"
    assert (count(store, "strongroom_blobs"), count(store, "strongroom_blob_chunks")) == (0, 0)
    store.put_blob("b4", [b"blob"])
    store.delete("b4")
    assert (count(store, "strongroom_blobs"), count(store, "strongroom_blob_chunks")) == (0, 0)


def test_locking_mid_stream_stops_the_stream(store: SqlcipherStore) -> None:
    store.put_blob("b", [blob_data(4 * CHUNK)])
    stream = store.get_blob("b")
    assert next(stream) == blob_data(4 * CHUNK)[:CHUNK]
    store.binding.keys.lock()
    with pytest.raises(KeyLockedError):
        next(stream)
    store.binding.keys.unlock()
    assert b"".join(store.get_blob("b")) == blob_data(4 * CHUNK)


def test_threads_share_one_store(store: SqlcipherStore) -> None:
    def work(thread: int) -> None:
        for index in range(100):
            store.put(f"t{thread}/{index:03d}", bytes([thread]) * 50)
            assert store.get(f"t{thread}/{index:03d}") == bytes([thread]) * 50
        store.put_many((f"t{thread}/batch/{index}", b"b") for index in range(100))
        assert len(list(store.keys(f"t{thread}/"))) == 200

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    assert len(list(store.keys("t"))) == 800
