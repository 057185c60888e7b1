"""The ``Store`` slot: named records and streamed blobs under a namespace.

Keys are strings chosen by the application; a store must not reveal them
in the clear where its medium can be read (file names, table contents).
Replacing a record is atomic: a reader sees the old value or the new one,
never a mix, even if the writer is killed midway.

:meth:`Store.reencrypt` yields ``(done, total)`` pairs.  A store that can
count the bytes it rewrites yields :class:`ReencryptProgress` instead, a
pair that also carries ``rewritten_bytes``; ``strongroom keys reencrypt``
then reports MB/s beside objects/s.  Plain tuples stay valid: the CLI
reports objects/s alone for them.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.audit import AuditEvent
from strongroom.backend import Backend, S_co
from strongroom.errors import IntegrityError, RecordNotFoundError, UsageError
from strongroom.keys.purposes import names_purpose, store_purpose

if TYPE_CHECKING:
    from strongroom.keys import AccountKeys

__all__ = ["ReencryptProgress", "Store", "StoreBinding"]


@dataclass(frozen=True)
class StoreBinding:
    """Where a configured store lives and the keys it encrypts with."""

    account: str
    #: The config name, ``stores.<name>``.
    name: str
    #: The store's own directory inside the account's; created by the stack.
    directory: Path
    keys: AccountKeys
    #: Hears the store's security events (a refused read); the stack fires the audit hook.
    audit: Callable[[AuditEvent], None] = field(default=lambda _event: None, repr=False)

    @property
    def purpose(self) -> str:
        """The keyset that encrypts this store's data."""
        return store_purpose(self.name)

    @property
    def names_purpose(self) -> str:
        """The keyset whose version 1 keys this store's record-name hashing."""
        return names_purpose(self.name)


class ReencryptProgress(tuple[int, int]):
    """``(done, total)`` of a re-encryption pass, and the bytes rewritten so far.

    It unpacks and compares as the plain pair.  ``rewritten_bytes`` counts
    the stored (encrypted) size of the objects the pass has rewritten, not
    of those it found current already.
    """

    rewritten_bytes: int

    def __new__(cls, done: int, total: int, rewritten_bytes: int = 0) -> ReencryptProgress:
        progress = super().__new__(cls, (done, total))
        progress.rewritten_bytes = rewritten_bytes
        return progress


#: The reads whose refusal (an :class:`IntegrityError`) every store reports to the audit hook.
AUDITED_READS = ("get", "get_any", "get_blob", "get_blob_range", "keys", "reencrypt")


class Store(Backend[S_co], ABC):
    """Encrypted key-value records and blobs, bound to one account's keys.

    A read that refuses stored data (:class:`~strongroom.errors.IntegrityError`
    from one of :data:`AUDITED_READS`, listing and re-encryption included) is
    reported as a ``data.refused`` audit event by this base class, whatever
    the subclass (the methods it resolves, a mixin's too): a store author
    writes nothing for it.  The event names the store and the error class,
    never the record's key (names are metadata the stores keep sealed).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in AUDITED_READS:
            # as the class resolves it, a mixin's included; plain functions only (a
            # staticmethod or partialmethod is left as it is)
            method = inspect.getattr_static(cls, name, None)
            if inspect.isfunction(method) and not getattr(method, "_audited", False):
                setattr(cls, name, _audited(method))

    def _refused(self, exc: IntegrityError) -> None:
        """Report ``exc`` once, however many audited reads it passes through."""
        if getattr(exc, "_reported", False):
            return
        exc._reported = True  # type: ignore[attr-defined]
        details = {"store": self.binding.name, "error": type(exc).__name__}
        self.binding.audit(AuditEvent("data.refused", self.binding.account, "failure", details))

    def __init__(self, settings: S_co | None = None, *, binding: StoreBinding) -> None:
        """:raises strongroom.errors.StoreError: the store's medium cannot be opened."""
        super().__init__(settings)
        self.binding = binding

    def forget_keys(self) -> None:
        """Drop whatever the store keeps that its keys opened (an open keyed connection).

        Called when the account's session locks, or this store's keys idle
        out, possibly from another thread while an operation runs: it must
        not block (skip what is busy: that operation finds the key gone on
        its next use).  The default keeps nothing.
        """

    @property
    def key_purposes(self) -> tuple[str, ...]:
        """Every keyset the store encrypts with; ``strongroom init`` creates them up front."""
        return (self.binding.purpose,)

    @abstractmethod
    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, atomically replacing any previous value.

        :raises strongroom.errors.StoreError: the medium refused the write; the
            previous value is still readable.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store each ``(key, value)`` as :meth:`put` would; a key given twice takes the last.

        A store that can should make the batch all or nothing and durable at
        once, as the ``files`` store does.  This default is a loop of
        :meth:`put`: **not atomic**, a failure part-way leaves the earlier
        items stored and the later ones not.

        :raises strongroom.errors.UsageError: a key is invalid.
        :raises strongroom.errors.StoreError: the medium refused a write.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """
        for key, value in items:
            self.put(key, value)

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the value stored under ``key``.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.IntegrityError: the stored value fails verification.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` and its value.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.StoreError: the medium refused the change.
        """

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys that start with ``prefix``, in sorted order.

        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    @abstractmethod
    def put_blob(self, key: str, chunks: Iterable[bytes]) -> None:
        """Stream a large value in; it replaces ``key`` only once complete.

        :raises strongroom.errors.StoreError: the medium refused the write; the
            previous value is still readable.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """

    @abstractmethod
    def reencrypt(self) -> Iterator[tuple[int, int]]:
        """Re-encrypt everything not under the store keyset's primary version.

        Yields ``(done, total)`` as it goes, or a :class:`ReencryptProgress`
        where the store counts the bytes it rewrites.  Interrupting it loses
        nothing; running it again resumes, skipping what is already current.

        :raises strongroom.errors.KeyLockedError: the store's key is locked.
        :raises strongroom.errors.IntegrityError: a record fails verification.
        """

    def get_any(self, key: str) -> Iterator[bytes]:
        """Stream the value under ``key``, whether it is a record or a blob.

        A record comes out as one piece.  The default asks :meth:`get`, then
        :meth:`get_blob`, which can miss a key another process switches from
        one form to the other in between; a store that can look at both
        forms at once overrides it.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.IntegrityError: the value fails verification;
            for a blob, the iteration stops at the chunk that failed.
        """
        try:
            return iter((self.get(key),))
        except RecordNotFoundError:
            try:
                return self.get_blob(key)
            except RecordNotFoundError:
                raise RecordNotFoundError(
                    f"no record or blob {key!r} in store {self.binding.name!r}"
                ) from None

    def get_blob_range(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Up to ``length`` bytes (all if ``None``) of the blob under ``key``, from ``offset``.

        Like a file read, the result is short at the end of the blob and
        empty past it.  A store with random access decrypts only what covers
        the range; this default streams :meth:`get_blob` from the start and
        slices, verifying every chunk up to the end of the range.

        :raises strongroom.errors.UsageError: ``offset`` or ``length`` is negative.
        :raises strongroom.errors.RecordNotFoundError: no blob is stored under ``key``.
        :raises strongroom.errors.IntegrityError: a chunk covering the range fails
            verification.
        :raises strongroom.errors.KeyUnavailableError: the store's key is locked.
        """
        if offset < 0 or (length is not None and length < 0):
            raise UsageError("offset and length must not be negative")
        end = None if length is None else offset + length
        pieces: list[bytes] = []
        position = 0
        chunks = self.get_blob(key)
        try:
            for chunk in chunks:
                low, position = position, position + len(chunk)
                if position > offset and (end is None or low < end):
                    pieces.append(chunk[max(offset - low, 0) : None if end is None else end - low])
                if end is not None and position >= end:
                    break
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return b"".join(pieces)

    def versions_in_use(self) -> dict[int, int]:
        """How many objects each version of the store's data keyset encrypts now.

        Counted from the medium (headers, not guesses), so that retiring or
        destroying a version still in use can be refused.  The default says
        the store cannot count: the key hierarchy then refuses to retire or
        destroy this store's versions unless forced.

        :raises NotImplementedError: the store cannot count (the default).
        :raises strongroom.errors.StoreError: the medium cannot be read.
        """
        raise NotImplementedError

    def purge_expired(self, written_before: float) -> int:
        """Delete every record and blob last written before ``written_before`` (Unix time).

        Returns how many went.  It is what keeps a configured ``retention``
        (``[stores.<name>] retention``): only ``put``, ``put_many`` and
        ``put_blob`` count as writes, so the store's own rewrites
        (re-encryption) must keep an object's write time, or data would
        outlive its retention by being re-keyed.  A store that cannot tell
        keeps the default, and a config setting ``retention`` on it is
        refused.

        :raises NotImplementedError: the store cannot purge by age (the default).
        :raises strongroom.errors.StoreError: the medium refused the change.
        """
        raise NotImplementedError

    def unreadable(self) -> Iterator[tuple[str, int]]:
        """Yield ``(object id, key version)`` of each object that can no longer be opened.

        Those are objects under a retired or destroyed version (after a
        forced retire or destroy), and, in a store that keeps the keyset's
        re-encryption floor, copies under an older version put back since.
        Their keys are encrypted with them, so an object is named by an
        opaque id the store chooses.

        :raises NotImplementedError: the store cannot tell (the default).
        :raises strongroom.errors.KeyLockedError: the store's key is locked.
        """
        raise NotImplementedError

    def purge_unreadable(self) -> int:
        """Delete every object :meth:`unreadable` yields; return how many went.

        :raises NotImplementedError: the store cannot tell (the default).
        :raises strongroom.errors.StoreError: the medium refused the change.
        """
        raise NotImplementedError

    @abstractmethod
    def get_blob(self, key: str) -> Iterator[bytes]:
        """Stream a large value out, yielding only verified plaintext.

        :raises strongroom.errors.RecordNotFoundError: nothing is stored under ``key``.
        :raises strongroom.errors.IntegrityError: a chunk fails verification; the
            iteration stops there.
        """


def _audited(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, reporting an :class:`IntegrityError` it raises, or its iterator raises."""

    @functools.wraps(method)
    def call(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            result = method(self, *args, **kwargs)
        except IntegrityError as exc:
            self._refused(exc)
            raise
        if type(result) is bytes or isinstance(result, (bytearray, memoryview, str)):
            return result  # a value: checked first, as ``get`` runs this on every read
        if not isinstance(result, Iterable):
            return result
        return _watched(self, iter(result))

    call._audited = True  # type: ignore[attr-defined]
    return call


def _watched(store: Store, chunks: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from chunks
    except IntegrityError as exc:
        store._refused(exc)
        raise
