"""``strongroom migrate PLAINTEXT.db --to STORE``: a plaintext SQLite database, encrypted.

Steps, each safe to interrupt: check the file; attach it to the store's
database and import it in one transaction (:mod:`._sqlite_import`);
verify the committed result; then, holding the plaintext's write lock so
nobody writes to it meanwhile, fold its write-ahead log into the file and
remove its siblings and then the file itself.  Killed before the last
removal, the plaintext is whole and readable; the target is as it was
before the commit and fully imported after it.  Run again after such a
kill, the command finds the import done, verifies it and finishes.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.cli import _sqlite_import as imports
from strongroom.cli._database import database_store
from strongroom.cli._output import emit
from strongroom.cli._plaintext import ERASURE_WARNING, check_plaintext, remove_plaintext
from strongroom.cli._session import opened
from strongroom.errors import StoreError

if TYPE_CHECKING:
    import argparse


def reached(step: str) -> None:
    """Called at each named step; does nothing (crash tests stop the process here)."""


def run(args: argparse.Namespace) -> int:
    """Import, verify, then remove the plaintext unless ``--keep-plaintext``."""
    path = Path(args.source)
    removing = not args.keep_plaintext
    check_plaintext(path, removing=removing)  # before anything is unlocked
    with opened(args) as stack:
        store = database_store(stack, args.to)
        target = store.database_path
        conn = store.connect()
        try:
            result = _migrate(conn, path, args.to, removing=removing)
        except conn.Error as exc:  # one the steps do not name: a re-key meanwhile, say
            raise _unexpected(exc, path, args.to) from None
        finally:
            conn.close()
    tables, rows = len(result), sum(result.values())
    line = f"migrated {tables} table(s), {rows} row(s), from {path} into store {args.to!r}"
    if removing:
        line += f"; removed {path}"
        _warn(f"{ERASURE_WARNING}; {path} was deleted, not overwritten")
    else:
        _warn(f"{path} was kept and still holds the data unencrypted")
    data = {
        "store": args.to,
        "database": str(target),
        "source": str(path),
        "tables": result,
        "removed": removing,
    }
    emit(args, data, [line])
    return 0


def _migrate(conn: Any, path: Path, store: str, *, removing: bool) -> dict[str, int]:
    """Import and verify; returns rows per table."""
    conn.isolation_level = None  # transactions are this module's, explicit
    conn.execute("PRAGMA foreign_keys = OFF")  # rows arrive table by table
    conn.execute("PRAGMA temp_store = MEMORY")  # sorting for indexes spills no plaintext
    imports.attach(conn, path)
    try:
        return _import(conn, path, store, removing=removing)
    finally:
        # closed already if the account locked meanwhile: its error is the one to report
        with contextlib.suppress(conn.ProgrammingError):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute(f"DETACH DATABASE {imports.SOURCE}")


def _import(conn: Any, path: Path, store: str, *, removing: bool) -> dict[str, int]:
    reached("attached")
    version = _data_version(conn)  # before anything is read: a write from here on keeps it
    schema = imports.read_schema(conn, path)
    done = _already_imported(conn, schema)
    if not done:
        imports.refuse_collisions(conn, schema, store)
    imports.check_source(conn, path)
    with imports.sql_errors(conn, f"locking {path} and the store's database"):
        conn.execute("BEGIN IMMEDIATE")
    if not done:
        imports.copy(conn, schema, reached)
    expected = imports.row_counts(conn, schema, imports.SOURCE)
    if imports.row_counts(conn, schema, "main") != expected:
        raise StoreError(f"row counts differ after copying {path}; nothing was migrated")
    reached("copied")
    with imports.sql_errors(conn, "committing the import"):
        conn.execute("COMMIT")
    reached("committed")
    imports.verify(conn, schema, expected)
    reached("verified")
    if removing:
        _remove(conn, path, version)
    return expected


def _already_imported(conn: Any, schema: imports.Schema) -> bool:
    """Whether a run killed after its commit imported exactly this schema and these rows."""
    ours = dict(conn.execute("SELECT name, sql FROM main.sqlite_schema").fetchall())
    wanted = {item.name: item.sql for item in [*schema.tables, *schema.others]}
    if any(ours.get(name) != sql for name, sql in wanted.items()):
        return False
    main = imports.row_counts(conn, schema, "main")
    if main != imports.row_counts(conn, schema, imports.SOURCE):
        return False
    # equal counts are not the same rows: the plaintext may have been written since an
    # earlier --keep-plaintext run, and removing it would lose those writes
    return imports.same_rows(conn, schema)


def _data_version(conn: Any) -> int:
    """Changes when another connection commits to the plaintext file."""
    value: int = conn.execute(f"PRAGMA {imports.SOURCE}.data_version").fetchone()[0]
    return value


def _remove(conn: Any, path: Path, version: int) -> None:
    """Fold the WAL into the file, then remove the plaintext while holding its write lock.

    :raises StoreError: another process holds the file open or wrote to it
        since the import; it is kept.
    """
    source = imports.SOURCE
    kept = f"{path} was kept"
    with imports.sql_errors(conn, f"checkpointing {path}", imports.KEPT):
        if conn.execute(f"PRAGMA {source}.journal_mode").fetchone()[0] == "wal":
            busy, _, _ = conn.execute(f"PRAGMA {source}.wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise StoreError(f"{path} is in use by another process; {kept}")
        reached("checkpointed")
        conn.execute("BEGIN IMMEDIATE")  # held until the caller's rollback, after the removal
    if _data_version(conn) != version:
        raise StoreError(f"another process wrote to {path} during the migration; {kept}")
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size:
        raise StoreError(f"{path} is in use by another process; {kept}")
    remove_plaintext(path, between=lambda: reached("removing"))
    reached("removed")


def _unexpected(exc: Exception, path: Path, store: str) -> StoreError:
    """A SQLite error no step turned into a message; never SQLite's own text."""
    if getattr(exc, "rekeyed", False):
        return StoreError(
            f"store {store!r} was re-keyed during the migration; {path} was kept: "
            "run the command again"
        )
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    return StoreError(f"migrating {path} failed ({name}); {path} was kept")


def _warn(message: str) -> None:
    print(f"strongroom: warning: {message}", file=sys.stderr)
