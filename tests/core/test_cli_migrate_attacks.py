"""Review findings: ``migrate`` must import exactly the file it checks and removes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from strongroom.cli import migrate
from strongroom.errors import UsageError

sqlcipher = pytest.importorskip("sqlcipher3.dbapi2")
from strongroom_plugins.sqlcipher.connection import connect  # noqa: E402

KEY = bytes(range(32))


@pytest.fixture
def target(tmp_path: Path) -> Any:
    conn = connect(tmp_path / "store.db", KEY)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE strongroom_records (key TEXT PRIMARY KEY, value)")
    yield conn
    conn.close()


def plaintext(path: Path, table: str, value: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (x)")  # a test's own names
    conn.execute(f"INSERT INTO {table} VALUES (?)", (value,))  # noqa: S608
    conn.commit()
    conn.close()


def test_a_relative_name_starting_with_file_colon_is_the_file_not_a_uri(
    tmp_path: Path, target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    plaintext(tmp_path / "victim.db", "secret", "other file's plaintext")
    plaintext(tmp_path / "file:victim.db", "named", "the file named on the command line")

    migrate._migrate(target, Path("file:victim.db"), "vault", removing=True)

    names = {row[0] for row in target.execute("SELECT name FROM sqlite_schema")}
    assert "named" in names  # the file checked and removed is the one imported
    assert "secret" not in names
    assert not (tmp_path / "file:victim.db").exists()
    assert (tmp_path / "victim.db").exists()  # never touched


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TRIGGER wipe AFTER INSERT ON notes BEGIN DELETE FROM strongroom_records; END",
        "CREATE TRIGGER forge AFTER INSERT ON notes BEGIN "
        "INSERT INTO Strongroom_Records VALUES ('planted', x'00'); END",
        "CREATE VIEW leak AS SELECT key, value FROM strongroom_records",
    ],
)
def test_an_object_referring_to_the_store_s_tables_is_refused(
    tmp_path: Path, target: Any, statement: str
) -> None:
    source = tmp_path / "app.db"
    plaintext(source, "notes", "n")
    conn = sqlite3.connect(source)
    conn.execute(statement)
    conn.commit()
    conn.close()
    target.execute("INSERT INTO strongroom_records VALUES ('keep', x'01')")

    with pytest.raises(UsageError):
        migrate._migrate(target, source, "vault", removing=True)

    assert source.exists()
    names = {row[0] for row in target.execute("SELECT name FROM sqlite_schema")}
    assert not names & {"notes", "wipe", "forge", "leak"}
    assert target.execute("SELECT key FROM strongroom_records").fetchall() == [("keep",)]


@pytest.mark.parametrize("without_rowid", [False, True])
def test_a_second_run_after_the_plaintext_changed_removes_nothing(
    tmp_path: Path, target: Any, without_rowid: bool
) -> None:
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    suffix = " WITHOUT ROWID" if without_rowid else ""
    conn.execute(f"CREATE TABLE acct (id INTEGER PRIMARY KEY, balance){suffix}")
    conn.execute("INSERT INTO acct VALUES (1, 100), (2, 5)")
    conn.commit()
    migrate._migrate(target, source, "vault", removing=False)  # a trial run
    conn.execute("UPDATE acct SET balance = 999 WHERE id = 1")  # the app goes on writing
    conn.commit()
    conn.close()

    with pytest.raises(UsageError, match="already has"):
        migrate._migrate(target, source, "vault", removing=True)

    assert source.exists()  # the only copy of balance 999
    conn = sqlite3.connect(source)
    assert conn.execute("SELECT balance FROM acct WHERE id = 1").fetchone() == (999,)
    conn.close()


def test_a_second_run_with_the_same_rows_still_finishes(tmp_path: Path, target: Any) -> None:
    source = tmp_path / "app.db"
    plaintext(source, "notes", "n")
    migrate._migrate(target, source, "vault", removing=False)
    migrate._migrate(target, source, "vault", removing=True)
    assert not source.exists()
