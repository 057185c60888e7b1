"""Copy a plaintext SQLite database into an encrypted one: one transaction on the target.

The plaintext file is attached to the target's connection (``KEY ''``), so
one SQLite library reads both and its locks hold across them.  Tables are
created from the plaintext schema and filled with ``INSERT ... SELECT``
(rowids kept), then indexes, views and triggers follow, all inside one
``BEGIN IMMEDIATE`` transaction that also keeps other writers off the
plaintext file.  Killed at any point, SQLite's own journal leaves the
target as it was or fully imported; the plaintext is only read.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.errors import IntegrityError, StoreError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

#: The schema name the plaintext database is attached under.
SOURCE = "plaintext"
#: Table names the target reserves for the store's own tables.
RESERVED_PREFIX = "strongroom_"
#: What happened when a step after the import's commit fails.
KEPT = "the import is committed, the plaintext was kept"


@dataclass(frozen=True)
class SchemaObject:
    """One row of ``sqlite_schema``."""

    type: str
    name: str
    sql: str


@dataclass
class Schema:
    """What is imported: tables first, then indexes, views and triggers in creation order."""

    tables: list[SchemaObject] = field(default_factory=list)
    others: list[SchemaObject] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [item.name for item in [*self.tables, *self.others]]


def quoted(name: str) -> str:
    """``name`` as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


#: SQLite's primary result codes the messages below tell apart.
_BUSY, _LOCKED, _IOERR, _CORRUPT, _FULL, _NOT_A_DATABASE = 5, 6, 10, 11, 13, 26


@contextlib.contextmanager
def sql_errors(conn: Any, doing: str, then: str = "nothing was migrated") -> Iterator[None]:
    """SQLite's errors while ``doing`` something, as a :class:`StoreError` naming it and ``then``.

    Only SQLite's error name is kept, never its message, which can quote
    the schema.
    """
    try:
        yield
    except conn.Error as exc:
        code = int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if code in (_BUSY, _LOCKED):
            reason = "another process holds it locked; close it and try again"
        elif code == _FULL:
            reason = "the disk is full"
        elif code == _IOERR:
            reason = "a write or read failed (a full disk, a file size limit, an I/O error)"
        else:
            reason = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        raise StoreError(f"{doing} failed: {reason}; {then}") from None


def attach(conn: Any, path: Path) -> None:
    """Attach ``path`` as plaintext; reading it runs SQLite's recovery of a hot journal.

    :raises UsageError: SQLite cannot read it as a plaintext database.
    """
    # absolute: SQLite (built with SQLITE_USE_URI) reads a name starting "file:" as a URI,
    # which can name another file than the one checked and later removed
    try:
        conn.execute(f"ATTACH DATABASE ? AS {SOURCE} KEY ''", (os.path.abspath(path),))
        conn.execute(f"SELECT count(*) FROM {SOURCE}.sqlite_schema").fetchone()  # noqa: S608
    except conn.DatabaseError as exc:
        code = int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if _attached(conn):
            conn.execute(f"DETACH DATABASE {SOURCE}")
        if code in (_NOT_A_DATABASE, _CORRUPT):
            raise UsageError(f"{path} is not a plaintext SQLite database") from None
        with sql_errors(conn, f"opening {path}"):
            raise


def _attached(conn: Any) -> bool:
    return any(row[1] == SOURCE for row in conn.execute("PRAGMA database_list"))


def read_schema(conn: Any, path: Path) -> Schema:
    """The plaintext schema, SQLite's internal tables left out.

    :raises UsageError: it holds no table, or a virtual table (full-text
        search and the like), whose storage cannot be copied as rows.
    """
    schema = Schema()
    query = f"SELECT type, name, sql FROM {SOURCE}.sqlite_schema ORDER BY rowid"  # noqa: S608
    rows = conn.execute(query).fetchall()
    for kind, name, sql in rows:
        if name.startswith("sqlite_") or sql is None:  # sequences, statistics, autoindexes
            continue
        if kind == "table" and sql.upper().startswith("CREATE VIRTUAL TABLE"):
            raise UsageError(
                f"{path}: virtual table {name!r} cannot be migrated (its storage is not rows); "
                "drop it, migrate, and recreate it in the store"
            )
        target = schema.tables if kind == "table" else schema.others
        target.append(SchemaObject(kind, name, sql))
    if not schema.tables:
        raise UsageError(f"{path} holds no table: nothing to migrate")
    return schema


def refuse_collisions(conn: Any, schema: Schema, store: str) -> None:
    """:raises UsageError: a name is reserved, or the target has it already."""
    present = {
        name.lower() for (name,) in conn.execute("SELECT name FROM main.sqlite_schema").fetchall()
    }
    for name in schema.names:
        if name.lower().startswith(RESERVED_PREFIX):
            raise UsageError(f"{name!r} is a name store {store!r} reserves ({RESERVED_PREFIX}*)")
        if name.lower() in present:
            raise UsageError(
                f"store {store!r} already has {name!r}; nothing was migrated "
                "(rename or drop one of them first)"
            )
    for item in [*schema.tables, *schema.others]:
        # a trigger or view naming the store's tables would read or rewrite them once imported
        if RESERVED_PREFIX in item.sql.lower():
            raise UsageError(
                f"{item.type} {item.name!r} refers to {RESERVED_PREFIX}*, which store "
                f"{store!r} reserves; nothing was migrated"
            )


def check_source(conn: Any, path: Path) -> None:
    """:raises IntegrityError: SQLite finds the plaintext database damaged."""
    with sql_errors(conn, f"checking {path}"):
        result = conn.execute(f"PRAGMA {SOURCE}.integrity_check(1)").fetchall()
    if result != [("ok",)]:
        raise IntegrityError(f"{path} fails SQLite's integrity check; nothing was migrated")


def copy(conn: Any, schema: Schema, reached: Callable[[str], None]) -> None:
    """Create and fill every table, then the other objects; the caller holds the transaction."""
    for table in schema.tables:
        with sql_errors(conn, f"creating table {table.name!r}"):
            conn.execute(table.sql)
        columns = [
            row[1]
            for row in conn.execute(f"PRAGMA {SOURCE}.table_xinfo({quoted(table.name)})")
            if row[6] == 0  # generated and hidden columns are computed, not copied
        ]
        rowid = _rowid_alias(conn, table.name, {column.lower() for column in columns})
        names = ", ".join(([rowid] if rowid else []) + [quoted(column) for column in columns])
        with sql_errors(conn, f"copying table {table.name!r}"):
            conn.execute(
                f"INSERT INTO main.{quoted(table.name)} ({names}) "  # noqa: S608 - all quoted
                f"SELECT {names} FROM {SOURCE}.{quoted(table.name)}"
            )
        reached("copying")
    _copy_sequences(conn, schema)
    for item in schema.others:
        with sql_errors(conn, f"creating {item.type} {item.name!r}"):
            conn.execute(item.sql)


def _rowid_alias(conn: Any, table: str, columns: set[str]) -> str | None:
    """A name for the rowid no column shadows; ``None`` for a ``WITHOUT ROWID`` table."""
    rows = conn.execute(f"PRAGMA {SOURCE}.table_list({quoted(table)})").fetchall()
    if rows and rows[0][4]:  # the "wr" column: WITHOUT ROWID
        return None
    return next((alias for alias in ("rowid", "_rowid_", "oid") if alias not in columns), None)


def _copy_sequences(conn: Any, schema: Schema) -> None:
    """Carry ``AUTOINCREMENT`` counters over, so deleted ids are not handed out again."""
    probe = f"SELECT 1 FROM {SOURCE}.sqlite_schema WHERE name = 'sqlite_sequence'"  # noqa: S608
    if not conn.execute(probe).fetchone():
        return
    names = {table.name for table in schema.tables}
    counters = f"SELECT name, seq FROM {SOURCE}.sqlite_sequence"  # noqa: S608
    for name, seq in conn.execute(counters).fetchall():
        if name in names:
            conn.execute("DELETE FROM main.sqlite_sequence WHERE name = ?", (name,))
            conn.execute("INSERT INTO main.sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))


def same_rows(conn: Any, schema: Schema) -> bool:
    """Whether every imported table holds the very rows of the plaintext's, rowids included.

    Compared a row at a time in key order (rowid, or the primary key of a
    ``WITHOUT ROWID`` table), so nothing is held in memory or spilled.
    """
    for table in schema.tables:
        info = conn.execute(f"PRAGMA {SOURCE}.table_xinfo({quoted(table.name)})").fetchall()
        columns = [quoted(row[1]) for row in info if row[6] == 0]
        rowid = _rowid_alias(conn, table.name, {row[1].lower() for row in info if row[6] == 0})
        if rowid:
            order = [rowid]
        else:
            keys = sorted((row[5], row[1]) for row in info if row[5])
            order = [quoted(name) for _, name in keys] or columns
        names = ", ".join(([rowid] if rowid else []) + columns)
        query = "SELECT {} FROM {}.{} ORDER BY {}"
        ours = conn.execute(query.format(names, "main", quoted(table.name), ", ".join(order)))
        theirs = conn.cursor().execute(
            query.format(names, SOURCE, quoted(table.name), ", ".join(order))
        )
        for mine, source in itertools.zip_longest(ours, theirs):
            if mine != source:
                ours.close()
                theirs.close()
                return False
    return True


def row_counts(conn: Any, schema: Schema, database: str) -> dict[str, int]:
    """Rows per imported table in ``database`` (``main`` or the plaintext)."""
    query = "SELECT count(*) FROM {}.{}"
    return {
        table.name: conn.execute(query.format(database, quoted(table.name))).fetchone()[0]
        for table in schema.tables
    }


def verify(conn: Any, schema: Schema, expected: dict[str, int]) -> None:
    """Check the committed target: SQLCipher's page MACs, SQLite's structure, row counts.

    :raises IntegrityError: any of them fails.
    """
    with sql_errors(conn, "verifying the import", KEPT):
        damaged = conn.execute("PRAGMA cipher_integrity_check").fetchall()
        structure = conn.execute("PRAGMA main.integrity_check").fetchall()
        counts = row_counts(conn, schema, "main")
    if damaged:
        raise IntegrityError(f"the encrypted database fails its page check; {KEPT}")
    if structure != [("ok",)]:
        raise IntegrityError(f"the encrypted database fails SQLite's integrity check; {KEPT}")
    if counts != expected:
        wrong = sorted(name for name in expected if counts.get(name) != expected[name])
        raise IntegrityError(f"row counts differ after the import in {', '.join(wrong)}; {KEPT}")
