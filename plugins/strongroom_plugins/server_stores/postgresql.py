"""The ``postgresql`` server storage: several server processes and hosts on one database.

Connections come from a ``psycopg_pool.ConnectionPool`` that checks each
one as it is handed out, so after the server restarts broken connections
are dropped and new ones made.  Transactions run at READ COMMITTED; a push
or commit locks its account's counter row (``SELECT ... FOR UPDATE``)
first, so writers of one account queue there and seqs follow commit
order, while accounts never wait for each other.  A deadlock or
serialization failure is retried; a lost connection is
``ServerStorageUnavailableError`` and nothing is retried, since a
commit cut off mid-way may or may not have happened.  A commit that
returned is durable (``synchronous_commit`` stays the server's, on).

The schema is created by migrations recorded in ``strongroom_migrations``
and applied under a transaction-level advisory lock, so processes starting
together apply each migration once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from strongroom.errors import ServerStorageError, ServerStorageUnavailableError
from strongroom_plugins.server_stores._operations import Row, Sql
from strongroom_plugins.server_stores._postgresql_settings import (
    PostgresServerStorageSettings,
    connection_arguments,
)
from strongroom_plugins.server_stores._sql_storage import SqlServerStorage

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["MIGRATIONS", "PostgresServerStorage", "PostgresServerStorageSettings"]

T = TypeVar("T")

#: ``pg_advisory_xact_lock`` key of the migrations: "strongrm" in ASCII, shifted into 63 bits.
_MIGRATION_LOCK = int.from_bytes(b"strongrm", "big") >> 1
_RETRIES = 5

#: Each migration takes the schema from its index to the next version.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE strongroom_devices (key_id text PRIMARY KEY, account text NOT NULL,"
        " mac_key bytea NOT NULL, active boolean NOT NULL,"
        " registered_at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE strongroom_accounts (account text PRIMARY KEY, last_seq bigint NOT NULL)",
        "CREATE TABLE strongroom_uploads (upload_id text PRIMARY KEY, account text NOT NULL,"
        " key text NOT NULL, manifest bytea NOT NULL, chunk_hashes bytea NOT NULL,"
        " chunk_count integer NOT NULL, fingerprint bytea NOT NULL, committed boolean NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now())",
        "CREATE INDEX strongroom_uploads_open ON strongroom_uploads (account, key, fingerprint)"
        " WHERE NOT committed",
        "CREATE TABLE strongroom_chunks (upload_id text NOT NULL"
        " REFERENCES strongroom_uploads ON DELETE CASCADE, idx integer NOT NULL,"
        " data bytea NOT NULL, PRIMARY KEY (upload_id, idx))",
        # ciphertext does not compress: store it out of line without trying
        "ALTER TABLE strongroom_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
        "CREATE TABLE strongroom_objects (account text NOT NULL, key text NOT NULL,"
        " seq bigint NOT NULL, kind text NOT NULL CHECK (kind IN ('record', 'blob', 'deleted')),"
        " value bytea, upload_id text REFERENCES strongroom_uploads,"
        " PRIMARY KEY (account, key), UNIQUE (account, seq))",
    ),
    (  # 2: when an open upload last saw activity, so an abandoned one can be pruned
        "ALTER TABLE strongroom_uploads ADD COLUMN active_at bigint NOT NULL DEFAULT 0",
        "UPDATE strongroom_uploads SET active_at = extract(epoch FROM created_at)::bigint",
        "ALTER TABLE strongroom_chunks ADD COLUMN stored_at bigint NOT NULL DEFAULT 0",
        "CREATE INDEX strongroom_uploads_idle ON strongroom_uploads (active_at)"
        " WHERE NOT committed",
    ),
)


class _Sql:
    for_update = " FOR UPDATE"

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn

    def _execute(self, statement: str, params: tuple[object, ...]) -> psycopg.Cursor[Any]:
        return self._conn.execute(statement.replace("?", "%s"), params)

    def one(self, statement: str, *params: object) -> Row | None:
        row: Row | None = self._execute(statement, params).fetchone()
        return row

    def all(self, statement: str, *params: object) -> list[Row]:
        return self._execute(statement, params).fetchall()

    def run(self, statement: str, *params: object) -> int:
        return self._execute(statement, params).rowcount


class PostgresServerStorage(SqlServerStorage[PostgresServerStorageSettings]):
    """Opaque objects per account in PostgreSQL, through a connection pool."""

    Settings = PostgresServerStorageSettings

    def __init__(self, settings: PostgresServerStorageSettings | None = None) -> None:
        """Open the pool and bring the schema up to date.

        :raises strongroom.errors.ServerStorageUnavailableError: the server cannot be reached.
        :raises strongroom.errors.ServerStorageError: the dsn does not parse, or the
            schema is newer than this code.
        """
        super().__init__(settings)
        self._where = self.settings.where()
        arguments = connection_arguments(self.settings)
        self._password = str(arguments.get("password") or "")
        arguments["autocommit"] = True
        self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            kwargs=arguments,
            min_size=self.settings.pool_min,
            max_size=self.settings.pool_max,
            open=False,
            timeout=self.settings.connect_timeout,
            check=psycopg_pool.ConnectionPool.check_connection,
            name="strongroom-server-storage",
        )
        try:
            self._first_connection(arguments)
            try:
                self._pool.open(wait=self.settings.pool_min > 0, timeout=self._timeout)
            except psycopg_pool.PoolTimeout:
                raise self._unavailable("no connection was made in time") from None
            self.transaction(self._migrate)
        except BaseException:
            self._pool.close(timeout=1.0)
            raise

    def _first_connection(self, arguments: dict[str, object]) -> None:
        """Connect once by hand, so a server that refuses says why (the pool only times out)."""
        try:
            psycopg.connect(**arguments).close()  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise self._unavailable(self._reason(exc)) from None
        except psycopg.Error as exc:  # an option libpq does not know, say
            raise ServerStorageError(f"PostgreSQL {self._where}: {self._reason(exc)}") from None

    @property
    def _timeout(self) -> float:
        return self.settings.connect_timeout

    def __repr__(self) -> str:
        return f"PostgresServerStorage({self._where})"

    def _migrate(self, sql: Sql) -> None:
        sql.run("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK)
        sql.run(
            "CREATE TABLE IF NOT EXISTS strongroom_migrations (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = sql.one("SELECT coalesce(max(version), 0) FROM strongroom_migrations")
        version = int(row[0]) if row is not None else 0
        if version > len(MIGRATIONS):
            raise ServerStorageError(
                f"PostgreSQL {self._where} has schema version {version},"
                " newer than this strongroom knows"
            )
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                sql.run(statement)
            sql.run("INSERT INTO strongroom_migrations (version) VALUES (?)", number)

    def transaction(self, work: Callable[[Sql], T], *, write: bool = True) -> T:
        for attempt in range(_RETRIES):
            try:
                with (
                    self._pool.connection(timeout=self._timeout) as conn,
                    conn.transaction(),
                ):
                    if not write:
                        conn.execute("SET TRANSACTION READ ONLY")
                    return work(_Sql(conn))
            except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected):
                if attempt == _RETRIES - 1:
                    raise ServerStorageError(
                        f"PostgreSQL {self._where}: the transaction kept conflicting with others"
                    ) from None
            except psycopg_pool.PoolTimeout:
                raise self._unavailable("no connection could be had in time") from None
            except psycopg_pool.PoolClosed:
                raise ServerStorageError("this server storage is closed") from None
            except psycopg.OperationalError as exc:
                raise self._unavailable(self._reason(exc)) from None
            except psycopg.Error as exc:
                state = exc.sqlstate or type(exc).__name__
                raise ServerStorageError(
                    f"PostgreSQL {self._where} refused the operation ({state})"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, reason: str) -> ServerStorageUnavailableError:
        return ServerStorageUnavailableError(f"PostgreSQL {self._where} is unavailable: {reason}")

    def _reason(self, exc: BaseException) -> str:
        """libpq's first line, without the password should a message ever echo it."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        return reason.replace(self._password, "***") if self._password else reason

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None and not pool.closed:
            pool.close(timeout=5.0)
