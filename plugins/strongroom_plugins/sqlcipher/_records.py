"""The statements that write and find a key's row, and what a key may be.

Records and blobs share ``strongroom_records`` (``_schema``).  Writing a
record is one upsert that leaves a blob's row alone (``rowcount`` 0): only
then does the writer drop the blob and turn its row into a record, so the
common case costs one statement, and under ``cipher_memory_security``
every statement costs system calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.errors import UsageError
from strongroom_plugins.sqlcipher._schema import one

if TYPE_CHECKING:
    import sqlcipher3.dbapi2 as sqlcipher

__all__ = [
    "DROP_BLOB_OF_KEY",
    "LOOKUP",
    "MAX_KEY_BYTES",
    "UPSERT_BLOB",
    "UPSERT_RECORD",
    "after",
    "checked",
    "lookup",
    "put_over_blob",
]

MAX_KEY_BYTES = 65535

#: A record over a record or a new key; a blob's row is left alone (rowcount 0).
UPSERT_RECORD = (
    "INSERT INTO strongroom_records (key, value, blob, written_at) VALUES (?, ?, NULL, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, written_at = excluded.written_at "
    "WHERE strongroom_records.blob IS NULL"
)
#: A blob's row over anything; the caller drops the key's old blob first.
UPSERT_BLOB = (
    "INSERT INTO strongroom_records (key, value, blob, written_at) VALUES (?, NULL, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = NULL, blob = excluded.blob, "
    "written_at = excluded.written_at"
)
#: Before a blob's key is rewritten: the blob (a trigger drops its chunks).
DROP_BLOB_OF_KEY = (
    "DELETE FROM strongroom_blobs WHERE id = (SELECT blob FROM strongroom_records WHERE key = ?)"
)
_REPLACE_BLOB_ROW = (
    "UPDATE strongroom_records SET value = ?, blob = NULL, written_at = ? WHERE key = ?"
)


def put_over_blob(conn: sqlcipher.Connection, key: str, value: bytes, now: float) -> None:
    """Inside a write transaction: ``key``'s blob dropped, its row made a record (or new)."""
    conn.execute(DROP_BLOB_OF_KEY, (key,))
    if not conn.execute(_REPLACE_BLOB_ROW, (value, now, key)).rowcount:
        conn.execute(UPSERT_RECORD, (key, value, now))


#: A key's row: ``(value, None)`` for a record, ``(None, blob id)`` for a blob.
LOOKUP = "SELECT value, blob FROM strongroom_records WHERE key = ?"


def lookup(conn: sqlcipher.Connection, key: str) -> tuple[bytes | None, int | None] | None:
    """``(value, None)`` for a record, ``(None, blob id)`` for a blob, ``None`` if absent."""
    row = one(conn, LOOKUP, (key,))
    return None if row is None else (row[0], row[1])


def checked(key: str) -> str:
    """``key`` if it is text SQLite can store as given; else :class:`UsageError`."""
    if type(key) is str and key.isascii() and len(key) <= MAX_KEY_BYTES:
        return key  # the common case, without encoding: isascii() reads a flag
    if not isinstance(key, str):
        raise UsageError(f"a key is a str, not {type(key).__name__}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise UsageError("a key must be valid Unicode text (no lone surrogates)") from None
    if size > MAX_KEY_BYTES:
        raise UsageError(f"a key is at most {MAX_KEY_BYTES} bytes of UTF-8")
    return key


def after(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix``; None: no bound.

    SQLite compares TEXT as UTF-8 bytes, which is code-point order, so
    ``key >= prefix AND key < after(prefix)`` is an indexed range.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code == 0xD800:
            code = 0xE000  # surrogates cannot be stored: skip them
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
