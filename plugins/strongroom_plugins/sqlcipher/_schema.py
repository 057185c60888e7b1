"""The store's tables inside the encrypted file, and the format version that guards them.

Everything is prefixed ``strongroom_`` so an application's own tables can
share the file (``SqlcipherStore.connect``)::

    strongroom_meta         name TEXT PRIMARY KEY, value: format, store, account
    strongroom_records      key TEXT PRIMARY KEY, value BLOB | blob INTEGER, written_at REAL
    strongroom_blobs        id INTEGER PRIMARY KEY AUTOINCREMENT, size, chunk_size
    strongroom_blob_chunks  (blob, seq) PRIMARY KEY, data BLOB

Records and blobs share ``strongroom_records``, one namespace: a row holds
either a record's ``value`` or the id of a blob.  Blob ids are never
reused (AUTOINCREMENT), so a reader streaming chunk by chunk notices a
blob replaced under it instead of mixing two.  A trigger drops a blob's
chunks with it; the writer (``store``) drops a blob when its row goes or
stops pointing at it.  ``strongroom_records`` has no trigger: any trigger
on it makes every upsert keep a statement journal, 5 to 20 times slower.
``format`` in ``strongroom_meta`` is what a later version migrates from,
inside the encrypted file, never through a plaintext copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strongroom.errors import IntegrityError, StoreError

if TYPE_CHECKING:
    import sqlcipher3.dbapi2 as sqlcipher

__all__ = ["FORMAT", "ensure", "one"]

#: The layout this code reads and writes.
FORMAT = 1

_TABLES = (
    """
CREATE TABLE IF NOT EXISTS strongroom_meta (
    name TEXT PRIMARY KEY NOT NULL,
    value NOT NULL
) WITHOUT ROWID
    """,
    """
CREATE TABLE IF NOT EXISTS strongroom_records (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB,
    blob INTEGER,
    written_at REAL NOT NULL,
    CHECK ((value IS NULL) <> (blob IS NULL))
)
    """,
    """
CREATE TABLE IF NOT EXISTS strongroom_blobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL
)
    """,
    """
CREATE TABLE IF NOT EXISTS strongroom_blob_chunks (
    blob INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (blob, seq)
)
    """,
    """
CREATE INDEX IF NOT EXISTS strongroom_records_written_at ON strongroom_records (written_at)
    """,
    """
CREATE TRIGGER IF NOT EXISTS strongroom_blob_dropped AFTER DELETE ON strongroom_blobs
BEGIN
    DELETE FROM strongroom_blob_chunks WHERE blob = old.id;
END
    """,
    """
CREATE INDEX IF NOT EXISTS strongroom_records_blob ON strongroom_records (blob)
WHERE blob IS NOT NULL
    """,
)


def one(conn: sqlcipher.Connection, sql: str, args: tuple[object, ...] = ()) -> Any:
    """The first row of ``sql``, or ``None``; the statement always runs to its end.

    ``fetchone()`` would leave it active, and with it a read transaction
    that pins an old snapshot and stops the WAL being checkpointed.
    """
    rows = conn.execute(sql, args).fetchall()
    return rows[0] if rows else None


def ensure(conn: sqlcipher.Connection, *, store: str, account: str) -> None:
    """Create the tables if missing; refuse a file of another store or a newer format.

    :raises strongroom.errors.IntegrityError: the file belongs to another store
        or account (it would only open if the same key were used twice).
    :raises strongroom.errors.StoreError: the file has a format this code cannot read.
    """
    meta = _meta(conn)
    if meta.get("format") is None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _TABLES:  # not executescript(): it would commit early
                conn.execute(statement)
            conn.executemany(
                "INSERT OR IGNORE INTO strongroom_meta (name, value) VALUES (?, ?)",
                [("format", FORMAT), ("store", store), ("account", account)],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        meta = _meta(conn)
    if (meta.get("store"), meta.get("account")) != (store, account):
        raise IntegrityError(
            f"store {store!r}: its database file belongs to another store or account"
        )
    found = meta.get("format")
    if not isinstance(found, int) or found > FORMAT:
        raise StoreError(
            f"store {store!r}: its database has format {found!r}, newer than this "
            f"strongroom reads ({FORMAT}); upgrade strongroom"
        )


def _meta(conn: sqlcipher.Connection) -> dict[str, object]:
    exists = one(
        conn, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'strongroom_meta'"
    )
    if exists is None:
        return {}
    return dict(conn.execute("SELECT name, value FROM strongroom_meta").fetchall())
