"""One store's connection, and how each operation runs on it: checked, retried, translated.

Before every operation the account must be unlocked and the file's key
version still active (``data_key`` says so, a few microseconds): a locked
account closes the connection, so the database key leaves SQLCipher's
memory with it.  An operation whose pages stop decrypting because another
process re-keyed the file meanwhile is run again on a connection opened
under the new version; a page that fails twice under the same version is
damage, and SQLite's errors become strongroom's (``_errors``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

import sqlcipher3.dbapi2 as sqlcipher

from strongroom.errors import IntegrityError, KeyLockedError, KeyUnavailableError, StoreError
from strongroom_plugins.sqlcipher._errors import is_key_failure, translate
from strongroom_plugins.sqlcipher._keying import KeyedFile, Opened
from strongroom_plugins.sqlcipher._schema import one

__all__ = ["Runner"]

T = TypeVar("T")

#: How many re-keys in a row an operation rides out before giving up.
ATTEMPTS = 5
#: How long a key version, once checked, is used without asking the key hierarchy again,
#: unless its ``changes`` moved (a lock, an idle timeout, a record saved in this process).
#: It bounds how late a version retired or destroyed by another process is noticed.
RECHECK_S = 0.05


class Runner:
    """The store's one connection, opened on first use and shared by its threads."""

    def __init__(self, file: KeyedFile) -> None:
        self.file = file
        self.guard = threading.RLock()
        self.opened: Opened | None = None
        self.closed = False
        #: Operations of :meth:`run` and :meth:`write` running now (nested ones count).
        self._depth = 0
        #: Set by :meth:`forget` when it found an operation running: the last one to end drops.
        self._forget_pending = False
        #: ``time.monotonic()`` until which the open connection's key version needs no check.
        self._trusted_until = 0.0
        #: ``changes`` of the key hierarchy when the version was last checked.
        self._saves_seen = -1

    @property
    def _store(self) -> str:
        return self.file.binding.name

    def check_open(self) -> None:
        if self.closed:
            raise StoreError(f"store {self._store!r} is closed")

    def close(self) -> None:
        with self.guard:
            self.drop()
            self.closed = True

    def connection(self) -> sqlcipher.Connection:
        """The open connection, after checking its key version may still be used."""
        self.check_open()
        binding = self.file.binding
        saves, now = binding.keys.changes, time.monotonic()
        opened = self.opened
        if opened is not None:
            if now < self._trusted_until and saves == self._saves_seen:
                return opened.conn
            try:
                binding.keys.data_key(binding.purpose, opened.version)
            except KeyLockedError:
                self.drop()
                raise
            except KeyUnavailableError:
                self.drop()  # retired or destroyed: maybe re-keyed elsewhere; resolve again
            else:
                self._trust(saves, now)
                return opened.conn
        self.opened = self.file.open()
        self._trust(saves, now)
        return self.opened.conn

    def _trust(self, saves: int, now: float) -> None:
        """Use the version just checked until ``RECHECK_S`` passes or ``changes`` moves."""
        binding = self.file.binding
        if not binding.keys.asks_presence(binding.purpose):  # asked at every use
            self._trusted_until, self._saves_seen = now + RECHECK_S, saves

    def version(self) -> int:
        """The key version of the open connection (call within :meth:`run`)."""
        assert self.opened is not None  # noqa: S101 - run() opened it
        return self.opened.version

    def forget(self) -> None:
        """Close the connection, and its key with it, unless an operation holds it now.

        Called from another thread when the keys go (a lock, an idle
        timeout): it never waits; the busy operation closes the connection
        itself when it ends.
        """
        self._forget_pending = True  # before trying: an operation ending now sees it
        if self.guard.acquire(blocking=False):
            try:
                self._forget_pending = False
                self.drop()
            finally:
                self.guard.release()

    def __enter__(self) -> None:
        """Enter one operation: the guard held; the outermost to end honours :meth:`forget`.

        A plain method pair, not a generator context manager: it runs around every read.
        """
        self.guard.acquire()
        self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._forget_pending:
                self._forget_pending = False
                self.drop()
        finally:
            self.guard.release()
        if self._forget_pending:  # forget() ran between that check and the release
            self.forget()

    def drop(self) -> None:
        self._trusted_until = 0.0
        if self.opened is not None:
            with suppress(sqlcipher.Error):
                self.opened.conn.close()
            self.opened = None

    def run(self, doing: str, work: Callable[[sqlcipher.Connection], T]) -> T:
        """``work`` on the connection, reopened and run again while re-keys strand it."""
        with self:
            failed_under: int | None = None
            for _attempt in range(ATTEMPTS):
                conn = self.connection()
                version = self.opened.version if self.opened else None
                try:
                    return work(conn)
                except sqlcipher.Error as exc:
                    if is_key_failure(exc) and version != failed_under:
                        failed_under = version
                        self.drop()
                        continue
                    raise translate(exc, self._store, doing) from None
            raise IntegrityError(
                f"store {self._store!r} was re-keyed {ATTEMPTS} times while {doing}; try again"
            )

    def row(self, doing: str, sql: str, args: tuple[object, ...]) -> Any:
        """The first row of a read, or ``None``: :meth:`run` of ``one(sql, args)``, faster.

        On a connection whose key version is trusted (see ``RECHECK_S``) the
        statement runs straight away; anything else (no connection, a
        recheck due, a page that fails) takes the general way.
        """
        self.__enter__()
        try:
            opened = self.opened
            if (
                opened is not None
                and time.monotonic() < self._trusted_until
                and self.file.binding.keys.changes == self._saves_seen
            ):
                try:
                    rows = opened.conn.execute(sql, args).fetchall()
                except sqlcipher.Error:
                    pass  # stranded or damaged: the general way tells which
                else:
                    return rows[0] if rows else None
            return self.run(doing, lambda conn: one(conn, sql, args))
        finally:
            self.__exit__()

    def write(self, doing: str, work: Callable[[sqlcipher.Connection], None]) -> None:
        """``work`` in one write transaction, which commits only if it returns."""

        def begin(conn: sqlcipher.Connection) -> sqlcipher.Connection:
            # reads page 1: a stranded connection fails here, before ``work`` consumes anything
            conn.execute("BEGIN IMMEDIATE")
            return conn

        with self:
            conn = self.run(doing, begin)
            try:
                work(conn)
                conn.execute("COMMIT")
            except sqlcipher.Error as exc:
                _rollback(conn)
                raise translate(exc, self._store, doing) from None
            except BaseException:
                _rollback(conn)
                raise


def _rollback(conn: sqlcipher.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlcipher.Error):
            conn.execute("ROLLBACK")
