"""Open a SQLCipher 4 database with a raw 256-bit key, hardened and quiet.

The key is never a passphrase: SQLCipher's own PBKDF2 (256k iterations,
about 100 ms) would add nothing, since the raw key already comes out of
the unlocked key hierarchy.  :func:`database_key` derives it from one
version of a data keyset with HKDF-SHA256, so the database key is bound to
its keyset and to this use and is never the data key itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.errors import IntegrityError, KeyUnavailableError, StoreError
from strongroom_plugins.sqlcipher._errors import StoreBusyError, is_busy, is_key_failure

if TYPE_CHECKING:
    import sqlcipher3.dbapi2 as sqlcipher

__all__ = ["connect", "database_key"]

_INFO = b"strongroom/v1/sqlcipher-database:"


def database_key(material: bytes | memoryview, purpose: str) -> bytes:
    """The 32-byte SQLCipher key for ``purpose`` derived from one data key version."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + purpose.encode())
    return hkdf.derive(bytes(material))


def connect(
    path: Path,
    key: bytes,
    *,
    timeout: float = 5.0,
    isolation_level: str | None = None,
    factory: type[Any] | None = None,
    cached_statements: int | None = None,
) -> sqlcipher.Connection:
    """A connection to the database at ``path`` keyed with ``key``, verified to open.

    ``isolation_level`` and ``factory`` are passed to ``sqlcipher3.connect``
    (``None``: autocommit, the default here; ``""``: the DB-API's implicit
    transactions, what an ORM expects).  ``timeout`` is the busy timeout in
    seconds.  ``cached_statements`` bounds the prepared statements kept
    (sqlcipher3's default, 128, if ``None``): see ``_runner.STATEMENTS``.

    :raises strongroom.errors.IntegrityError: the file exists but ``key`` does not
        open it (another key, or a damaged file).
    :raises strongroom_plugins.sqlcipher._errors.StoreBusyError: another
        connection held the file locked past ``timeout``.
    :raises strongroom.errors.KeyUnavailableError: the sqlcipher3 package is missing.
    :raises strongroom.errors.StoreError: the file cannot be opened.
    """
    try:
        import sqlcipher3.dbapi2 as sqlcipher
    except ImportError:
        raise KeyUnavailableError("the sqlcipher3 package is not installed") from None
    if len(key) != 32:
        raise ValueError("a SQLCipher key is 32 bytes")
    try:
        options: dict[str, Any] = {"timeout": timeout, "isolation_level": isolation_level}
        if factory is not None:
            options["factory"] = factory
        if cached_statements is not None:
            options["cached_statements"] = cached_statements
        conn = sqlcipher.connect(str(path), check_same_thread=False, **options)
    except sqlcipher.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        conn.execute("PRAGMA cipher_memory_security = ON")
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # to the end: no txn left
    except sqlcipher.DatabaseError as exc:
        conn.close()
        if is_busy(exc):
            raise StoreBusyError(f"database {path} stayed locked by another connection") from None
        if not is_key_failure(exc):
            raise StoreError(f"cannot open database {path}: {exc}") from None
        raise IntegrityError(
            f"database {path} does not open with its key: another key, or a damaged file"
        ) from None
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn
