"""Re-key the database to a new key version with ``PRAGMA rekey``, crash-safely.

``PRAGMA rekey`` rewrites every page under the new key in one write
transaction.  In WAL mode the new pages go to the WAL and become the
database at the commit frame; until then readers and recovery see the old
pages, after it the new ones.  A kill before the commit leaves frames
that recovery discards; a kill after it, even mid-checkpoint, leaves
committed frames that recovery replays.  So the file is always wholly
under one version.  Tested by killing a child process at every step
below and at random moments inside the pragma (``test_sqlcipher_store_crash``).

The steps, under the store's lock (``store.lock``)::

    0. BEGIN IMMEDIATE                          waits for writers up to the busy timeout
    1. sidecar: {version: old, target: new}     the opener will try both
    2. PRAGMA rekey, COMMIT (synchronous=FULL)  the commit is durable before 3
    3. passive checkpoint                       shrinks the WAL if no reader holds it
    4. sidecar: {version: new}
    5. raise the keyset's floor to new          an older copy is now refused

A kill between 2 and 5 is repaired by the next opener (``_keying``),
which also raises the floor (the next ``reencrypt`` would too).
Connections opened before the re-key (another process, or an
application's own) fail their next statement and are opened again.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlcipher3.dbapi2 as sqlcipher

from strongroom_plugins.sqlcipher._errors import translate
from strongroom_plugins.sqlcipher._keying import KeyedFile
from strongroom_plugins.sqlcipher._version_file import Recorded

__all__ = ["STEPS", "on_step", "rekey"]

STEPS = ("locked", "intent-recorded", "rekeyed", "checkpointed", "recorded", "floor-raised")


def _no_op(_step: str) -> None:
    pass


#: Called with each of ``STEPS`` as a re-key passes it; crash tests kill the process here.
on_step: Callable[[str], None] = _no_op


def rekey(keyed: KeyedFile, target: int) -> int:
    """Re-key the file to ``target``; return the bytes rewritten (0 if already there).

    :raises strongroom.errors.KeyLockedError: the account is locked.
    :raises strongroom_plugins.sqlcipher._errors.StoreBusyError: another
        connection held a write transaction past the busy timeout; nothing changed.
    """
    binding = keyed.binding
    rewritten = 0
    if not keyed.exists():  # nothing written yet: created under the primary when it is
        return 0
    with keyed.sidecar.locked():
        on_step("locked")
        opened = keyed.open(wait=False)  # this process holds the lock
        conn = opened.conn
        try:
            if opened.version != target:
                rewritten = _rewrite(keyed, conn, opened.version, target)
        finally:
            conn.close()
    binding.keys.raise_floor(binding.purpose, target)
    on_step("floor-raised")
    return rewritten


def _rewrite(keyed: KeyedFile, conn: sqlcipher.Connection, old: int, target: int) -> int:
    key = keyed.key(target)
    store = keyed.binding.name
    conn.execute("PRAGMA synchronous = FULL")
    try:  # the write lock first: a busy database is then told apart from a failed re-key
        conn.execute("BEGIN IMMEDIATE")
    except sqlcipher.Error as exc:
        raise translate(exc, store, "re-keying") from None
    keyed.sidecar.write(Recorded(old, target))
    on_step("intent-recorded")
    try:
        pages = conn.execute("PRAGMA page_count").fetchall()[0][0]
        page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
        conn.execute(f"PRAGMA rekey = \"x'{key.hex()}'\"").fetchall()
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        keyed.sidecar.write(Recorded(old))
        if isinstance(exc, sqlcipher.Error):
            raise translate(exc, store, "re-keying") from None
        raise
    on_step("rekeyed")
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    on_step("checkpointed")
    keyed.sidecar.write(Recorded(target))
    on_step("recorded")
    return int(pages) * int(page_size)
