"""The ``files`` store's batch journal: many records installed all or nothing, one fsync.

A batch is sealed record by record into one private temporary file, which
is fsynced once.  Under the store's lock it is then renamed to ``journal``
in the store's directory and the directory fsynced: that rename commits
the batch.  Each record is then written beside its target without an
fsync and renamed into place (removing a blob of the same key, as ``put``
does), one ``syncfs`` makes all of it durable, and the journal is removed
and the directory fsynced, still under the lock.

A committed journal found later (the writer was killed) is replayed by
whoever next takes the lock, before anything else happens under it, and
readers look for one before they read (see ``_install``).  Replaying is
idempotent, and nothing else can write while the journal exists, so
replaying it twice cannot undo a later write.  A batch killed before its
rename leaves only a temporary file, which is ignored.  Counting objects by
key version counts a committed journal's entries too (``_inventory``).

Unconditional entries (``put_many``) are not bound to what they replace:
an old journal put back by hand is replayed like a fresh one, which rolls
its records back exactly as putting back their old files would.  That is
the documented rollback limit under one key version (threat model,
Rollback); once the floor rises past the journal's version, its records
are refused when read.  A journal that is not a regular file (a FIFO) is
refused without blocking.

An entry may be conditional (re-encryption): it is installed only if the
record's current bytes still hash to the SHA-256 the entry carries, so a
write made since wins, on replay too, and it keeps the record's
modification time, which a retention counts from (``_expiry``).  The pass that commits such a batch
has each record it replaces linked to a temporary name first, and frees
them all when it ends (see ``_reencrypt``); a replay by anyone else frees
them at once.

The journal holds ciphertext only: each record is a sealed object bound
to its 64-hex name, so an entry moved to another name fails when read.
Format: ``SRBJ`` and a format byte 1; per entry the name's 32 raw bytes,
a flag byte (1: conditional, then the 32-byte SHA-256), a u32 BE length
and the sealed record; then ``SRBE`` and the u32 BE number of entries.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from strongroom.errors import IntegrityError
from strongroom.formats import peek_key_version
from strongroom_plugins.stores import _disk
from strongroom_plugins.stores._layout import BLOBS, KEY_FILE_SUFFIX, RECORDS, scan_blob_names

__all__ = ["JOURNAL_FILE", "JournalWriter", "apply", "digest", "entries", "entry_versions"]

JOURNAL_FILE = "journal"
_MAGIC = b"SRBJ\x01"
_END = b"SRBE"
_COUNT = struct.Struct(">I")
_ENTRY = struct.Struct(">32sB")
_UNCONDITIONAL, _CONDITIONAL = 0, 1
#: Enough of a sealed record's start for ``peek_key_version``.
_PEEK = 16


def digest(data: bytes) -> bytes:
    """What a conditional entry expects of the record it replaces."""
    return hashlib.sha256(data).digest()


class JournalWriter:
    """Appends sealed records to a batch's temporary journal file."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.count = 0
        handle.write(_MAGIC)

    def add(self, name: str, sealed: bytes, expected: bytes | None = None) -> None:
        """Add the record ``name``; ``expected``: only if the current bytes have that digest."""
        flag = _UNCONDITIONAL if expected is None else _CONDITIONAL
        self._handle.write(_ENTRY.pack(bytes.fromhex(name), flag))
        if expected is not None:
            self._handle.write(expected)
        self._handle.write(_COUNT.pack(len(sealed)))
        self._handle.write(sealed)
        self.count += 1

    def finish(self) -> None:
        self._handle.write(_END + _COUNT.pack(self.count))


def entries(path: Path) -> Iterator[tuple[str, bytes, bytes | None]]:
    """``(name, sealed record, expected digest or None)`` of each entry, in order.

    :raises strongroom.errors.IntegrityError: the journal is not one this store
        wrote (it was fsynced whole before it was committed).
    """
    try:
        data = _disk.read_file(path)
    except _disk.NotRegularFileError:
        raise IntegrityError(f"{path} is not a regular file; the store never makes one") from None
    if data is None:
        return
    view = memoryview(data)
    end = len(view) - len(_END) - _COUNT.size
    if not data.startswith(_MAGIC) or end < len(_MAGIC) or view[end : end + 4] != _END:
        raise IntegrityError(f"{path} is not a complete batch journal")
    position, count = len(_MAGIC), 0
    while position < end:
        if position + _ENTRY.size > end:
            raise IntegrityError(f"{path} is not a complete batch journal")
        raw, flag = _ENTRY.unpack_from(view, position)
        position += _ENTRY.size
        expected = None
        if flag == _CONDITIONAL:
            expected = bytes(view[position : position + 32])
            position += 32
        elif flag != _UNCONDITIONAL:
            raise IntegrityError(f"{path} is not a complete batch journal")
        (length,) = _COUNT.unpack_from(view, position)
        position += _COUNT.size
        if position + length > end:
            raise IntegrityError(f"{path} is not a complete batch journal")
        yield raw.hex(), bytes(view[position : position + length]), expected
        position += length
        count += 1
    if _COUNT.unpack_from(view, end + len(_END))[0] != count:
        raise IntegrityError(f"{path} is not a complete batch journal")


def entry_versions(path: Path) -> list[int]:
    """The key version in each entry's header (unauthenticated); empty if there is no journal.

    For counting objects by version without the store's lock: the journal is
    renamed in whole, so it is read complete or not at all.

    :raises strongroom.errors.IntegrityError: it is not a complete journal.
    """
    return [peek_key_version(sealed[:_PEEK]) for _name, sealed, _expected in entries(path)]


def apply(root: Path, journal: Path, retired: list[str] | None = None) -> None:
    """Install every entry of the committed ``journal``, make it durable, remove the journal.

    Called under the store's lock.  With ``retired`` (a re-encryption pass),
    each record a conditional entry replaces is first given a temporary
    name beside it (``_disk.link_aside``), added to ``retired``: the pass
    frees them all when it ends.
    """
    records, blobs = os.fspath(root / RECORDS), os.fspath(root / BLOBS)
    shards: set[str] = set()
    blob_names = scan_blob_names(root)
    for name, sealed, expected in list(entries(journal)):  # all checked before any is applied
        shard = f"{records}/{name[:2]}"
        target = f"{shard}/{name}"
        if expected is not None:
            current = _disk.read_file(target)
            if current is None or digest(current) != expected:
                continue  # replaced or removed since it was read: that write wins
        if shard not in shards:
            _disk.ensure_private_dir(Path(shard))
            shards.add(shard)
        temp = _disk.write_unsynced(shard, name, sealed)
        if expected is not None:  # a re-seal, not a write: the record keeps its time
            _disk.keep_written_time(target, temp)
        if expected is not None and retired is not None:
            aside = _disk.link_aside(shard, name)
            if aside is not None:
                retired.append(aside)
        os.replace(temp, target)
        if expected is None and name in blob_names:  # as put does: the record replaces it
            blob = f"{blobs}/{name[:2]}/{name}"
            _disk.unlink_quietly(blob)
            _disk.unlink_quietly(blob + KEY_FILE_SUFFIX)  # after the blob: never one without it
    if shards:
        _disk.sync_filesystem(root)
    os.unlink(journal)
    _disk.fsync_dir(root)
