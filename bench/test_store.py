"""The files store against plain sqlite3: put, get, list, re-encrypt at 1k, 10k, 100k records.

sqlite3 keeps the same 1 KiB records in one WAL-mode table, written one autocommitted
statement at a time or in one transaction; strongroom one ``put`` at a time or in one
``put_many``.  A blob is read whole and in 4 KiB ranges (``get_blob_range``).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench import MiB, Sizes, pedantic
from strongroom.store import StoreBinding
from strongroom.testing import make_account_keys
from strongroom_plugins.stores.files import FilesStore

VALUE = os.urandom(1024)
Items = Iterable[tuple[str, bytes]]
Blob = tuple[FilesStore, bytes]


def sqlite_put(path: Path, items: Items, batched: bool) -> sqlite3.Connection:
    """Autocommitted, a commit per statement; ``batched``, all in one transaction."""
    db = sqlite3.connect(path, isolation_level="DEFERRED" if batched else None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS records (name TEXT PRIMARY KEY, value BLOB)")
    db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?)", items)
    db.commit()
    return db


def strongroom_put(path: Path, items: Items, batched: bool) -> FilesStore:
    """A new account (strongroom.testing's in-memory provider) and files store, filled."""
    keys = make_account_keys(path / "keys", account="bench")
    keys.create()
    (path / "store").mkdir(mode=0o700, parents=True)
    store = FilesStore(binding=StoreBinding("bench", "notes", path / "store", keys))
    keys.ensure(*store.key_purposes)
    if batched:
        store.put_many(items)
    else:
        for name, value in items:
            store.put(name, value)
    return store


def close(target: object) -> None:  # a database, or a files store and its account's keys
    assert isinstance(target, FilesStore | sqlite3.Connection)
    target.close()
    if isinstance(target, FilesStore):
        target.binding.keys.close()


class Filled:
    """A files store and a sqlite3 database holding ``count`` records, written once."""

    def __init__(self, directory: Path, count: int) -> None:
        self.count, self.path = count, directory / "filled.sqlite"
        self.items = {f"record-{index:06d}": VALUE for index in range(count)}
        self.store = strongroom_put(directory, self.items.items(), True)
        self.db = sqlite_put(self.path, self.items.items(), True)

    def rotate(self) -> None:  # a new primary: everything is now due for re-encryption
        self.store.binding.keys.rotate(self.store.binding.purpose)

    def run(self, op: str, subject: str) -> object:
        if subject == "sqlite" and op == "get":
            get = "SELECT value FROM records WHERE name = ?"
            return [self.db.execute(get, (name,)).fetchone() for name in self.items]
        if subject == "sqlite" and op == "list":
            return self.db.execute("SELECT name FROM records").fetchall()
        if subject == "sqlite":  # re-encrypt: every row read and rewritten, no cryptography
            rows = self.db.execute("SELECT * FROM records").fetchall()
            sqlite_put(self.path, rows, True).close()
            return rows
        if op == "get":
            return [self.store.get(name) for name in self.items]
        return list(self.store.keys() if op == "list" else self.store.reencrypt())


@pytest.fixture(scope="module", params=[0, 1, 2], ids=["1k", "10k", "100k"])
def filled(
    request: pytest.FixtureRequest, sizes: Sizes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Filled]:
    if request.param >= len(sizes.store_counts):
        pytest.skip("100k records only in the full run")
    made = Filled(tmp_path_factory.mktemp("filled"), sizes.store_counts[request.param])
    assert made.store.get("record-000000") == VALUE
    assert len(list(made.store.keys())) == made.count
    yield made
    close(made.store)
    made.db.close()


#: (operation, subject): four ways to put, then strongroom and sqlite for the rest.
CASES = [("put", f"strongroom {way}") for way in ("put", "put_many")]
CASES += [("put", f"sqlite WAL {way}") for way in ("autocommit", "one transaction")]
CASES += [(op, s) for op in ("get", "list", "re-encrypt") for s in ("strongroom", "sqlite")]


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the put rounds write, each into a new directory; removed only after the module.

    On ext4 without a journal every inode freed in the last minutes slows each one created
    after it: put_many ran 5-9x slower right after the single puts' store was removed.
    """
    made = tmp_path_factory.mktemp("put-targets")
    yield made
    shutil.rmtree(made)


@pytest.mark.parametrize(("op", "subject"), CASES)
def test_store(
    benchmark: BenchmarkFixture, targets: Path, filled: Filled, op: str, subject: str
) -> None:
    benchmark.group = f"store: {op} {filled.count:,}"
    benchmark.extra_info.update(subject=subject, ops=filled.count)
    if op == "put":  # into a new account or database, whose opening is timed too: a few ms
        put = strongroom_put if subject.startswith("strongroom") else sqlite_put
        batched = subject.endswith(("put_many", "transaction"))

        def fresh() -> tuple[tuple[object, ...], dict[str, object]]:
            return (Path(tempfile.mkdtemp(dir=targets)) / "db", filled.items.items(), batched), {}

        close(pedantic(benchmark, put, setup=fresh))
    elif op == "re-encrypt":  # strongroom: a new primary first
        benchmark.extra_info["bytes"] = filled.count * len(VALUE)
        pedantic(benchmark, filled.run, op, subject, setup=filled.rotate)
    else:
        pedantic(benchmark, filled.run, op, subject, rounds=1 if filled.count > 10_000 else 3)


@pytest.fixture(scope="module")
def blob(sizes: Sizes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blob]:
    store = strongroom_put(tmp_path_factory.mktemp("blob"), (), True)
    plain = os.urandom(sizes.blob)
    store.put_blob("big", (plain[i : i + MiB] for i in range(0, len(plain), MiB)))
    assert b"".join(store.get_blob("big")) == plain
    yield store, plain
    close(store)


@pytest.mark.parametrize("subject", ["whole blob", "4 KiB ranged read"])
def test_blob_read(benchmark: BenchmarkFixture, blob: Blob, subject: str) -> None:
    (store, plain), whole, offsets = blob, subject == "whole blob", random.Random(8)
    assert store.get_blob_range("big", 5000, 4096) == plain[5000:9096]
    benchmark.group = f"store: read a {len(plain) >> 20} MiB blob"
    benchmark.extra_info.update(subject=subject, bytes=len(plain) if whole else 4096)
    if whole:
        benchmark(lambda: sum(len(chunk) for chunk in store.get_blob("big")))
    else:
        benchmark(lambda: store.get_blob_range("big", offsets.randrange(len(plain) - 4096), 4096))
