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
from typing import TypeVar

import sqlcipher3.dbapi2 as sqlcipher

from strongroom.errors import (
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    StoreError,
    StrongroomError,
)
from strongroom_plugins.sqlcipher._errors import is_key_failure, translate
from strongroom_plugins.sqlcipher._keying import KeyedFile, Opened

__all__ = ["Runner"]

T = TypeVar("T")

#: How many re-keys in a row an operation rides out before giving up.
ATTEMPTS = 5
#: How long a key version, once checked, is used without asking the key hierarchy again,
#: unless its ``changes`` moved (a lock, an idle timeout, a record saved in this process).
#: It bounds how late a version retired or destroyed by another process is noticed.
RECHECK_S = 0.05
#: Prepared statements the store's connection keeps (sqlcipher3 keeps 128).  Measured: on
#: a connection that had run a ``put_many`` and one more kind of statement (a dozen or
#: more kept), every read made two mlock and two munlock calls, SQLCipher's allocator
#: under ``cipher_memory_security``, and took 15 µs instead of 3.5; with 12 or fewer kept,
#: none.  Most likely the kept statements use up the connection's lookaside memory.  The
#: store's own statements are few, and ``get``'s stays on its cursor.
STATEMENTS = 8


class Runner:
    """The store's one connection, opened on first use and shared by its threads."""

    def __init__(self, file: KeyedFile) -> None:
        self.file = file
        self.keys = file.binding.keys
        self.guard = threading.RLock()
        self.opened: Opened | None = None
        #: A cursor of the open connection for ``SqlcipherStore.get``'s fast way (``None``
        #: whenever ``opened`` is), reused: a new cursor per read costs about 0.4 µs.
        self.cursor: sqlcipher.Cursor | None = None
        self.closed = False
        #: Operations of :meth:`run` and :meth:`write` running now (nested ones count).
        self._depth = 0
        #: Set by :meth:`forget` when it found an operation running: the last one to end drops.
        self.forget_pending = False
        #: ``time.monotonic()`` until which the open connection's key version needs no check.
        self.trusted_until = 0.0
        #: ``changes`` of the key hierarchy when the version was last checked.
        self.saves_seen = -1

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
            if now < self.trusted_until and saves == self.saves_seen:
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
        self.opened = self.file.open(cached_statements=STATEMENTS)
        self.cursor = self.opened.conn.cursor()
        self._trust(saves, now)
        return self.opened.conn

    def _trust(self, saves: int, now: float) -> None:
        """Use the version just checked until ``RECHECK_S`` passes or ``changes`` moves."""
        binding = self.file.binding
        if not binding.keys.asks_presence(binding.purpose):  # asked at every use
            self.trusted_until, self.saves_seen = now + RECHECK_S, saves

    def version(self) -> int:
        """The key version of the open connection (call within :meth:`run`)."""
        assert self.opened is not None  # noqa: S101 - run() opened it
        return self.opened.version

    def forget(self) -> None:
        """Close the connection, and its key with it, unless an operation holds it now.

        Called from another thread when the keys go (a lock, an idle
        timeout): it never waits; the busy operation closes the connection
        itself when it ends.  That holds in this thread too (the guard is
        re-entrant): called while one of its operations runs (a nested read
        ending, a lock from a blob's source), it leaves the connection to it.
        """
        self.forget_pending = True  # before trying: an operation ending now sees it
        if self.guard.acquire(blocking=False):
            try:
                if self._depth == 0:
                    self.forget_pending = False
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
            if self._depth == 0 and self.forget_pending:
                self.forget_pending = False
                self.drop()
        finally:
            self.guard.release()
        if self.forget_pending:  # forget() ran between that check and the release
            self.forget()

    def renew(self) -> None:
        """A new connection in place of the open one, opened before that one closes.

        For a connection left slow by a large batch (``SqlcipherStore.put_many``).
        Closing the file's last connection first would checkpoint its WAL and
        empty it; with no frames in the WAL, SQLite's pager asks the file
        system for the database's size (an ``fstat``) at every read
        transaction until the next write, about a tenth of a record read.
        The new connection's version is checked again at its first use.  If
        an operation holds the guard, or the new connection does not open,
        this is :meth:`forget`: the connection goes and the next use opens one.
        """
        if not self.guard.acquire(blocking=False):
            self.forget()
            return
        try:
            if self._depth or self.opened is None or self.closed:
                self.forget()
                return
            try:
                renewed = self.file.open(cached_statements=STATEMENTS)
            except StrongroomError:  # locked meanwhile, say: the next use says so
                self.drop()
                return
            self.drop()
            self.opened, self.cursor = renewed, renewed.conn.cursor()
        finally:
            self.guard.release()

    def drop(self) -> None:
        self.trusted_until = 0.0
        self.cursor = None
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

    def settle(self) -> None:
        """Honour a pending :meth:`forget` from a read that holds :attr:`guard` uncounted.

        ``SqlcipherStore.get`` runs its statement under the guard without
        entering (``_depth`` untouched), on :attr:`cursor` when the key version
        is trusted, and calls this before releasing the guard if
        ``forget_pending`` is set: ``_depth`` 0 then means no other operation
        of this thread is under way, so the connection goes now, as
        :meth:`__exit__` would drop it.  After releasing, it calls :meth:`forget`
        if ``forget_pending`` is set again, as :meth:`__exit__` does.
        """
        if self.forget_pending and self._depth == 0:
            self.forget_pending = False
            self.drop()

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
