"""The sqlcipher store against the same statements through sqlcipher3, sqlite3 and the files store.

100k records of 200 bytes put in one ``put_many`` (10k one at a time: each is a durable commit),
read back and listed.  "sqlcipher3 (raw key)" issues the store's own statements on a database opened
with a raw key and the store's pragmas and holding the store's schema (its tables and the index that
retention reads): what is left between the two is the wrapper.  Opening a store is timed from an
unlocked session with no data key cached (so its unwrapping counts) to its first answer, beside
SQLCipher's own passphrase open (PBKDF2).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlcipher3.dbapi2 as sqlcipher
from pytest_benchmark.fixture import BenchmarkFixture

from bench import Sizes, pedantic
from strongroom.keys import AccountKeys
from strongroom.store import Store, StoreBinding
from strongroom.testing import make_account_keys
from strongroom_plugins.sqlcipher._records import UPSERT_RECORD
from strongroom_plugins.sqlcipher._schema import _TABLES
from strongroom_plugins.sqlcipher.connection import connect
from strongroom_plugins.sqlcipher.store import SqlcipherStore
from strongroom_plugins.stores.files import FilesStore

VALUE = os.urandom(200)
SUBJECTS = ("strongroom sqlcipher", "sqlcipher3 (raw key)", "sqlite3", "strongroom files")
Items = list[tuple[str, bytes]]
Opened = tuple[AccountKeys, Path]  # an account's keys and a closed store's directory
SINGLE_PUTS = 10_000


def new_store(path: Path, kind: type[Store]) -> Store:
    """A new account (strongroom.testing's in-memory provider) and an empty store of ``kind``."""
    keys = make_account_keys(path / "keys", account="bench")
    keys.create()
    (path / "store").mkdir(mode=0o700, parents=True)
    store = kind(binding=StoreBinding("bench", "notes", path / "store", keys))
    keys.ensure(*store.key_purposes)
    return store


def new_database(path: Path, subject: str) -> Any:
    """A database for the store's own statements: sqlite3, or SQLCipher with a raw key."""
    db = sqlite3.connect(path, isolation_level=None) if subject == "sqlite3" else None
    if db is None:
        db = connect(path, os.urandom(32))  # the store's own pragmas
    db.execute("PRAGMA journal_mode = WAL")
    for statement in _TABLES:
        db.execute(statement)
    return db


#: The store's records table and lookup (beside its upsert), issued as they are.
RECORDS_TABLE = next(table for table in _TABLES if "strongroom_records (" in table)
SELECT = "SELECT value, blob FROM strongroom_records WHERE key = ?"


def put(target: Any, items: Items, batched: bool) -> None:
    if isinstance(target, Store):
        if batched:
            target.put_many(items)
        else:
            for name, value in items:
                target.put(name, value)
    elif batched:
        target.execute("BEGIN")
        target.executemany(UPSERT_RECORD, [(name, value, time.time()) for name, value in items])
        target.execute("COMMIT")
    else:
        for name, value in items:
            target.execute(UPSERT_RECORD, (name, value, time.time()))


def get_all(target: Any, items: Items) -> None:
    if isinstance(target, Store):
        for name, _ in items:
            target.get(name)
    else:
        for name, _ in items:
            target.execute(SELECT, (name,)).fetchone()


def list_all(target: Any) -> int:
    if isinstance(target, Store):
        return sum(1 for _ in target.keys())  # noqa: SIM118 - a Store, not a dict
    return len(target.execute("SELECT key FROM strongroom_records ORDER BY key").fetchall())


def close(target: Any) -> None:
    target.close()
    if isinstance(target, Store):
        target.binding.keys.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    made = tmp_path_factory.mktemp("database")
    yield made
    shutil.rmtree(made)


def make(work: Path, subject: str) -> Any:
    path = Path(tempfile.mkdtemp(dir=work))
    if subject.startswith("strongroom"):
        store = new_store(path, SqlcipherStore if subject.endswith("sqlcipher") else FilesStore)
        assert list(store.keys()) == []  # opened here, as the databases are: not timed
        return store
    return new_database(path / "db", subject)


@pytest.fixture(scope="module")
def items(sizes: Sizes) -> Items:
    return [(f"record-{index:06d}", VALUE) for index in range(sizes.database_count)]


@pytest.fixture(scope="module")
def filled(work: Path, items: Items) -> Iterator[dict[str, Any]]:
    """One of each subject holding every record, written in one batch."""
    made = {subject: make(work, subject) for subject in SUBJECTS}
    for target in made.values():
        put(target, items, True)
    yield made
    for target in made.values():
        close(target)


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("way", ["put", "put_many"])
def test_put(benchmark: BenchmarkFixture, work: Path, items: Items, way: str, subject: str) -> None:
    batched = way == "put_many"
    if not batched:  # a commit, and an fsync, per put: 10k give the rate in under a minute
        items = items[:SINGLE_PUTS]
    benchmark.group = f"database: {way} {len(items):,} x {len(VALUE)} B"
    benchmark.extra_info.update(subject=subject, ops=len(items))
    targets: list[Any] = []

    def fresh() -> tuple[tuple[Any, ...], dict[str, Any]]:
        targets.append(make(work, subject))
        return (targets[-1], items, batched), {}

    pedantic(benchmark, put, setup=fresh, rounds=1)
    for target in targets:
        close(target)


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("op", ["get", "list"])
def test_read(
    benchmark: BenchmarkFixture, filled: dict[str, Any], items: Items, op: str, subject: str
) -> None:
    benchmark.group = f"database: {op} {len(items):,}"
    benchmark.extra_info.update(subject=subject, ops=len(items))
    target = filled[subject]
    if op == "list":
        assert pedantic(benchmark, list_all, target, rounds=3) == len(items)
    else:
        pedantic(benchmark, get_all, target, items, rounds=1)


@pytest.fixture(scope="module")
def opened(work: Path) -> Iterator[Opened]:
    """An account and a sqlcipher store holding one record, closed, and a passphrase database."""
    store = new_store(Path(tempfile.mkdtemp(dir=work)), SqlcipherStore)
    store.put("k", VALUE)
    store.close()
    db = sqlcipher.connect(str(work / "passphrase.db"))
    db.execute("PRAGMA key = 'correct horse battery staple'")
    db.execute(RECORDS_TABLE)
    db.close()
    yield store.binding.keys, store.binding.directory
    store.binding.keys.close()


def open_store(keys: AccountKeys, directory: Path) -> None:
    store = SqlcipherStore(binding=StoreBinding("bench", "notes", directory, keys))
    assert store.get("k") == VALUE
    store.close()


def open_with_passphrase(path: Path) -> None:
    db = sqlcipher.connect(str(path))
    db.execute("PRAGMA key = 'correct horse battery staple'")
    db.execute("SELECT count(*) FROM strongroom_records").fetchone()
    db.close()


@pytest.mark.parametrize("subject", ["strongroom sqlcipher store", "SQLCipher passphrase key"])
def test_open(
    benchmark: BenchmarkFixture, sizes: Sizes, work: Path, opened: Opened, subject: str
) -> None:
    keys, directory = opened
    benchmark.group = "database: open a store"
    benchmark.extra_info.update(subject=subject)
    if subject.startswith("strongroom"):

        def relock() -> None:
            keys.lock()  # drops every cached data key; the master key comes back at once
            keys.unlock()

        pedantic(benchmark, open_store, keys, directory, setup=relock, rounds=sizes.cli_rounds * 5)
    else:
        pedantic(benchmark, open_with_passphrase, work / "passphrase.db", rounds=sizes.cli_rounds)
