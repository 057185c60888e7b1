"""Managed connections: ``open_database``, the SQLAlchemy engine, the guide, re-keys under them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.exc
import sqlcipher3.dbapi2 as sqlcipher
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from strongroom import Strongroom, parse_config
from strongroom.errors import KeyLockedError, UsageError
from strongroom_contrib.sqlalchemy import create_engine
from strongroom_plugins.sqlcipher._app import DatabaseKeyError

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "databases.md"
PASSPHRASE = "correct horse battery staple"  # noqa: S105 - a test's own


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.M | re.S)


def test_the_databases_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(GUIDE)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "databases_guide"}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{GUIDE.name}, block {number}", "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - the project's own documentation
    assert (
        tmp_path / "app-data" / "accounts" / "alice" / "stores" / "vault" / "store.db"
    ).is_file()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Strongroom]:
    config = parse_config(
        {
            "strongroom": {"data_dir": str(tmp_path / "data"), "account": "alice"},
            "stores": {"vault": {"use": "sqlcipher"}, "notes": {"use": "files"}},
        },
        source="test",
        environ={},
    )
    with Strongroom(config, secrets={"main": PASSPHRASE}) as built:
        built.initialise()
        yield built


class Base(DeclarativeBase):
    pass


class Visit(Base):
    __tablename__ = "visits"
    id: Mapped[int] = mapped_column(primary_key=True)
    page: Mapped[str] = mapped_column(String(200))


def test_open_database_round_trip_beside_the_store(stack: Strongroom) -> None:
    vault = stack.store("vault")
    vault.put("k", b"store value")
    conn = stack.open_database("vault")
    try:
        conn.execute("CREATE TABLE mine (x TEXT)")
        conn.execute("INSERT INTO mine VALUES ('app row')")
        conn.rollback()  # DB-API transactions: the insert is undone
        assert conn.execute("SELECT count(*) FROM mine").fetchone() == (0,)
        conn.execute("INSERT INTO mine VALUES ('app row')")
        conn.commit()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema")}
        assert {"strongroom_records", "mine"} <= tables
    finally:
        conn.close()
    assert vault.get("k") == b"store value"
    assert vault.versions_in_use() == {1: 1}
    with open(vault.database_path, "rb") as handle:  # type: ignore[attr-defined]
        assert b"app row" not in handle.read()


def test_open_database_on_a_store_without_one_is_a_usage_error(stack: Strongroom) -> None:
    with pytest.raises(UsageError, match="'notes' \\(files\\) keeps no database"):
        stack.open_database("notes")


def test_open_database_while_locked(stack: Strongroom) -> None:
    stack.keys.lock()
    with pytest.raises(KeyLockedError):
        stack.open_database("vault")


def test_a_connection_says_the_store_was_rekeyed(stack: Strongroom) -> None:
    vault = stack.store("vault")
    conn = stack.open_database("vault")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    stack.keys.rotate(vault.binding.purpose)
    list(vault.reencrypt())
    for attempt in (
        lambda: conn.execute("SELECT * FROM t"),
        lambda: conn.cursor().execute("INSERT INTO t VALUES (1)"),
        lambda: conn.executemany("INSERT INTO t VALUES (?)", [(1,)]),
    ):
        with pytest.raises(
            DatabaseKeyError, match=r"'vault' was re-keyed .*open a new one"
        ) as info:
            attempt()
        assert info.value.rekeyed
        assert isinstance(info.value, sqlcipher.DatabaseError)
    conn.close()
    fresh = stack.open_database("vault")
    assert fresh.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert "vault" in repr(fresh)
    assert "x'" not in repr(fresh)
    fresh.close()


def test_a_rekey_waits_for_an_app_writer_then_fails_clearly(tmp_path: Path) -> None:
    config = parse_config(
        {
            "strongroom": {"data_dir": str(tmp_path / "data"), "account": "alice"},
            "stores": {"vault": {"use": "sqlcipher", "busy_timeout": 0.2}},
        },
        source="test",
        environ={},
    )
    with Strongroom(config, secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
        vault = stack.store("vault")
        vault.put("k", b"v")
        stack.keys.rotate(vault.binding.purpose)
        writer = stack.open_database("vault")
        writer.execute("CREATE TABLE t (x)")
        writer.commit()
        writer.execute("INSERT INTO t VALUES (1)")  # an open write transaction
        from strongroom_plugins.sqlcipher.store import StoreBusyError

        with pytest.raises(StoreBusyError, match="store 'vault' is busy") as info:
            list(vault.reencrypt())
        assert "database is locked" not in str(info.value)
        assert vault.versions_in_use() == {1: 1}  # nothing changed
        writer.commit()
        list(vault.reencrypt())  # the writer is done: the re-key goes through
        assert vault.versions_in_use() == {2: 1}
        assert writer.execute("SELECT 1").fetchone() == (1,)  # needs no page: still answers
        with pytest.raises(DatabaseKeyError):
            writer.execute("SELECT count(*) FROM t")
        fresh = stack.open_database("vault")
        assert fresh.execute("SELECT count(*) FROM t").fetchone() == (1,)  # the commit held
        fresh.close()
        writer.close()


def test_sqlalchemy_orm_round_trip_and_rekey(stack: Strongroom) -> None:
    engine = create_engine(stack, "vault")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Visit(page="/a"), Visit(page="/b")])
        session.commit()
    vault = stack.store("vault")
    stack.keys.rotate(vault.binding.purpose)
    list(vault.reencrypt())
    with Session(engine) as session, pytest.raises(sqlalchemy.exc.DatabaseError, match="re-keyed"):
        session.scalars(select(Visit.page)).all()
    with Session(engine) as session:  # the pool was dropped: a new connection, the new key
        assert sorted(session.scalars(select(Visit.page))) == ["/a", "/b"]
        session.add(Visit(page="/c"))
        session.commit()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM visits")).scalar() == 3
    engine.dispose()


def test_create_engine_refuses_its_own_arguments(stack: Strongroom) -> None:
    with pytest.raises(UsageError, match="creator"):
        create_engine(stack, "vault", creator=lambda: None)
    with pytest.raises(UsageError, match="keeps no database"):
        create_engine(stack, "notes")
