"""Blobs as numbered chunks in ``strongroom_blob_chunks``: streamed in, streamed out, ranged.

A blob is cut into chunks of the store's ``chunk_size`` as it arrives, so
neither writing nor reading ever holds more than one chunk (plus the
caller's piece) in memory.  Every chunk but the last is exactly
``chunk_size`` bytes, so a ranged read computes which chunks cover it and
reads only those.  SQLCipher authenticates every page, so a chunk that
comes back is the one written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strongroom.errors import StoreError
from strongroom_plugins.sqlcipher._schema import one

if TYPE_CHECKING:
    import sqlcipher3.dbapi2 as sqlcipher

__all__ = ["BlobInfo", "chunk", "chunks_covering", "write"]


@dataclass(frozen=True)
class BlobInfo:
    """Where a blob's chunks are and how they are cut."""

    id: int
    size: int
    chunk_size: int

    @property
    def count(self) -> int:
        return -(-self.size // self.chunk_size)


def write(conn: sqlcipher.Connection, chunk_size: int, pieces: Iterable[bytes]) -> BlobInfo:
    """Store ``pieces`` as a new blob inside the caller's transaction; return where it is.

    An exception from ``pieces`` passes through untouched; the caller rolls back.
    """
    blob = conn.execute(
        "INSERT INTO strongroom_blobs (size, chunk_size) VALUES (0, ?)", (chunk_size,)
    ).lastrowid
    if blob is None:  # pragma: no cover - SQLite always gives a rowid here
        raise StoreError("the database gave no id for a new blob")
    insert = "INSERT INTO strongroom_blob_chunks (blob, seq, data) VALUES (?, ?, ?)"
    buffer = bytearray()
    seq = size = 0
    for piece in pieces:
        buffer += piece
        while len(buffer) >= chunk_size:
            conn.execute(insert, (blob, seq, bytes(buffer[:chunk_size])))
            del buffer[:chunk_size]
            seq, size = seq + 1, size + chunk_size
    if buffer:
        conn.execute(insert, (blob, seq, bytes(buffer)))
        size += len(buffer)
    conn.execute("UPDATE strongroom_blobs SET size = ? WHERE id = ?", (size, blob))
    return BlobInfo(blob, size, chunk_size)


def info(conn: sqlcipher.Connection, blob: int) -> BlobInfo | None:
    row = one(conn, "SELECT size, chunk_size FROM strongroom_blobs WHERE id = ?", (blob,))
    return None if row is None else BlobInfo(blob, row[0], row[1])


def chunk(conn: sqlcipher.Connection, blob: BlobInfo, seq: int) -> bytes | None:
    """Chunk ``seq`` of ``blob``; ``None`` if the blob was replaced or deleted meanwhile."""
    sql = "SELECT data FROM strongroom_blob_chunks WHERE blob = ? AND seq = ?"
    row = one(conn, sql, (blob.id, seq))
    return None if row is None else bytes(row[0])


def chunks_covering(
    conn: sqlcipher.Connection, blob: BlobInfo, offset: int, end: int
) -> bytes | None:
    """The bytes ``[offset, end)`` of ``blob``, reading only the chunks that hold them.

    ``None`` if the blob was replaced or deleted meanwhile.  One statement:
    the chunks come from one snapshot.
    """
    end = min(end, blob.size)
    if offset >= end:
        return b""
    first, last = offset // blob.chunk_size, (end - 1) // blob.chunk_size
    rows = conn.execute(
        "SELECT data FROM strongroom_blob_chunks WHERE blob = ? AND seq BETWEEN ? AND ? "
        "ORDER BY seq",
        (blob.id, first, last),
    ).fetchall()
    if len(rows) != last - first + 1:
        return None
    joined = b"".join(bytes(row[0]) for row in rows)
    start = offset - first * blob.chunk_size
    return joined[start : start + (end - offset)]
