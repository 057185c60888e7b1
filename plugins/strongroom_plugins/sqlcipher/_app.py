"""DB-API connections handed to the application, which say clearly when a re-key stranded them.

A connection keeps the key it was opened with.  Once the store is
re-keyed (``SqlcipherStore.reencrypt``, in any process) every page it
reads fails to decrypt, and SQLite says only "file is not a database".
These connections turn that into :class:`DatabaseKeyError` (still a
``sqlcipher3.DatabaseError``, so DB-API code and SQLAlchemy handle it as
one), saying whether the store was re-keyed (``rekeyed``: open a new
connection) or the file failed verification.  Nothing is retried behind
the application's back: a statement in a transaction the re-key ended
must be run again by the application, knowingly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlcipher3.dbapi2 as sqlcipher

from strongroom.errors import KeyLockedError, KeyUnavailableError
from strongroom_plugins.sqlcipher._errors import is_key_failure, is_read_only
from strongroom_plugins.sqlcipher._version_file import KeyVersionFile

__all__ = ["DatabaseKeyError", "ManagedConnection", "ManagedCursor", "Origin"]


class DatabaseKeyError(sqlcipher.DatabaseError):  # type: ignore[misc]
    """The connection's key no longer opens the database; ``rekeyed`` says why."""

    def __init__(self, message: str, *, rekeyed: bool) -> None:
        super().__init__(message)
        self.rekeyed = rekeyed


@dataclass(frozen=True)
class Origin:
    """Which store a connection belongs to and the key version it was opened with."""

    store: str
    version: int
    sidecar: KeyVersionFile
    #: Raises KeyLockedError (or KeyUnavailableError) once the key may no longer be used.
    check: Callable[[], object] | None = None

    def explain(self) -> DatabaseKeyError:
        recorded = self.sidecar.read()
        if recorded is not None and self.version not in recorded.candidates():
            return DatabaseKeyError(
                f"store {self.store!r} was re-keyed (key version {self.version} -> "
                f"{recorded.version}) after this connection was opened: open a new one",
                rekeyed=True,
            )
        return DatabaseKeyError(
            f"store {self.store!r}: its database failed verification (a damaged or replaced file)",
            rekeyed=False,
        )


@contextlib.contextmanager
def _explained(origin: Origin | None) -> Iterator[None]:
    try:
        yield
    except sqlcipher.DatabaseError as exc:
        if origin is None or isinstance(exc, DatabaseKeyError):
            raise
        if is_key_failure(exc):
            raise origin.explain() from None
        if is_read_only(exc):  # a write after a failed read: say why, if a re-key is why
            explained = origin.explain()
            if explained.rekeyed:
                raise explained from None
        raise


def _still_keyed(conn: Any) -> None:
    """Before a statement: once the account is locked the connection closes, and its key goes.

    :raises strongroom.errors.KeyLockedError: the account was locked since it was opened.
    :raises strongroom.errors.KeyUnavailableError: its key version was retired or destroyed.
    """
    origin = getattr(conn, "strongroom_origin", None)
    if origin is None or origin.check is None:
        return
    try:
        origin.check()
    except KeyLockedError:
        conn.strongroom_locked_out = True
        conn.close()
        raise
    except KeyUnavailableError:
        conn.strongroom_locked_out = True
        conn.close()
        explained = origin.explain()
        if explained.rekeyed:  # re-keyed, then the old version retired: as after a re-key
            raise explained from None
        raise


class ManagedCursor(sqlcipher.Cursor):  # type: ignore[misc]
    """A cursor whose key failures say what happened."""

    def _origin(self) -> Origin | None:
        return getattr(self.connection, "strongroom_origin", None)

    def execute(self, sql: str, parameters: Any = (), /) -> ManagedCursor:
        _still_keyed(self.connection)
        with _explained(self._origin()):
            super().execute(sql, parameters)
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> ManagedCursor:
        _still_keyed(self.connection)
        with _explained(self._origin()):
            super().executemany(sql, seq_of_parameters)
        return self

    def executescript(self, sql_script: str, /) -> ManagedCursor:
        _still_keyed(self.connection)
        with _explained(self._origin()):
            super().executescript(sql_script)
        return self

    def close(self) -> None:
        """Closing a cursor of a connection the lock closed is a no-op, not a second error."""
        try:
            super().close()
        except sqlcipher.ProgrammingError:
            if not getattr(self.connection, "strongroom_locked_out", False):
                raise


class ManagedConnection(sqlcipher.Connection):  # type: ignore[misc]
    """A ``sqlcipher3`` connection to a store's database, keyed by strongroom."""

    strongroom_origin: Origin | None = None
    #: Set when a lock (or a retired version) closed it: see ``_still_keyed``.
    strongroom_locked_out: bool = False

    def cursor(self, factory: Any = ManagedCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> Any:
        return self.cursor().executescript(sql_script)

    def rollback(self) -> None:
        """After a lock closed it there is nothing to roll back (closing did): a no-op."""
        if not self.strongroom_locked_out:
            super().rollback()

    def commit(self) -> None:
        _still_keyed(self)
        with _explained(self.strongroom_origin):
            super().commit()

    def __repr__(self) -> str:
        origin = self.strongroom_origin
        name = origin.store if origin else "?"
        return f"<strongroom database connection to store {name!r}>"
