"""Open the store's database under the key version that really keys it.

The sidecar (``_version_file``) names a version; opening the file with
that version's key proves it.  If it does not open, the keyset's other
active versions at or above its floor are tried, newest first: a re-key
killed after its commit but before its sidecar write leaves the file
under the target version, and a lost sidecar costs only a few attempts.
Whatever opens the file is written back to the sidecar.

What does not open it is told apart, for the error's exit code:

- the file opens only under a version below the keyset's floor: an older
  copy was put back after a re-key (``IntegrityError``, rolled back);
- the recorded version is retired or destroyed and nothing else opens it:
  its data is shredded (``KeyUnavailableError``);
- nothing opens it: damaged, truncated, or another store's or account's
  file (``IntegrityError``);
- the account is locked: ``KeyLockedError`` before anything is tried.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import sqlcipher3.dbapi2 as sqlcipher

from strongroom.errors import IntegrityError, KeyLockedError, KeyUnavailableError, StoreError
from strongroom.store import StoreBinding
from strongroom_plugins.sqlcipher import _schema
from strongroom_plugins.sqlcipher._errors import is_key_failure, translate
from strongroom_plugins.sqlcipher._version_file import KeyVersionFile, Recorded
from strongroom_plugins.sqlcipher.connection import connect, database_key

__all__ = ["KeyedFile", "Opened", "RolledBackError"]


class RolledBackError(IntegrityError):
    """The file opens only under a version below the floor: an older copy was put back."""

    def __init__(self, message: str, *, version: int) -> None:
        super().__init__(message)
        self.version = version


@dataclass
class Opened:
    """A connection and the key version it was opened with."""

    conn: sqlcipher.Connection
    version: int


class KeyedFile:
    """One store's database file, its sidecar, and how to open it."""

    def __init__(self, binding: StoreBinding, path: Path, timeout: float) -> None:
        self.binding = binding
        self.path = path
        self.sidecar = KeyVersionFile(path)
        self.timeout = timeout

    @property
    def _store(self) -> str:
        return self.binding.name

    def key(self, version: int) -> bytes:
        """The database key of ``version``.

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the version is retired or destroyed.
        """
        purpose = self.binding.purpose
        material = self.binding.keys.data_key(purpose, version).material
        return database_key(material.view(), purpose)

    def exists(self) -> bool:
        """Whether a database was ever written here (an empty file counts as none)."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def open(
        self,
        *,
        isolation_level: str | None = None,
        factory: type | None = None,
        wait: bool = True,
        cached_statements: int | None = None,
    ) -> Opened:
        """A verified connection under the version that keys the file; created if missing.

        If nothing opens it while a re-key holds the store's lock, it waits
        for the re-key and looks again (unless ``wait`` is off: the caller
        holds the lock).

        :raises strongroom.errors.KeyLockedError: the account is locked.
        :raises strongroom.errors.KeyUnavailableError: the file's version is retired
            or destroyed.
        :raises strongroom.errors.IntegrityError: no active version opens the file,
            or only one below the floor does (rolled back).
        """
        failure: Exception = IntegrityError(f"store {self._store!r}: its database did not open")
        for _round in range(4):
            keys, purpose = self.binding.keys, self.binding.purpose
            floor = keys.floor(purpose)  # raises KeyLockedError first
            if not self.exists():
                if self.sidecar.path.exists():
                    raise IntegrityError(
                        f"store {self._store!r}: its database file is missing or empty, though "
                        f"{self.sidecar.path.name} says one was written: deleted or truncated; "
                        f"restore it (or delete {self.sidecar.path.name} to start empty)"
                    )
                return self._create(isolation_level, factory, cached_statements)
            recorded = self.sidecar.read()
            opened = self._resolve(recorded, floor, isolation_level, factory, cached_statements)
            if isinstance(opened, Opened):
                return opened
            failure = opened
            # a re-key elsewhere may have moved the file between two attempts: look again
            if self.sidecar.read() != recorded:
                continue
            if not wait:
                break
            with self.sidecar.locked(wait=False) as free:
                if free:
                    break
            with self.sidecar.locked():  # one is running: wait for it to finish
                pass
        raise failure

    def _resolve(
        self,
        recorded: Recorded | None,
        floor: int,
        isolation_level: str | None,
        factory: type | None,
        cached_statements: int | None = None,
    ) -> Opened | Exception:
        """Try the recorded versions, then every active one at or above the floor."""
        keys, purpose = self.binding.keys, self.binding.purpose
        tried: set[int] = set()
        unavailable: KeyUnavailableError | None = None
        wanted = recorded.candidates() if recorded else []
        wanted += range(keys.primary_version(purpose), 0, -1)
        for version in wanted:
            if version in tried or version < floor:
                continue
            tried.add(version)
            try:
                opened = self._try(version, isolation_level, factory, cached_statements)
            except KeyLockedError:
                raise
            except KeyUnavailableError as exc:
                if recorded and version == recorded.version:
                    unavailable = exc
                continue
            if opened is not None:
                self._note(recorded, version)
                if max(floor, 1) < version and recorded == Recorded(version):
                    # the sidecar confirms the file is wholly under ``version``: a re-key
                    # killed after recording it but before raising the floor is finished
                    # here, so an older copy put back now is refused, not re-keyed later
                    keys.raise_floor(purpose, version)
                return opened
        return self._why_not(recorded, floor, unavailable)

    def _try(
        self,
        version: int,
        isolation_level: str | None,
        factory: type | None,
        cached_statements: int | None = None,
    ) -> Opened | None:
        try:
            conn = connect(
                self.path,
                self.key(version),
                timeout=self.timeout,
                isolation_level=isolation_level,
                factory=factory,
                cached_statements=cached_statements,
            )
        except IntegrityError:
            return None
        try:
            _schema.ensure(conn, store=self._store, account=self.binding.account)
        except sqlcipher.Error as exc:
            conn.close()
            if is_key_failure(exc):  # re-keyed since page 1 was read, or damaged: see open()
                return None
            raise translate(exc, self._store, "opening its database") from None
        except BaseException:
            conn.close()
            raise
        return Opened(conn, version)

    def _note(self, recorded: Recorded | None, version: int) -> None:
        """Record ``version`` if the sidecar says otherwise; a re-key in progress is left alone.

        A re-key that was killed after its commit finished its work: its
        floor is raised here, as it would have done.
        """
        if recorded == Recorded(version):
            return
        with self.sidecar.locked(wait=False) as held:
            if not held:  # a re-key runs now: it writes the sidecar itself
                return
            now = self.sidecar.read()
            if now == Recorded(version):
                return
            self.sidecar.write(Recorded(version))
        if recorded is not None and recorded.target == version:
            self.binding.keys.raise_floor(self.binding.purpose, version)

    def _why_not(
        self, recorded: Recorded | None, floor: int, unavailable: KeyUnavailableError | None
    ) -> Exception:
        purpose = self.binding.purpose
        for version in range(floor - 1, 0, -1):
            try:
                opened = self._try(version, None, None)
            except KeyUnavailableError:
                continue
            if opened is not None:
                opened.conn.close()
                return RolledBackError(
                    f"store {self._store!r}: its database is under {purpose} key version "
                    f"{version}, older than the last completed re-key (floor {floor}): an "
                    "older copy was put back (rolled back)",
                    version=version,
                )
        if unavailable is not None and recorded is not None:
            return KeyUnavailableError(
                f"store {self._store!r}: its database is keyed under {purpose} version "
                f"{recorded.version}, which can no longer decrypt (retired or destroyed)"
            )
        return IntegrityError(
            f"store {self._store!r}: its database does not open with any active key "
            "version: a damaged, truncated or replaced file"
        )

    def _create(
        self, isolation_level: str | None, factory: type | None, cached_statements: int | None
    ) -> Opened:
        """Make the database under the primary version, then record the version.

        In that order: a kill in between leaves a database the opener finds
        by trying versions, never a sidecar without its database (which
        :meth:`open` refuses as a deleted file).
        """
        keys, purpose = self.binding.keys, self.binding.purpose
        with self.sidecar.locked():
            if not self.exists():  # else another process made it meanwhile
                version = keys.primary_version(purpose)
                key = self.key(version)
                # owner-only before SQLite opens it: its -wal and -shm files copy this mode
                _create_private_file(self.path, self._store)
                conn = connect(self.path, key, timeout=self.timeout)
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    _schema.ensure(conn, store=self._store, account=self.binding.account)
                finally:
                    conn.close()
                self.sidecar.write(Recorded(version))
            return self.open(
                isolation_level=isolation_level,
                factory=factory,
                wait=False,
                cached_statements=cached_statements,
            )


def _create_private_file(path: Path, store: str) -> None:
    """Create ``path`` empty and owner-only, or check the empty one there is a regular file.

    Never blocks on a FIFO put in its place, nor follows a link.

    :raises strongroom.errors.StoreError: something else than a regular file is there.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ELOOP):  # a FIFO, a symbolic link
            raise StoreError(f"store {store!r}: {path} is not a regular file") from None
        raise StoreError(
            f"store {store!r}: cannot create its database {path}: {exc.strerror}"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"store {store!r}: {path} is not a regular file")
    finally:
        os.close(fd)
