"""``strongroom database key STORE --expose-key``: open a store's database by hand, for support.

Prints a script for the ``sqlcipher`` shell: ``PRAGMA key`` with the raw
256-bit key that keys the file now, then the file's cipher settings as
SQLCipher itself reports them (``PRAGMA cipher_settings``).  The key is
checked to open the file before it is printed.  Exposing it is an audit
event (``key.exposed``); the warning says how to make it worthless again.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from strongroom.audit import AuditEvent
from strongroom.cli._database import DatabaseStore, database_store
from strongroom.cli._output import emit
from strongroom.cli._session import opened
from strongroom.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    import argparse


def key(args: argparse.Namespace) -> int:
    """Print the PRAGMAs that open the store's database; refused without ``--expose-key``."""
    if not args.expose_key:
        raise UsageError(
            f"this prints the raw key of the database of store {args.store!r}: whoever sees "
            "it can read the database and every copy of it; add --expose-key to confirm"
        )
    with opened(args) as stack:
        store = database_store(stack, args.store)
        raw, version = _current_key(store)
        settings = _cipher_settings(store)
        path = store.database_path
        _verify(path, raw, settings)
        binding = getattr(store, "binding", None)
        if binding is not None:
            details = {"store": args.store, "purpose": binding.purpose, "version": str(version)}
            binding.audit(AuditEvent("key.exposed", binding.account, details=details))
    pragmas = [f"PRAGMA key = \"x'{raw.hex()}'\";", *settings]
    lines = [f"-- store {args.store!r}: sqlcipher {path}  (SQLCipher 4 or later)", *pragmas]
    data = {"store": args.store, "database": str(path), "key_version": version, "pragmas": pragmas}
    emit(args, data, lines)
    print(
        f"strongroom: warning: the key of store {args.store!r} is exposed: it opens this "
        "database and any copy or backup of it. Rotate it afterwards: strongroom keys "
        f"rotate --purpose store:{args.store}, then strongroom keys reencrypt (copies made "
        "before stay readable with the exposed key)",
        file=sys.stderr,
    )
    return 0


def _current_key(store: DatabaseStore) -> tuple[bytes, int]:
    """The raw key that opens the database now, and its key version (``database_key()``).

    :raises UsageError: the store does not offer its key.
    """
    offered = getattr(store, "database_key", None)
    if not callable(offered):
        raise UsageError("this store does not say which key opens its database")
    raw, version = offered()
    return bytes(raw), int(version)


def _cipher_settings(store: DatabaseStore) -> list[str]:
    """The file's cipher settings as SQLCipher prints them, one ``PRAGMA ...;`` each."""
    conn = store.connect()
    try:
        return [str(row[0]) for row in conn.execute("PRAGMA cipher_settings").fetchall()]
    finally:
        conn.close()


def _verify(path: Any, raw: bytes, settings: list[str]) -> None:
    """Open the file with exactly what is about to be printed.

    :raises IntegrityError: it does not open (nothing is printed).
    """
    from importlib import import_module
    from urllib.parse import quote

    sqlcipher: Any = import_module("sqlcipher3.dbapi2")  # the store's own dependency
    # percent-encoded: a "?", "#" or "%" in the path would otherwise end or alter the URI's
    # path, and SQLite would open (and create) another file, verifying nothing
    conn = sqlcipher.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{raw.hex()}'\"")
        for line in settings:
            conn.execute(line)
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except sqlcipher.DatabaseError:
        raise IntegrityError(
            f"the key found for {path} does not open it; nothing was printed"
        ) from None
    finally:
        conn.close()
