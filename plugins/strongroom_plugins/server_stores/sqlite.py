"""The ``sqlite`` server storage: one database file, the embedded default for one process.

WAL journal with ``synchronous=FULL``, so a write is on disk when it is
acknowledged; every write transaction is ``BEGIN IMMEDIATE``, so the
database itself serialises pushes and seqs come in commit order.  One
connection serves every thread of the process, one transaction at a time.
The file is created mode 0600 (SQLite gives its journal files the same
mode): it holds devices' MAC keys.  The schema is created and migrated on
open, by ``PRAGMA user_version``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

from msgspec import Meta

from strongroom.errors import ServerStorageError, ServerStorageUnavailableError
from strongroom.settings import BackendSettings
from strongroom_plugins.server_stores._operations import Row, Sql
from strongroom_plugins.server_stores._sql_storage import SqlServerStorage

__all__ = ["SqliteServerStorage", "SqliteServerStorageSettings"]

T = TypeVar("T")

#: Each migration takes the schema from its index to the next version.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE strongroom_devices (key_id TEXT PRIMARY KEY, account TEXT NOT NULL,"
        " mac_key BLOB NOT NULL, active INTEGER NOT NULL)",
        "CREATE TABLE strongroom_accounts (account TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)",
        "CREATE TABLE strongroom_uploads (upload_id TEXT PRIMARY KEY, account TEXT NOT NULL,"
        " key TEXT NOT NULL, manifest BLOB NOT NULL, chunk_hashes BLOB NOT NULL,"
        " chunk_count INTEGER NOT NULL, fingerprint BLOB NOT NULL, committed INTEGER NOT NULL)",
        "CREATE INDEX strongroom_uploads_open ON strongroom_uploads (account, key, fingerprint)",
        "CREATE TABLE strongroom_chunks (upload_id TEXT NOT NULL, idx INTEGER NOT NULL,"
        " data BLOB NOT NULL, PRIMARY KEY (upload_id, idx))",
        "CREATE TABLE strongroom_objects (account TEXT NOT NULL, key TEXT NOT NULL,"
        " seq INTEGER NOT NULL, kind TEXT NOT NULL, value BLOB, upload_id TEXT,"
        " PRIMARY KEY (account, key), UNIQUE (account, seq))",
    ),
    (  # 2: when an open upload last saw activity, so an abandoned one can be pruned
        "ALTER TABLE strongroom_uploads ADD COLUMN active_at INTEGER NOT NULL DEFAULT 0",
        "UPDATE strongroom_uploads SET active_at = CAST(strftime('%s', 'now') AS INTEGER)",
        "ALTER TABLE strongroom_chunks ADD COLUMN stored_at INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX strongroom_uploads_idle ON strongroom_uploads (active_at)"
        " WHERE committed = 0",
    ),
)


class SqliteServerStorageSettings(BackendSettings, frozen=True, kw_only=True):
    """Where the database file is and how long a writer waits for another process."""

    path: Annotated[str, Meta(min_length=1, description="the database file (created 0600)")]
    busy_timeout: Annotated[
        float, Meta(gt=0, le=3600, description="seconds a write waits for another process")
    ] = 5.0


class _Sql:
    for_update = ""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def one(self, statement: str, *params: object) -> Row | None:
        row: Row | None = self._db.execute(statement, params).fetchone()
        return row

    def all(self, statement: str, *params: object) -> list[Row]:
        rows: list[Row] = self._db.execute(statement, params).fetchall()
        return rows

    def run(self, statement: str, *params: object) -> int:
        return self._db.execute(statement, params).rowcount


class SqliteServerStorage(SqlServerStorage[SqliteServerStorageSettings]):
    """Opaque objects per account in one SQLite file."""

    Settings = SqliteServerStorageSettings

    def __init__(self, settings: SqliteServerStorageSettings | None = None) -> None:
        """:raises strongroom.errors.ServerStorageError: the file cannot be opened or migrated."""
        super().__init__(settings)
        self.path = Path(self.settings.path).expanduser()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=self.settings.busy_timeout,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise ServerStorageError(f"cannot open {self.path}: {_reason(exc)}") from None
        self._closed = False
        try:
            for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON"):
                self._db.execute(f"PRAGMA {pragma}")
            self.transaction(self._migrate)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteServerStorage({str(self.path)!r})"

    def _migrate(self, sql: Sql) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise ServerStorageError(
                f"{self.path} has schema version {version}, newer than this strongroom knows"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def transaction(self, work: Callable[[Sql], T], *, write: bool = True) -> T:
        with self._lock:
            if self._closed:
                raise ServerStorageError("this server storage is closed")
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise _translated(exc, self.path) from None
            try:
                result = work(_Sql(self._db))
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translated(exc, self.path) from None
                raise
            return result

    def close(self) -> None:
        with self._lock:
            if not getattr(self, "_closed", True):
                self._closed = True
                self._db.close()


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _translated(exc: sqlite3.Error, path: Path) -> ServerStorageError:
    """A busy database is unavailable for now; anything else is the storage refusing."""
    reason = _reason(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in reason or "busy" in reason):
        return ServerStorageUnavailableError(f"{path} is busy: {reason}")
    return ServerStorageError(f"{path}: {reason}")
