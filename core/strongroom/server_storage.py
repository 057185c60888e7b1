"""The ``ServerStorage`` slot: what the sync server keeps, per account, as opaque bytes.

The server never holds a data key or a plaintext: a record is ciphertext
the client sealed, a blob is a client-made manifest plus encrypted chunks
checked against the SHA-256 hashes the client declared.  What it does hold
in the clear is each device's request-signing MAC key, so the verifier can
check signatures: a copy of the database lets its holder sign requests as
any device, and must be guarded as secret material.

Every write of an account gets a server-assigned sequence number (``seq``),
strictly increasing per account, in commit order, so a client pulls by
cursor (``pull(account, after=cursor)``) and misses nothing.  Conflicting
writes to one key follow one rule: a change that names the ``base_seq`` it
was made against is applied only if the key is still at that seq
(compare-and-set; a key never written is at 0), and otherwise comes back as
a conflict carrying the current seq for the application to resolve; a
change with ``base_seq=None`` always wins (last writer by server order).
Deleting leaves a tombstone, so pullers learn of it.

An upload a client abandons (it never commits) holds its chunks until
:meth:`ServerStorage.prune_uploads` drops it: ``strongroom serve prune``,
run by the operator (from cron, say), drops uploads idle for a week.

Every method but :meth:`ServerStorage.device` names the account and never
reads or changes another account's objects, chunks or uploads; an upload or
key of another account is reported exactly as one that does not exist.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, cast

from strongroom.backend import Backend, S_co
from strongroom.errors import UsageError

__all__ = [
    "Applied",
    "BlobManifest",
    "Change",
    "Device",
    "Entry",
    "Kind",
    "Page",
    "ServerStorage",
]

#: What a pulled entry holds: a record's ciphertext, a blob's manifest, or a tombstone.
Kind = Literal["record", "blob", "deleted"]


@dataclass(frozen=True)
class Device:
    """A registered device: its account, request-signing MAC key, and whether it may sign."""

    key_id: str
    account: str
    key: bytes = field(repr=False)
    active: bool = True


@dataclass(frozen=True)
class Change:
    """One write in a push: ``value`` is ciphertext, ``None`` deletes.

    ``base_seq`` is the key's seq the client last saw (0: it saw no such
    key); ``None`` writes whatever is there now.
    """

    key: str
    value: bytes | None
    base_seq: int | None = None

    def __repr__(self) -> str:
        size = "delete" if self.value is None else f"{len(self.value)} bytes"
        return f"Change({self.key!r}, {size}, base_seq={self.base_seq})"


@dataclass(frozen=True)
class Applied:
    """One change's outcome: ``seq`` is the seq it got, or if ``conflict`` the key's current seq."""

    key: str
    seq: int
    conflict: bool = False


@dataclass(frozen=True)
class Entry:
    """A key's latest state in a pull; ``value`` is a record's ciphertext or a blob's manifest."""

    key: str
    seq: int
    kind: Kind
    value: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Page:
    """Entries after a cursor in seq order; pass ``cursor`` as ``after`` to go on."""

    entries: tuple[Entry, ...]
    cursor: int
    more: bool


@dataclass(frozen=True)
class BlobManifest:
    """A committed blob: the client's opaque manifest and the hash of each encrypted chunk."""

    seq: int
    manifest: bytes = field(repr=False)
    chunk_hashes: tuple[bytes, ...] = field(repr=False)


class ServerStorage(Backend[S_co], ABC):
    """Opaque encrypted objects per account, for the sync server; shared by all its threads.

    A backend must make an acknowledged write durable before returning,
    keep each push and each commit one transaction, and translate its
    library's errors: a database it cannot reach is
    :class:`~strongroom.errors.ServerStorageUnavailableError` (the server
    answers 503), anything else :class:`~strongroom.errors.ServerStorageError`.
    """

    MAX_ACCOUNT: ClassVar[int] = 128
    MAX_KEY: ClassVar[int] = 1024
    MAX_CHUNKS: ClassVar[int] = 1 << 16
    MAX_PAGE: ClassVar[int] = 10_000

    #: When writes happen, in Unix seconds: what :meth:`prune_uploads` compares with.
    #: Tests replace it on an instance.
    clock: Callable[[], float] = staticmethod(time.time)

    # devices

    @abstractmethod
    def register_device(self, account: str, key_id: str, key: bytes) -> None:
        """Register ``key_id`` with its MAC ``key`` for ``account``; an exact repeat is a no-op.

        :raises strongroom.errors.ServerStorageError: the key id is taken (by
            another account, with another key, or retired): a key id names one
            key for ever.
        :raises strongroom.errors.UsageError: the key is not 16 to 1024 bytes.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def device(self, key_id: str) -> Device | None:
        """The device registered as ``key_id``, retired or not; ``None`` if there is none.

        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def retire_device(self, account: str, key_id: str) -> None:
        """Stop ``key_id`` of ``account`` from signing; its id stays taken.

        :raises strongroom.errors.ServerObjectNotFoundError: ``account`` has no such device.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    def devices(self) -> list[Device]:
        """Every registered device, retired ones too, in key id order (for ``devices list``).

        Not abstract, so backends written before it still load.

        :raises NotImplementedError: the backend cannot list its devices.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its devices")

    # records

    @abstractmethod
    def push(self, account: str, changes: Sequence[Change]) -> list[Applied]:
        """Apply ``changes`` in one transaction; one :class:`Applied` per change, in order.

        A conflicting change is not applied; the others are.

        :raises strongroom.errors.UsageError: a key or value is malformed, or a key repeats.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be
            reached; nothing was acknowledged (the push is applied whole or not at all).
        """

    @abstractmethod
    def pull(self, account: str, after: int = 0, limit: int = 1000) -> Page:
        """Keys of ``account`` changed after seq ``after``, at most ``limit``, latest state each.

        :raises strongroom.errors.UsageError: ``after`` is negative or ``limit`` out of range.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    # blobs

    @abstractmethod
    def begin_blob(
        self, account: str, key: str, manifest: bytes, chunk_hashes: Sequence[bytes]
    ) -> str:
        """Open an upload of a blob for ``key``; return its id.

        An open upload of the same key, manifest and hashes is returned
        instead of a new one, so a client that lost the id resumes.

        :raises strongroom.errors.UsageError: a hash is not 32 bytes, or too many chunks.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def put_chunk(self, account: str, upload_id: str, index: int, data: bytes) -> None:
        """Store chunk ``index`` of an upload; storing the same chunk again is a no-op.

        :raises strongroom.errors.IntegrityError: its SHA-256 is not the declared hash.
        :raises strongroom.errors.ServerObjectNotFoundError: ``account`` has no such open upload.
        :raises strongroom.errors.UsageError: ``index`` is out of range.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def missing_chunks(self, account: str, upload_id: str) -> list[int]:
        """The indexes of the upload's chunks not stored yet, in order: what is left to send.

        :raises strongroom.errors.ServerObjectNotFoundError: ``account`` has no such open upload.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def commit_blob(self, account: str, upload_id: str, base_seq: int | None = None) -> Applied:
        """Make the complete upload its key's value, as a push of one change would.

        On a conflict the upload stays open, to be committed again.

        :raises strongroom.errors.UploadIncompleteError: a chunk is missing.
        :raises strongroom.errors.ServerObjectNotFoundError: ``account`` has no such open upload.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def blob_manifest(self, account: str, key: str) -> BlobManifest:
        """The committed blob under ``key``.

        :raises strongroom.errors.ServerObjectNotFoundError: ``key`` holds no blob.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def get_chunk(self, account: str, key: str, index: int) -> bytes:
        """Chunk ``index`` of the blob under ``key``, as uploaded.

        :raises strongroom.errors.ServerObjectNotFoundError: ``key`` holds no blob or no such chunk.
        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    @abstractmethod
    def prune_uploads(self, idle_since: float) -> int:
        """Drop every open upload, of every account, with no activity since ``idle_since``.

        Activity is opening or resuming the upload (``begin_blob``) and storing
        one of its chunks; a committed blob is never dropped.  A client that
        comes back to a dropped upload opens a new one and sends every chunk.
        Returns how many uploads were dropped.

        :raises strongroom.errors.ServerStorageUnavailableError: the database cannot be reached.
        """

    # checks every backend shares

    @classmethod
    def check_name(cls, what: str, name: object, limit: int) -> str:
        """``name`` if it is a usable account, key id or key: 1 to ``limit`` bytes of UTF-8, no NUL.

        Bytes, not characters, bound what a database index must hold.

        :raises strongroom.errors.UsageError: it is not.
        """
        try:
            size = len(name.encode()) if isinstance(name, str) else 0
        except UnicodeEncodeError:
            size = 0
        if not 0 < size <= limit or "\0" in str(name):
            raise UsageError(f"{what} must be 1 to {limit} bytes of UTF-8, without NUL")
        return cast(str, name)

    @classmethod
    def check_changes(cls, changes: Sequence[Change]) -> None:
        """Refuse a malformed push before any of it is applied.

        :raises strongroom.errors.UsageError: a key is malformed or repeats, a value is
            not bytes, or a ``base_seq`` is negative.
        """
        seen: set[str] = set()
        for change in changes:
            cls.check_name("a key", change.key, cls.MAX_KEY)
            if change.key in seen:
                raise UsageError("a push names each key once")
            seen.add(change.key)
            if change.value is not None and not isinstance(change.value, bytes):
                raise UsageError("a value is bytes, or None to delete")
            cls.check_seq(change.base_seq)

    @staticmethod
    def check_seq(seq: int | None) -> None:
        """:raises strongroom.errors.UsageError: ``seq`` is neither ``None`` nor an int >= 0."""
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise UsageError("a seq is an integer >= 0")

    @classmethod
    def check_hashes(cls, chunk_hashes: Sequence[bytes]) -> bytes:
        """The hashes joined, once each is 32 bytes and there are 1 to ``MAX_CHUNKS``.

        :raises strongroom.errors.UsageError: they are not.
        """
        if not 0 < len(chunk_hashes) <= cls.MAX_CHUNKS:
            raise UsageError(f"a blob has 1 to {cls.MAX_CHUNKS} chunks")
        if any(not isinstance(digest, bytes) or len(digest) != 32 for digest in chunk_hashes):
            raise UsageError("a chunk hash is the 32-byte SHA-256 of the encrypted chunk")
        return b"".join(chunk_hashes)

    @classmethod
    def check_page(cls, after: int, limit: int) -> None:
        """:raises strongroom.errors.UsageError: a negative cursor or a limit out of range."""
        cls.check_seq(after)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= cls.MAX_PAGE:
            raise UsageError(f"a page holds 1 to {cls.MAX_PAGE} entries")
