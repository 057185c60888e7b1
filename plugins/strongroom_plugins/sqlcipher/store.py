"""The ``sqlcipher`` store: records and blobs in one SQLCipher database, keyed by strongroom.

Layout under the store's directory (files 0600)::

    store.db                 the SQLCipher 4 database (WAL mode): every page encrypted
    store.db-wal, -shm       SQLite's write-ahead log (pages encrypted too) and its index
    store.key-version        which key version keys store.db (``_version_file``)
    store.lock               serialises creating and re-keying the file

The whole file is encrypted and authenticated page by page (AES-256-CBC
and HMAC-SHA512 over each page and its number) under a raw 256-bit key
derived with HKDF from one version of the store's data keyset
(``connection.database_key``): never a passphrase, so opening costs no
KDF.  Keys and values are plain columns *inside* the encrypted pages
(``_schema``, ``_records``), so ``keys(prefix)`` is an indexed range
query and ``put_many`` one transaction.  Blobs are chunked rows (``_blobs``).

Key versions apply to the whole file, not to each object: rotating the
keyset makes writes go on under the file's version until
:meth:`SqlcipherStore.reencrypt` re-keys the file (``_rekey``), and
:meth:`SqlcipherStore.versions_in_use` counts every object under the
file's version.  Retiring or destroying that version shreds the whole
database at once.  After a re-key the keyset's floor refuses an older
copy of the file put back (``_keying``).

Many readers and one writer at a time, across processes (WAL); a writer
waits up to ``busy_timeout`` seconds, then gets :class:`StoreBusyError`.
Every operation first checks that the account is unlocked and the file's
version still active (a locked account closes the connection, dropping
its key from SQLCipher's memory); a connection stranded by a re-key in
another process is reopened under the new version and the operation run
again (``_runner``).  ``connect()`` hands the application its own connections to the
same file (``_app``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path
from time import monotonic
from typing import Annotated

import sqlcipher3.dbapi2 as sqlcipher
from msgspec import Meta

from strongroom.durable import fsync_dir
from strongroom.errors import (
    IntegrityError,
    KeyLockedError,
    KeyUnavailableError,
    RecordNotFoundError,
    StoreError,
    UsageError,
)
from strongroom.settings import BackendSettings
from strongroom.store import ReencryptProgress, Store, StoreBinding
from strongroom_plugins.sqlcipher import _blobs, _rekey
from strongroom_plugins.sqlcipher._app import ManagedConnection, Origin
from strongroom_plugins.sqlcipher._errors import StoreBusyError
from strongroom_plugins.sqlcipher._keying import KeyedFile, RolledBackError
from strongroom_plugins.sqlcipher._records import (
    DROP_BLOB_OF_KEY,
    LOOKUP,
    MAX_KEY_BYTES,
    UPSERT_BLOB,
    UPSERT_RECORD,
    after,
    checked,
    lookup,
    put_over_blob,
)
from strongroom_plugins.sqlcipher._runner import Runner
from strongroom_plugins.sqlcipher._schema import one

__all__ = ["SqlcipherStore", "SqlcipherStoreSettings", "StoreBusyError"]

DATABASE = "store.db"
#: Rows in one ``put_many`` from which the connection is reopened afterwards.
_REOPEN_AFTER = 8192
#: Keys listed per statement: no read transaction stays open between pages.
_PAGE = 4096


class SqlcipherStoreSettings(BackendSettings, frozen=True, kw_only=True):
    """``[stores.<name>]`` settings of ``use = "sqlcipher"``."""

    #: Bytes per chunk of a blob: from 4 KiB to 16 MiB.
    chunk_size: Annotated[
        int, Meta(ge=4096, le=16 << 20, description="bytes per chunk of a blob")
    ] = 256 << 10
    #: Seconds a writer waits for another's lock before StoreBusyError.
    busy_timeout: Annotated[
        float, Meta(gt=0, le=3600, description="seconds to wait for another writer")
    ] = 5.0


class SqlcipherStore(Store[SqlcipherStoreSettings]):
    """Records and blobs in one SQLCipher database in the store's directory."""

    Settings = SqlcipherStoreSettings

    def __init__(
        self, settings: SqlcipherStoreSettings | None = None, *, binding: StoreBinding
    ) -> None:
        """Nothing is opened until first use: ``strongroom init`` builds stores before unlocking.

        :raises strongroom.errors.StoreError: the store's directory does not exist.
        """
        super().__init__(settings, binding=binding)
        if not binding.directory.is_dir():
            raise StoreError(
                f"cannot open the sqlcipher store in {binding.directory}: no such directory"
            )
        self._file = KeyedFile(binding, binding.directory / DATABASE, self.settings.busy_timeout)
        self._runner = Runner(self._file)
        self._run = self._runner.run
        self._write = self._runner.write

    def __repr__(self) -> str:
        where = f"{self.binding.account}/{self.binding.name} in {self.binding.directory}"
        return f"<SqlcipherStore {where}>"

    def close(self) -> None:
        self._runner.close()

    def forget_keys(self) -> None:
        """The keys went: close the connection, so SQLCipher's memory holds the key no more."""
        self._runner.forget()

    def database_key(self) -> tuple[bytes, int]:
        """The raw key that opens the database file now, and its key version: for support access.

        ``strongroom database key --expose-key`` prints it; nothing else
        needs it.  Opening the file first settles which version keys it.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        """
        version = self._run("reading the key version", lambda _conn: self._runner.version())
        return self._file.key(version), version

    # managed connections for the application's own tables

    @property
    def database_path(self) -> Path:
        """The database file; the application never needs its key."""
        return self._file.path

    def connect(self) -> sqlcipher.Connection:
        """A new DB-API connection to the store's database, under its current key version.

        It is the application's: its own tables live beside the store's
        (``strongroom_*``, which it should leave alone), and it closes it.
        Transactions are the DB-API's (implicit ``BEGIN`` before a write).
        After a re-key its next statement raises ``DatabaseKeyError``
        (``rekeyed`` set): open a new one.  Once the account locks (or the
        version is retired) its next statement closes it, dropping the key,
        and raises ``KeyLockedError`` (``KeyUnavailableError``).

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the file's version is retired
            or destroyed.
        :raises strongroom.errors.IntegrityError: the file fails verification.
        """
        self._runner.check_open()
        opened = self._file.open(isolation_level="", factory=ManagedConnection)
        conn = opened.conn
        if not isinstance(conn, ManagedConnection):  # pragma: no cover - the factory makes one
            raise TypeError("sqlcipher3 ignored the connection factory")
        keys, purpose = self.binding.keys, self.binding.purpose
        conn.strongroom_origin = Origin(
            self.binding.name,
            opened.version,
            self._file.sidecar,
            check=partial(keys.data_key, purpose, opened.version),
        )
        return conn

    # records

    def put(self, key: str, value: bytes) -> None:
        """One statement (SQLCipher's memory security makes each cost a few syscalls).

        Only over a blob is the blob dropped first, in one transaction.
        """
        name, value = checked(key), bytes(value)
        written = self._run(
            "writing a record",
            lambda conn: conn.execute(UPSERT_RECORD, (name, value, time.time())).rowcount,
        )
        if not written:  # the key holds a blob

            def replace(conn: sqlcipher.Connection) -> None:
                put_over_blob(conn, name, value, time.time())

            self._write("writing a record", replace)

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every ``(key, value)`` in one transaction: all of them, or none.

        :raises strongroom.errors.UsageError: a key is invalid; nothing is stored.
        :raises StoreBusyError: another writer held the lock past the busy timeout.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """
        now = time.time()

        rows = [
            (checked(key), value if type(value) is bytes else bytes(value), now)
            for key, value in items
        ]

        def write(conn: sqlcipher.Connection) -> None:
            # One executemany; the upsert leaves a key holding a blob alone, so when fewer
            # rows changed than were given, those keys take the slow way, in order.  Looking
            # for them first would cost every batch a read inside its write transaction,
            # which puts the connection in SQLCipher's slow state (docs/benchmarks.md).
            before = conn.total_changes
            conn.executemany(UPSERT_RECORD, rows)
            if conn.total_changes - before == len(rows):
                return
            sql = "SELECT key FROM strongroom_records WHERE blob IS NOT NULL"
            blobs = {row[0] for row in conn.execute(sql).fetchall()}
            for name, value, _ in rows:
                if name in blobs:
                    put_over_blob(conn, name, value, now)

        self._write("writing records", write)
        if len(rows) >= _REOPEN_AFTER:
            # A batch larger than the page cache leaves the connection in SQLCipher's slow
            # state under memory security (every later statement pays for locking and
            # wiping its allocations): a new connection, about a millisecond, reads 2x faster.
            # Opened before the old one closes, which leaves the WAL as it is (``renew``).
            self._runner.renew()

    def get(self, key: str) -> bytes:
        """One indexed statement, in one function: this runs on every read.

        The fast way is ``Runner``'s general way cut short, and safe only
        where that would do nothing more: the guard held, a connection whose
        key version is trusted (``RECHECK_S``, and ``changes`` not moved) and
        the statement run to its end on the runner's cursor.  Anything else
        (no connection, a recheck due, a page that fails) takes the general
        way, which checks the key, rides out re-keys and translates errors.
        It reports its own refusals to the audit hook: ``_audited`` below.
        """
        runner = self._runner
        try:
            if type(key) is not str or not key.isascii() or len(key) > MAX_KEY_BYTES:
                checked(key)  # what the common case skips: it raises UsageError
            rows = None
            guard = runner.guard
            guard.acquire()  # not ``with``: its protocol costs more than the two calls
            try:
                cursor = runner.cursor
                if (
                    cursor is not None
                    and monotonic() < runner.trusted_until
                    and runner.keys.changes == runner.saves_seen
                ):
                    try:
                        rows = cursor.execute(LOOKUP, (key,)).fetchall()
                    except sqlcipher.Error:
                        rows = None  # stranded or damaged: the general way tells which
                if runner.forget_pending:
                    runner.settle()
            finally:
                guard.release()
            if runner.forget_pending:  # forget() ran between that check and the release
                runner.forget()
            if rows is None:
                found = runner.run("reading a record", partial(one, sql=LOOKUP, args=(key,)))
            else:
                found = rows[0] if rows else None
        except IntegrityError as exc:
            self._refused(exc)
            raise
        if found is None or found[0] is None:
            raise RecordNotFoundError(f"no record {key!r} in store {self.binding.name!r}")
        value = found[0]
        return value if type(value) is bytes else bytes(value)

    # ``Store`` wraps each audited read in a generic reporter (``*args``, a type test of the
    # result) unless it is marked as reporting its own: ``get`` does, at no cost until an
    # IntegrityError.  A subclass that overrides ``get`` is wrapped as usual.
    get._audited = True  # type: ignore[attr-defined]

    def delete(self, key: str) -> None:
        name = checked(key)
        removed: list[int] = []

        def remove(conn: sqlcipher.Connection) -> None:
            sql = "DELETE FROM strongroom_records WHERE key = ? RETURNING blob"
            rows = conn.execute(sql, (name,)).fetchall()
            if rows and rows[0][0] is not None:
                conn.execute("DELETE FROM strongroom_blobs WHERE id = ?", (rows[0][0],))
            removed.append(len(rows))

        self._write("deleting", remove)
        if not removed[0]:
            raise RecordNotFoundError(f"no record {key!r} in store {self.binding.name!r}")

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys from ``prefix`` on, an indexed range query a page of keys at a time."""
        upper = after(prefix)
        first = self._keys_page(prefix, upper, None)
        return self._more_keys(prefix, upper, first)

    def _more_keys(self, prefix: str, upper: str | None, page: list[str]) -> Iterator[str]:
        while page:
            yield from page
            if len(page) < _PAGE:
                return
            page = self._keys_page(prefix, upper, page[-1])

    def _keys_page(self, prefix: str, upper: str | None, after: str | None) -> list[str]:
        sql = "SELECT key FROM strongroom_records WHERE key >= ?"
        args: list[object] = [checked(prefix)]
        if upper is not None:
            sql, args = sql + " AND key < ?", [*args, upper]
        if after is not None:
            sql, args = sql + " AND key > ?", [*args, after]
        sql += f" ORDER BY key LIMIT {_PAGE}"
        return self._run("listing keys", lambda conn: [row[0] for row in conn.execute(sql, args)])

    # blobs

    def put_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        """Stream a blob in, in one transaction: it replaces ``key`` only once complete.

        The write lock is held while ``chunks`` is read: other writers wait
        for a slow source (up to their busy timeout).

        :raises StoreBusyError: another writer held the lock past the busy timeout.
        """
        name = checked(key)

        def write(conn: sqlcipher.Connection) -> None:
            blob = _blobs.write(conn, self.settings.chunk_size, chunks)
            conn.execute(DROP_BLOB_OF_KEY, (name,))
            conn.execute(UPSERT_BLOB, (name, blob.id, time.time()))

        self._write("writing a blob", write)

    def get_blob(self, key: str) -> Iterator[bytes]:
        blob = self._blob(key)
        return self._stream(key, blob)

    def get_any(self, key: str) -> Iterator[bytes]:
        """The record or blob under ``key``, looked up in one statement."""
        name = checked(key)

        def find(conn: sqlcipher.Connection) -> bytes | _blobs.BlobInfo | None:
            found = lookup(conn, name)
            if found is None or found[0] is not None:
                return None if found is None else bytes(found[0])  # type: ignore[arg-type]
            return _blobs.info(conn, found[1])  # type: ignore[arg-type]

        value = self._run("reading", find)
        if value is None:
            raise RecordNotFoundError(f"no record or blob {key!r} in store {self.binding.name!r}")
        if isinstance(value, bytes):
            return iter((value,))
        return self._stream(key, value)

    def get_blob_range(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read only the chunks that cover the range, in one statement."""
        if offset < 0 or (length is not None and length < 0):
            raise UsageError("offset and length must not be negative")
        blob = self._blob(key)
        end = blob.size if length is None else offset + length
        data = self._run(
            "reading a blob", lambda conn: _blobs.chunks_covering(conn, blob, offset, end)
        )
        if data is None:
            raise self._changed(key)
        return data

    def _blob(self, key: str) -> _blobs.BlobInfo:
        name = checked(key)

        def find(conn: sqlcipher.Connection) -> _blobs.BlobInfo | None:
            found = lookup(conn, name)
            return None if found is None or found[1] is None else _blobs.info(conn, found[1])

        blob = self._run("reading a blob", find)
        if blob is None:
            raise RecordNotFoundError(f"no blob {key!r} in store {self.binding.name!r}")
        return blob

    def _stream(self, key: str, blob: _blobs.BlobInfo) -> Iterator[bytes]:
        for seq in range(blob.count):
            data = self._run("reading a blob", partial(_blobs.chunk, blob=blob, seq=seq))
            if data is None:
                raise self._changed(key)
            yield data

    def _changed(self, key: str) -> StoreError:
        return StoreError(
            f"the blob {key!r} in store {self.binding.name!r} was replaced or deleted "
            "while being read; read it again"
        )

    # keys: re-keying, counting, shredding, retention

    def reencrypt(self) -> Iterator[ReencryptProgress]:
        """Re-key the whole file to the primary version, then raise the keyset's floor.

        Yields ``(0, objects)`` before and ``(objects, objects)`` after, with
        the bytes rewritten (the whole file).  Killed at any point, the file
        opens afterwards under the old or the new version, whole (``_rekey``);
        running it again finishes the job.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises StoreBusyError: a writer held the lock past the busy timeout.
        """
        keys, purpose = self.binding.keys, self.binding.purpose
        target = keys.primary_version(purpose)
        total = self._count() if self._file.exists() else 0
        yield ReencryptProgress(0, total)
        with self._runner.guard:
            self._runner.drop()
            rewritten = _rekey.rekey(self._file, target)
        yield ReencryptProgress(total, total, rewritten)

    def versions_in_use(self) -> dict[int, int]:
        """``{file's version: objects}``: every object is under the file's one version.

        An existing database counts as at least one object even when empty:
        its schema and any application tables are under that version too.
        """
        if not self._file.exists():
            return {}
        try:
            count = self._count()
            version = self._runner.opened.version if self._runner.opened else 0
        except KeyLockedError:
            raise
        except RolledBackError as exc:
            return {exc.version: 1}
        except KeyUnavailableError:
            recorded = self._file.sidecar.read()
            return {} if recorded is None else {recorded.version: 1}
        return {version: max(count, 1)}

    def unreadable(self) -> Iterator[tuple[str, int]]:
        """Yield ``("database", version)`` if the whole file is shredded, rolled back or gone.

        Gone: deleted or emptied while its sidecar still names a version (a
        purge killed half-way leaves that too); purging then removes the sidecar.
        """
        if not self._file.exists():
            if self._file.sidecar.path.exists():
                recorded = self._file.sidecar.read()
                yield ("database", recorded.version if recorded else 0)
            return
        try:
            with self._runner.guard:
                self._runner.connection()
        except KeyLockedError:
            raise
        except RolledBackError as exc:
            yield ("database", exc.version)
        except KeyUnavailableError:
            recorded = self._file.sidecar.read()
            yield ("database", recorded.version if recorded else 0)

    def purge_unreadable(self) -> int:
        """Delete the database if :meth:`unreadable` names it (its -wal, -shm and sidecar too)."""
        if not list(self.unreadable()):
            return 0
        path = self._file.path
        with self._runner.guard, self._file.sidecar.locked():
            self._runner.drop()
            for name in (path.name + "-wal", path.name + "-shm", path.name):
                with suppress(FileNotFoundError):
                    os.unlink(path.with_name(name))
            self._file.sidecar.remove()
            fsync_dir(path.parent)
        return 1

    def purge_expired(self, written_before: float) -> int:
        """Delete every record and blob written before ``written_before`` (Unix seconds)."""
        if not self._file.exists():
            return 0
        removed: list[int] = []

        def purge(conn: sqlcipher.Connection) -> None:
            conn.execute(
                "DELETE FROM strongroom_blobs WHERE id IN (SELECT blob FROM strongroom_records "
                "WHERE written_at < ? AND blob IS NOT NULL)",
                (written_before,),
            )
            sql = "DELETE FROM strongroom_records WHERE written_at < ?"
            removed.append(conn.execute(sql, (written_before,)).rowcount)

        self._write("purging expired data", purge)
        return removed[0]

    def _count(self) -> int:
        found = self._run("counting", partial(one, sql="SELECT count(*) FROM strongroom_records"))
        return int(found[0])
