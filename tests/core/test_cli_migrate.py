"""Importing a plaintext SQLite database into an encrypted one: the steps ``migrate`` takes.

These drive :mod:`strongroom.cli.migrate` on a real SQLCipher database
keyed with a raw key, as the ``sqlcipher`` store keys its own (its tables
beside), without the rest of the stack; ``test_cli_migrate_command.py``
runs the command itself.  The sources are real SQLite files written by
another SQLite (the standard library's), some left with an uncheckpointed
write-ahead log or a hot rollback journal by a writer that never closed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_sources import (
    APP_NAMES,
    CANARY_BLOB,
    CANARY_TEXT,
    LATE_CANARY,
    dump,
    make_source,
    read_plaintext,
)

from strongroom.cli import migrate
from strongroom.errors import IntegrityError, StoreError, UsageError

sqlcipher = pytest.importorskip("sqlcipher3.dbapi2")
from strongroom_plugins.sqlcipher.connection import connect  # noqa: E402

KEY = bytes(range(32))


def open_target(path: Path) -> Any:
    """The encrypted database as the store keeps it: WAL mode, a table of its own."""
    conn = connect(path, KEY)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS strongroom_records (key TEXT PRIMARY KEY, value)")
    conn.execute("INSERT OR REPLACE INTO strongroom_records VALUES ('k', x'00')")
    return conn


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Any]:
    conn = open_target(tmp_path / "store.db")
    yield conn
    conn.close()


def app_objects(conn: Any) -> set[str]:
    rows = conn.execute("SELECT name FROM main.sqlite_schema WHERE name NOT LIKE 'sqlite_%'")
    return {name for (name,) in rows} - {
        "strongroom_records",
        "sqlite_autoindex_strongroom_records_1",
    }


def siblings(path: Path) -> list[Path]:
    return [p for p in (Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal")) if p.exists()]


def assert_no_plaintext_in(*files: Path) -> None:
    for file in files:
        if file.exists():
            data = file.read_bytes()
            for canary in (CANARY_TEXT.encode(), CANARY_BLOB[:16], LATE_CANARY.encode()):
                assert canary not in data, f"{canary!r} in {file}"


@pytest.mark.parametrize("mode", ["plain", "wal", "hot-journal"])
def test_a_database_round_trips_with_its_schema_and_every_row(
    tmp_path: Path, target: Any, mode: str
) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source, mode)
    if mode == "wal":  # the last row lives only in the uncheckpointed log
        assert LATE_CANARY.encode() not in source.read_bytes()
        assert LATE_CANARY.encode() in Path(f"{source}-wal").read_bytes()
    if mode == "hot-journal":
        assert Path(f"{source}-journal").stat().st_size > 0

    counts = migrate._migrate(target, source, "vault", removing=True)

    people = 6 if mode == "wal" else 5
    assert counts == {"people": people, "events": 18, "tags": 3, "audit": people + 1}
    assert not source.exists()
    assert siblings(source) == []
    assert dump(target) == expected
    assert app_objects(target) == set(APP_NAMES)
    assert target.execute("SELECT value FROM strongroom_records").fetchall() == [(b"\x00",)]
    # the trigger, the generated column and the AUTOINCREMENT counter came along
    target.execute("INSERT INTO people(name) VALUES ('new')")
    new_id = 8 if mode == "wal" else 7  # never 6, deleted in the source
    assert target.execute("SELECT id, shout FROM people WHERE name = 'new'").fetchone() == (
        new_id,
        "NEW",
    )
    assert target.execute("SELECT what FROM audit ORDER BY rowid DESC").fetchone() == ("added new",)
    assert target.execute("PRAGMA cipher_integrity_check").fetchall() == []
    store = tmp_path / "store.db"
    assert Path(f"{store}-wal").stat().st_size > 0  # the scan below covers the log
    assert_no_plaintext_in(store, Path(f"{store}-wal"), Path(f"{store}-shm"))


def test_keep_plaintext_leaves_the_source_as_it_was(tmp_path: Path, target: Any) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source, "wal")
    migrate._migrate(target, source, "vault", removing=False)
    assert dump(target) == expected
    assert read_plaintext(source) == expected


def test_a_name_the_target_has_is_refused_and_nothing_is_written(
    tmp_path: Path, target: Any
) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source)
    target.execute("CREATE TABLE Tags(x)")  # names are case-insensitive
    with pytest.raises(UsageError, match="store 'vault' already has 'tags'; nothing was migrated"):
        migrate._migrate(target, source, "vault", removing=True)
    assert app_objects(target) == {"Tags"}
    assert read_plaintext(source) == expected


def test_reserved_names_and_virtual_tables_are_refused(tmp_path: Path, target: Any) -> None:
    reserved, virtual = tmp_path / "reserved.db", tmp_path / "virtual.db"
    conn = sqlcipher.connect(str(reserved))
    conn.execute("CREATE TABLE strongroom_records_copy(x)")
    conn.close()
    conn = sqlcipher.connect(str(virtual))
    conn.execute("CREATE VIRTUAL TABLE notes USING fts5(body)")
    conn.close()
    with pytest.raises(UsageError, match="reserves"):
        migrate._migrate(target, reserved, "vault", removing=True)
    with pytest.raises(UsageError, match="virtual table 'notes' cannot be migrated"):
        migrate._migrate(target, virtual, "vault", removing=True)
    assert reserved.exists()
    assert virtual.exists()
    assert app_objects(target) == set()


def test_an_encrypted_or_empty_source_is_refused(tmp_path: Path, target: Any) -> None:
    other = tmp_path / "other.db"
    conn = connect(other, bytes(32))
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(UsageError, match="is not a plaintext SQLite database"):
        migrate._migrate(target, other, "vault", removing=True)
    with pytest.raises(UsageError, match="holds no table: nothing to migrate"):
        migrate._migrate(target, empty, "vault", removing=True)
    assert other.exists()
    assert empty.exists()


def test_a_damaged_source_is_refused_before_anything_is_written(
    tmp_path: Path, target: Any
) -> None:
    source = tmp_path / "app.db"
    make_source(source, rows=50)
    conn = sqlcipher.connect(str(source))
    (root,) = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'events'").fetchone()
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with source.open("r+b") as file:  # the table's root page, its header and cell pointers
        file.seek((root - 1) * page_size)
        file.write(os.urandom(64))
    with pytest.raises((IntegrityError, StoreError)):
        migrate._migrate(target, source, "vault", removing=True)
    assert app_objects(target) == set()
    assert source.exists()


def test_a_source_another_process_writes_to_is_kept(tmp_path: Path, target: Any) -> None:
    """A write slipped in between the import and the removal: the plaintext stays."""
    source = tmp_path / "app.db"
    make_source(source)
    writer = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()"
    )

    def write_meanwhile(step: str) -> None:
        if step == "verified":
            import subprocess
            import sys

            insert = "INSERT INTO tags VALUES ('z', 1)"
            subprocess.run([sys.executable, "-c", writer, source, insert], check=True, timeout=30)

    original = migrate.reached
    migrate.reached = write_meanwhile
    try:
        with pytest.raises(StoreError, match=r"another process wrote to .* was kept"):
            migrate._migrate(target, source, "vault", removing=True)
    finally:
        migrate.reached = original
    assert ["z", 1] in read_plaintext(source)["tags"]


def test_a_run_after_a_kill_past_the_commit_finishes_the_job(tmp_path: Path, target: Any) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source, "wal")
    migrate._migrate(target, source, "vault", removing=False)
    counts = migrate._migrate(target, source, "vault", removing=True)
    assert counts["people"] == 6
    assert dump(target) == expected
    assert not source.exists()


def test_awkward_names_and_a_column_called_rowid_round_trip(tmp_path: Path, target: Any) -> None:
    source = tmp_path / "odd.db"
    conn = sqlcipher.connect(str(source), isolation_level=None)
    conn.execute('CREATE TABLE "select" ("rowid" TEXT, "a ""quoted"" col" BLOB)')
    conn.execute('INSERT INTO "select" VALUES (?, ?)', ("r1", b"\x00"))
    conn.execute('INSERT INTO "select" VALUES (NULL, NULL)')
    conn.execute('DELETE FROM "select" WHERE "rowid" = ?', ("r1",))  # real rowid 2 is left
    conn.execute('CREATE INDEX "my index" ON "select" ("a ""quoted"" col")')
    conn.close()
    assert migrate._migrate(target, source, "vault", removing=True) == {"select": 1}
    rows = target.execute('SELECT _rowid_, "rowid", "a ""quoted"" col" FROM "select"').fetchall()
    assert rows == [(2, None, None)]
    assert {"select", "my index"} <= app_objects(target)
