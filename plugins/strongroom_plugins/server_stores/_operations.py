"""The statements both server stores run, written once over a small SQL adaptor.

Each backend runs these inside one transaction of its own and translates
its driver's errors; the adaptor hides the placeholder style and how a row
is locked.  A push or commit first locks its account's counter row (in
SQLite the whole database is already locked by ``BEGIN IMMEDIATE``), so
every key check, seq assignment and write of one account runs one at a
time, and seqs are handed out in commit order: a puller that has seen seq
``n`` can never later find a smaller one committed behind it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any, Protocol, cast

from strongroom.errors import (
    IntegrityError,
    ServerObjectNotFoundError,
    ServerStorageError,
    UploadIncompleteError,
    UsageError,
)
from strongroom.server_storage import Applied, BlobManifest, Change, Device, Entry, Kind, Page

__all__ = [
    "Sql",
    "begin_blob",
    "blob_manifest",
    "commit_blob",
    "device",
    "get_chunk",
    "missing_chunks",
    "prune_uploads",
    "pull",
    "push",
    "put_chunk",
    "register_device",
    "retire_device",
]

_HASH = 32
Row = tuple[Any, ...]


class Sql(Protocol):
    """Statements with ``?`` placeholders, run in the caller's transaction."""

    #: Appended to the SELECT that locks an account's counter row (`` FOR UPDATE`` or empty).
    for_update: str

    def one(self, statement: str, *params: object) -> Row | None: ...

    def all(self, statement: str, *params: object) -> list[Row]: ...

    def run(self, statement: str, *params: object) -> int:
        """Run a statement and return how many rows it changed."""
        ...


def register_device(sql: Sql, account: str, key_id: str, key: bytes) -> None:
    inserted = sql.run(
        "INSERT INTO strongroom_devices (key_id, account, mac_key, active) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (key_id) DO NOTHING",
        key_id,
        account,
        key,
        True,
    )
    if inserted:
        return
    found = device(sql, key_id)
    if found is None or not (
        found.account == account and found.active and hmac.compare_digest(found.key, key)
    ):
        raise ServerStorageError(f"key id {key_id!r} is already registered")


def device(sql: Sql, key_id: str) -> Device | None:
    row = sql.one(
        "SELECT account, mac_key, active FROM strongroom_devices WHERE key_id = ?", key_id
    )
    return None if row is None else Device(key_id, row[0], bytes(row[1]), bool(row[2]))


def devices(sql: Sql) -> list[Device]:
    rows = sql.all(
        "SELECT key_id, account, mac_key, active FROM strongroom_devices ORDER BY key_id"
    )
    return [Device(row[0], row[1], bytes(row[2]), bool(row[3])) for row in rows]


def retire_device(sql: Sql, account: str, key_id: str) -> None:
    changed = sql.run(
        "UPDATE strongroom_devices SET active = ? WHERE key_id = ? AND account = ?",
        False,
        key_id,
        account,
    )
    if not changed:
        raise ServerObjectNotFoundError(f"no device {key_id!r} in this account")


def _lock_account(sql: Sql, account: str) -> int:
    """Take the account's counter row for the rest of the transaction; its last seq."""
    sql.run(
        "INSERT INTO strongroom_accounts (account, last_seq) VALUES (?, 0)"
        " ON CONFLICT (account) DO NOTHING",
        account,
    )
    row = sql.one(
        "SELECT last_seq FROM strongroom_accounts WHERE account = ?" + sql.for_update,  # noqa: S608 - a constant
        account,
    )
    assert row is not None  # noqa: S101 - inserted above
    return int(row[0])


def _save_counter(sql: Sql, account: str, last_seq: int) -> None:
    sql.run("UPDATE strongroom_accounts SET last_seq = ? WHERE account = ?", last_seq, account)


def _current(sql: Sql, account: str, key: str) -> tuple[int, str | None]:
    """The key's seq (0: never written) and the upload holding its blob, if any."""
    row = sql.one(
        "SELECT seq, upload_id FROM strongroom_objects WHERE account = ? AND key = ?",
        account,
        key,
    )
    return (0, None) if row is None else (int(row[0]), row[1])


def _write(
    sql: Sql,
    account: str,
    key: str,
    seq: int,
    *,
    kind: Kind,
    value: bytes | None,
    upload: str | None,
) -> None:
    sql.run(
        "INSERT INTO strongroom_objects (account, key, seq, kind, value, upload_id)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account, key) DO UPDATE SET seq = excluded.seq,"
        " kind = excluded.kind, value = excluded.value, upload_id = excluded.upload_id",
        account,
        key,
        seq,
        kind,
        value,
        upload,
    )


def _drop_upload(sql: Sql, upload_id: str) -> None:
    sql.run("DELETE FROM strongroom_chunks WHERE upload_id = ?", upload_id)
    sql.run("DELETE FROM strongroom_uploads WHERE upload_id = ?", upload_id)


def push(sql: Sql, account: str, changes: Sequence[Change]) -> list[Applied]:
    last = _lock_account(sql, account)
    results: list[Applied] = []
    for change in changes:
        current, old_upload = _current(sql, account, change.key)
        if change.base_seq is not None and change.base_seq != current:
            results.append(Applied(change.key, current, conflict=True))
            continue
        last += 1
        kind: Kind = "deleted" if change.value is None else "record"
        _write(sql, account, change.key, last, kind=kind, value=change.value, upload=None)
        if old_upload is not None:
            _drop_upload(sql, old_upload)
        results.append(Applied(change.key, last))
    _save_counter(sql, account, last)
    return results


def pull(sql: Sql, account: str, after: int, limit: int) -> Page:
    rows = sql.all(
        "SELECT key, seq, kind, value FROM strongroom_objects"
        " WHERE account = ? AND seq > ? ORDER BY seq LIMIT ?",
        account,
        after,
        limit + 1,
    )
    entries = tuple(
        Entry(key, int(seq), cast(Kind, kind), None if value is None else bytes(value))
        for key, seq, kind, value in rows[:limit]
    )
    return Page(entries, entries[-1].seq if entries else after, len(rows) > limit)


def begin_blob(
    sql: Sql, account: str, key: str, manifest: bytes, hashes: bytes, *, now: int
) -> str:
    fingerprint = hashlib.sha256(len(manifest).to_bytes(8, "big") + manifest + hashes).digest()
    row = sql.one(
        "SELECT upload_id FROM strongroom_uploads"
        " WHERE account = ? AND key = ? AND fingerprint = ? AND committed = ?",
        account,
        key,
        fingerprint,
        False,
    )
    if row is not None:
        sql.run("UPDATE strongroom_uploads SET active_at = ? WHERE upload_id = ?", now, row[0])
        return str(row[0])
    upload_id = secrets.token_urlsafe(24)
    sql.run(
        "INSERT INTO strongroom_uploads (upload_id, account, key, manifest, chunk_hashes,"
        " chunk_count, fingerprint, committed, active_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        upload_id,
        account,
        key,
        manifest,
        hashes,
        len(hashes) // _HASH,
        fingerprint,
        False,
        now,
    )
    return upload_id


def _open_upload(sql: Sql, account: str, upload_id: str) -> tuple[str, int]:
    """The open upload's key and chunk count; another account's reads as none."""
    row = sql.one(
        "SELECT key, chunk_count FROM strongroom_uploads"
        " WHERE upload_id = ? AND account = ? AND committed = ?",
        upload_id,
        account,
        False,
    )
    if row is None:
        raise ServerObjectNotFoundError(f"no open upload {upload_id!r} in this account")
    return str(row[0]), int(row[1])


def put_chunk(sql: Sql, account: str, upload_id: str, index: int, data: bytes, *, now: int) -> None:
    _, count = _open_upload(sql, account, upload_id)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise UsageError(f"this upload has chunks 0 to {count - 1}")
    row = sql.one(
        "SELECT substr(chunk_hashes, ?, ?) FROM strongroom_uploads WHERE upload_id = ?",
        index * _HASH + 1,
        _HASH,
        upload_id,
    )
    assert row is not None  # noqa: S101 - found above, in this transaction
    if not hmac.compare_digest(hashlib.sha256(data).digest(), bytes(row[0])):
        raise IntegrityError(f"chunk {index} does not match its declared hash")
    sql.run(
        "INSERT INTO strongroom_chunks (upload_id, idx, data, stored_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (upload_id, idx) DO NOTHING",
        upload_id,
        index,
        data,
        now,
    )


def prune_uploads(sql: Sql, idle_since: int) -> int:
    """Drop the open uploads neither begun nor added to since ``idle_since``; how many."""
    rows = sql.all(
        "SELECT upload_id FROM strongroom_uploads u WHERE committed = ? AND active_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM strongroom_chunks c"
        " WHERE c.upload_id = u.upload_id AND c.stored_at >= ?)",
        False,
        idle_since,
        idle_since,
    )
    for row in rows:
        _drop_upload(sql, str(row[0]))
    return len(rows)


def missing_chunks(sql: Sql, account: str, upload_id: str) -> list[int]:
    _, count = _open_upload(sql, account, upload_id)
    rows = sql.all("SELECT idx FROM strongroom_chunks WHERE upload_id = ?", upload_id)
    stored = {int(row[0]) for row in rows}
    return [index for index in range(count) if index not in stored]


def commit_blob(sql: Sql, account: str, upload_id: str, base_seq: int | None) -> Applied:
    last = _lock_account(sql, account)
    key, count = _open_upload(sql, account, upload_id)
    row = sql.one("SELECT count(*) FROM strongroom_chunks WHERE upload_id = ?", upload_id)
    stored = int(row[0]) if row is not None else 0
    if stored < count:
        raise UploadIncompleteError(f"{count - stored} of the upload's {count} chunks are missing")
    current, old_upload = _current(sql, account, key)
    if base_seq is not None and base_seq != current:
        return Applied(key, current, conflict=True)
    manifest = sql.one("SELECT manifest FROM strongroom_uploads WHERE upload_id = ?", upload_id)
    assert manifest is not None  # noqa: S101 - found above, in this transaction
    _write(sql, account, key, last + 1, kind="blob", value=bytes(manifest[0]), upload=upload_id)
    sql.run("UPDATE strongroom_uploads SET committed = ? WHERE upload_id = ?", True, upload_id)
    if old_upload is not None:
        _drop_upload(sql, old_upload)
    _save_counter(sql, account, last + 1)
    return Applied(key, last + 1)


def blob_manifest(sql: Sql, account: str, key: str) -> BlobManifest:
    row = sql.one(
        "SELECT o.seq, o.value, u.chunk_hashes FROM strongroom_objects o"
        " JOIN strongroom_uploads u ON u.upload_id = o.upload_id"
        " WHERE o.account = ? AND o.key = ? AND o.kind = 'blob'",
        account,
        key,
    )
    if row is None:
        raise ServerObjectNotFoundError(f"no blob {key!r} in this account")
    hashes = bytes(row[2])
    split = tuple(hashes[start : start + _HASH] for start in range(0, len(hashes), _HASH))
    return BlobManifest(int(row[0]), bytes(row[1]), split)


def get_chunk(sql: Sql, account: str, key: str, index: int) -> bytes:
    row = sql.one(
        "SELECT c.data FROM strongroom_objects o"
        " JOIN strongroom_chunks c ON c.upload_id = o.upload_id"
        " WHERE o.account = ? AND o.key = ? AND o.kind = 'blob' AND c.idx = ?",
        account,
        key,
        index,
    )
    if row is None:
        raise ServerObjectNotFoundError(f"no chunk {index} of a blob {key!r} in this account")
    return bytes(row[0])
