"""The files store against plain sqlite3: put, get, list, re-encrypt at 1k, 10k, 100k records.

sqlite3 keeps the same 1 KiB records in one WAL-mode table, written one
autocommitted statement at a time or in one transaction.  strongroom writes
through ``put_many`` when the store has it, and reads ranges of a blob
through whichever ranged read it has (``ranged_reader``).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench._subjects import Account, Sizes, make_file, pedantic, put_all

VALUE = os.urandom(1024)


def sqlite_put(path: Path, items: dict[str, bytes], *, batched: bool) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)  # autocommit: a commit per statement
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS records (name TEXT PRIMARY KEY, value BLOB)")
    if batched:
        db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?)", items.items())
    if batched:
        db.execute("COMMIT")
    return db


def strongroom_put(path: Path, items: dict[str, bytes], *, bulk: bool) -> Account:
    account = Account.create(path)
    if bulk:
        put_all(account.store, items)
    else:
        for name, value in items.items():
            account.store.put(name, value)
    return account


PUTS: dict[str, Callable[[Path, dict[str, bytes]], Account | sqlite3.Connection]] = {
    "strongroom put": lambda path, items: strongroom_put(path, items, bulk=False),
    "strongroom put_many": lambda path, items: strongroom_put(path, items, bulk=True),
    "sqlite WAL autocommit": lambda path, items: sqlite_put(path, items, batched=False),
    "sqlite WAL one transaction": lambda path, items: sqlite_put(path, items, batched=True),
}


class Filled:
    """One account and one sqlite3 database holding ``count`` records, written once."""

    def __init__(self, directory: Path, count: int) -> None:
        directory.mkdir()
        self.count = count
        self.items = {f"record-{index:06d}": VALUE for index in range(count)}
        self.account = strongroom_put(directory / "account", self.items, bulk=True)
        self.db = sqlite_put(directory / "filled.sqlite", self.items, batched=True)
        store, db = self.account.store, self.db
        self.runs: dict[tuple[str, str], Callable[[], object]] = {
            ("get", "strongroom"): lambda: [store.get(name) for name in self.items],
            ("get", "sqlite"): lambda: [
                db.execute("SELECT value FROM records WHERE name = ?", (name,)).fetchone()
                for name in self.items
            ],
            ("list", "strongroom"): lambda: list(store.keys()),
            ("list", "sqlite"): lambda: db.execute("SELECT name FROM records").fetchall(),
            ("re-encrypt", "strongroom"): lambda: list(store.reencrypt()),
            ("re-encrypt", "sqlite"): lambda: sqlite_put(
                directory / "filled.sqlite", dict(db.execute("SELECT * FROM records")), batched=True
            ).close(),
        }


@pytest.fixture(scope="module", params=[0, 1, 2], ids=["1k", "10k", "100k"])
def filled(request: pytest.FixtureRequest, sizes: Sizes, work: Path) -> Iterator[Filled]:
    if request.param >= len(sizes.store_counts):
        pytest.skip("100k records only in the full run")
    made = Filled(work / f"filled-{request.param}", sizes.store_counts[request.param])
    assert made.account.store.get("record-000000") == VALUE
    assert len(list(made.account.store.keys())) == made.count
    yield made
    made.account.close()
    made.db.close()


@pytest.mark.parametrize("subject", PUTS)
def test_put(benchmark: BenchmarkFixture, filled: Filled, work: Path, subject: str) -> None:
    if subject.endswith("put_many") and not hasattr(filled.account.store, "put_many"):
        pytest.skip("the files store has no put_many yet")
    target = work / "put-target"

    def empty() -> None:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()

    # Opening a new account or database is timed too: a few ms, next to 1k+ writes.
    benchmark.group = f"store: put {filled.count:,}"
    benchmark.extra_info.update(subject=subject, ops=filled.count)
    pedantic(benchmark, PUTS[subject], target / "db", filled.items, setup=empty).close()
    shutil.rmtree(target)


@pytest.mark.parametrize(
    ("op", "subject"),
    [(op, subject) for op in ("get", "list", "re-encrypt") for subject in ("strongroom", "sqlite")],
)
def test_read(benchmark: BenchmarkFixture, filled: Filled, op: str, subject: str) -> None:
    benchmark.group = f"store: {op} {filled.count:,}"
    benchmark.extra_info.update(subject=subject, ops=filled.count)
    if op == "re-encrypt":  # strongroom: a new primary first; sqlite rewrites rows, no crypto
        benchmark.extra_info["bytes"] = filled.count * len(VALUE)
        pedantic(benchmark, filled.runs[op, subject], setup=filled.account.rotate)
    else:
        pedantic(benchmark, filled.runs[op, subject], rounds=1 if filled.count > 10_000 else 3)


def ranged_reader(store: Any, key: str) -> Callable[[int, int], bytes] | None:
    """The store's ranged read, whichever shape it has, or None before it has one."""
    if hasattr(store, "open_blob"):
        reader = store.open_blob(key)
        return lambda offset, length: bytes(reader.read_at(offset, length))
    if "offset" in inspect.signature(store.get_blob).parameters:
        return lambda offset, length: b"".join(store.get_blob(key, offset, length))
    return None


@pytest.fixture(scope="module")
def blob(sizes: Sizes, work: Path) -> Iterator[tuple[Account, bytes]]:
    account = Account.create(work / "blob")
    plain = make_file(work / "blob.plain", sizes.blob).read_bytes()
    account.store.put_blob("big", (plain[i : i + (1 << 20)] for i in range(0, len(plain), 1 << 20)))
    digest = hashlib.sha256()
    for chunk in account.store.get_blob("big"):
        digest.update(chunk)
    assert digest.digest() == hashlib.sha256(plain).digest()
    yield account, plain
    account.close()


@pytest.mark.parametrize("subject", ["whole blob", "4 KiB ranged read"])
def test_blob_read(benchmark: BenchmarkFixture, blob: tuple[Account, bytes], subject: str) -> None:
    (account, plain), whole = blob, subject == "whole blob"
    read = ranged_reader(account.store, "big")
    if not whole and read is None:
        pytest.skip("the store has no ranged read yet")
    offsets = iter(random.Random(8).randrange(len(plain) - 4096) for _ in range(10**6))
    benchmark.group = f"store: read a {len(plain) >> 20} MiB blob"
    benchmark.extra_info.update(subject=subject, bytes=len(plain) if whole else 4096)
    if whole:
        benchmark(lambda: sum(len(chunk) for chunk in account.store.get_blob("big")))
    elif read is not None:
        assert read(5000, 4096) == plain[5000:9096]
        benchmark(lambda: read(next(offsets), 4096))
