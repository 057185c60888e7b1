"""What a device remembers about sync, kept in the synced store itself.

Under the reserved prefix ``strongroom.sync/`` of the store (so sealed
under the store's own keyset like its records, and never synced):

====================================  ==========================================
``strongroom.sync/key``               the account's sync key: suite, version, key
``strongroom.sync/cursor``            the last ``next`` of ``changes`` applied
``strongroom.sync/seen/<key>``        the server seq and content digest last agreed
``strongroom.sync/upload/<key>``      a blob upload under way (resumable)
``strongroom.sync/conflict/<key>``    a local write that lost a conflict
``strongroom.sync/conflict-blob/<k>`` ... its blob, when it was one
====================================  ==========================================

A digest is SHA-256 over a kind byte (``r`` record, ``b`` blob) and the
plaintext; it lives only inside the encrypted store.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import msgspec

from strongroom.errors import IntegrityError, RecordNotFoundError

if TYPE_CHECKING:
    from strongroom.store import Store

__all__ = [
    "CONFLICT",
    "CONFLICT_BLOB",
    "KEY",
    "RESERVED",
    "ConflictCopy",
    "Seen",
    "SyncKeyRecord",
    "SyncState",
    "Upload",
    "blob_digest",
    "record_digest",
]

#: Keys under this prefix are the framework's own and are never synced.
RESERVED = "strongroom."
_BASE = "strongroom.sync/"
KEY = _BASE + "key"
_CURSOR = _BASE + "cursor"
_SEEN = _BASE + "seen/"
_UPLOAD = _BASE + "upload/"
CONFLICT = _BASE + "conflict/"
CONFLICT_BLOB = _BASE + "conflict-blob/"


class SyncKeyRecord(msgspec.Struct, frozen=True):
    suite: str
    version: int
    key: bytes

    def __repr__(self) -> str:
        return f"SyncKeyRecord({self.suite}, v{self.version}, key hidden)"


class Seen(msgspec.Struct, frozen=True):
    """The key's server seq and the digest of the content both sides hold at it."""

    seq: int
    #: ``None``: deleted.
    digest: bytes | None
    kind: Literal["record", "blob", "deleted"]


class Upload(msgspec.Struct, frozen=True):
    """A blob upload: the staged ciphertext file, its sealed manifest, the commit's key."""

    digest: bytes
    base_seq: int
    staged: str
    envelope: bytes
    idempotency_key: str


class ConflictCopy(msgspec.Struct, frozen=True):
    kind: Literal["record", "blob", "deleted"]
    value: bytes | None = None

    def __repr__(self) -> str:
        return f"ConflictCopy({self.kind})"


def record_digest(value: bytes) -> bytes:
    return hashlib.sha256(b"r" + value).digest()


def blob_digest(chunks: Iterable[bytes]) -> bytes:
    digest = hashlib.sha256(b"b")
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()


class SyncState:
    """Typed access to the ``strongroom.sync/`` records of ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _get(self, key: str, kind: type[msgspec.Struct] | type[int]) -> object | None:
        try:
            data = self.store.get(key)
        except RecordNotFoundError:
            return None
        try:
            return msgspec.msgpack.decode(data, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise IntegrityError("a sync state record is malformed") from None

    def sync_key(self) -> SyncKeyRecord | None:
        found = self._get(KEY, SyncKeyRecord)
        return found if isinstance(found, SyncKeyRecord) else None

    def set_sync_key(self, record: SyncKeyRecord) -> None:
        self.store.put(KEY, msgspec.msgpack.encode(record))

    def cursor(self) -> int:
        found = self._get(_CURSOR, int)
        return found if isinstance(found, int) else 0

    def seen(self, key: str) -> Seen | None:
        found = self._get(_SEEN + key, Seen)
        return found if isinstance(found, Seen) else None

    def all_seen(self) -> dict[str, Seen]:
        seen = {}
        for name in list(self.store.keys(_SEEN)):
            found = self.seen(name[len(_SEEN) :])
            if found is not None:
                seen[name[len(_SEEN) :]] = found
        return seen

    def save(
        self,
        seen: dict[str, Seen],
        cursor: int | None = None,
        records: Sequence[tuple[str, bytes, Seen]] = (),
    ) -> None:
        """Record ``seen``, pulled ``records`` with theirs, and ``cursor`` in one batch.

        Atomic where the store's batches are: a process killed before it
        leaves none of them, so a pulled value is never held without the
        server state it was agreed at (a later local edit would otherwise
        look like a conflict), and the cursor never passes an entry not yet
        applied.
        """
        items = [(_SEEN + key, msgspec.msgpack.encode(value)) for key, value in seen.items()]
        for key, value, agreed in records:
            items += [(key, value), (_SEEN + key, msgspec.msgpack.encode(agreed))]
        if cursor is not None:
            items.append((_CURSOR, msgspec.msgpack.encode(cursor)))
        if items:
            self.store.put_many(items)

    def uploads(self) -> Iterator[tuple[str, Upload]]:
        for name in list(self.store.keys(_UPLOAD)):
            found = self._get(name, Upload)
            if isinstance(found, Upload):
                yield name[len(_UPLOAD) :], found

    def set_upload(self, key: str, upload: Upload) -> None:
        self.store.put(_UPLOAD + key, msgspec.msgpack.encode(upload))

    def end_upload(self, key: str) -> None:
        with contextlib.suppress(RecordNotFoundError):
            self.store.delete(_UPLOAD + key)

    def conflict(self, key: str) -> ConflictCopy | None:
        found = self._get(CONFLICT + key, ConflictCopy)
        return found if isinstance(found, ConflictCopy) else None

    def conflicts(self) -> list[str]:
        return [name[len(CONFLICT) :] for name in self.store.keys(CONFLICT)]

    def set_conflict(self, key: str, copy: ConflictCopy) -> None:
        self.store.put(CONFLICT + key, msgspec.msgpack.encode(copy))

    def end_conflict(self, key: str) -> None:
        for name in (CONFLICT_BLOB + key, CONFLICT + key):
            with contextlib.suppress(RecordNotFoundError):
                self.store.delete(name)
