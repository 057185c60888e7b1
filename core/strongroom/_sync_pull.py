"""Pulling: the server's changes after the cursor, applied to the store by the conflict rule.

A mixin of :class:`strongroom.sync.Syncer` (see there and
``docs/sync-protocol.md``, "Conflicts"): an entry newer than the seq the
device agreed for its key replaces the local state; a local write the
device had not pushed is kept first as a conflict copy.  A blob is fetched
chunk by chunk into a verified file before the store sees its plaintext.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from strongroom._sync_blobs import BlobMover, Transferred
from strongroom._sync_state import (
    CONFLICT_BLOB,
    ConflictCopy,
    Seen,
    SyncState,
    blob_digest,
    record_digest,
)
from strongroom._sync_wire import ChangesAnswer, WireEntry, account_path, decode_answer
from strongroom.errors import (
    IntegrityError,
    PinMismatchError,
    RecordNotFoundError,
    TransportError,
)
from strongroom.formats.manifest import Manifest
from strongroom.transport import SyncRequest, SyncResponse

if TYPE_CHECKING:
    from strongroom._sync_codec import SyncCodec
    from strongroom.outbox import Operation
    from strongroom.store import Store

__all__ = ["Pulling", "SyncReport"]


@dataclass
class SyncReport:
    """What one :meth:`Syncer.sync` did; keys are the store's own names."""

    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    #: Keys whose local write lost and was kept as a conflict copy by this sync.
    conflicts: list[str] = field(default_factory=list)
    #: Every parked operation of the outbox now.
    parked: list[Operation] = field(default_factory=list)
    #: Operations still queued to retry later.
    queued: int = 0
    chunks_sent: int = 0
    chunks_fetched: int = 0
    #: The server could not be reached: what is queued waits for the next sync.
    offline: bool = False
    #: One line per problem that did not stop the sync.
    errors: list[str] = field(default_factory=list)


class Pulling:
    """The pull half of a :class:`strongroom.sync.Syncer`."""

    name: str
    account: str
    store: Store
    state: SyncState
    send: Callable[[SyncRequest], SyncResponse]
    page: int
    staging: Path
    chunk_size: int
    in_flight: int

    def _codec(self) -> SyncCodec:
        raise NotImplementedError

    def _pull(self, report: SyncReport) -> None:
        codec = self._codec()
        cursor = self.state.cursor()
        known = {codec.server_key(self.name, key): key for key in self.state.all_seen()}
        while True:
            path = account_path(self.account, f"changes?after={cursor}&limit={self.page}")
            records: list[tuple[str, bytes, Seen]] = []  # a page's records: one batch
            try:
                page = decode_answer(self.send(SyncRequest("GET", path)), ChangesAnswer)
                for entry in page.entries:
                    applied = self._apply(codec, entry, known, report, records)
                    if applied is not None:
                        known[entry.key] = applied
            except PinMismatchError:
                raise
            except TransportError as failed:
                self.state.save({}, records=records)  # what arrived is kept; the cursor stays
                report.offline = True
                report.errors.append(f"pull stopped: {failed}")
                return
            cursor = max(cursor, page.next)
            self.state.save({}, cursor, records)
            if not page.more:
                return

    def _apply(
        self,
        codec: SyncCodec,
        entry: WireEntry,
        known: dict[str, str],
        report: SyncReport,
        records: list[tuple[str, bytes, Seen]],
    ) -> str | None:
        """Make ``entry`` the local state of its key, keeping a losing local write aside.

        The key's agreed state is saved with the write: a record joins
        ``records``, written with its agreed state in one batch at the end of
        the page or before the next blob or delete; a blob or a delete is
        saved right after it is applied.  A process
        killed mid-pull (a page can hold blob downloads) so leaves no value
        the device does not know it agreed with the server.
        Returns the local key; ``None``: another store's key, one never held
        here, or a state seen before.
        """
        if entry.kind != "record" and records:  # durable before a download or a delete
            self.state.save({}, records=records)
            records.clear()
        held = known.get(entry.key)
        agreed = self.state.seen(held) if held is not None else None
        if agreed is not None and entry.seq <= agreed.seq:
            return None  # our own push, or a state seen before: nothing to fetch
        fetched = self._fetch(codec, entry, held, report)
        if fetched is None:
            return None
        key, seq, value, staged, digest = fetched
        seen = self.state.seen(key)
        if seen is not None and seq <= seen.seq:
            return None
        local = self._local_digest(key)
        if local not in {seen.digest if seen else None, digest}:
            self._keep_conflict_copy(key)
            report.conflicts.append(key)
        agreed_now = Seen(seq, digest, entry.kind)
        if value is not None:
            records.append((key, value, agreed_now))
        else:
            if staged is not None:
                context = codec.context(entry.key)
                self.store.put_blob(key, self._mover(codec).open_staged(staged, context))
                staged.unlink(missing_ok=True)  # killed before the save: fetched again
            elif local is not None:
                with contextlib.suppress(RecordNotFoundError):
                    self.store.delete(key)
            self.state.save({key: agreed_now})
        report.pulled.append(key)
        return key

    def _fetch(
        self, codec: SyncCodec, entry: WireEntry, held: str | None, report: SyncReport
    ) -> tuple[str, int, bytes | None, Path | None, bytes | None] | None:
        """``(key, seq, record value, fetched blob file, digest)``, or ``None`` if not ours."""
        if entry.kind == "deleted":
            return None if held is None else (held, entry.seq, None, None, None)
        if entry.kind == "record":
            if entry.value is None:
                raise IntegrityError("the sync server sent a record without a value")
            payload = codec.open(entry.key, entry.value)
            if payload.store != self.name or payload.value is None:
                return None
            value = payload.value
            return payload.key, entry.seq, value, None, record_digest(value)
        mover = self._mover(codec)
        described = mover.describe(entry.key)
        payload = codec.open(entry.key, described.manifest)
        if payload.store != self.name or payload.manifest is None:
            return None
        moved = Transferred()
        try:
            manifest = Manifest.from_bytes(payload.manifest)
            staged = mover.fetch(entry.key, described.manifest, manifest, moved)
        finally:
            report.chunks_fetched += moved.fetched
        digest = blob_digest(mover.open_staged(staged, codec.context(entry.key)))
        return payload.key, described.seq, None, staged, digest

    def _keep_conflict_copy(self, key: str) -> None:
        try:
            self.state.set_conflict(key, ConflictCopy("record", self.store.get(key)))
            return
        except RecordNotFoundError:
            pass
        try:
            self.store.put_blob(CONFLICT_BLOB + key, self.store.get_blob(key))
        except RecordNotFoundError:
            self.state.set_conflict(key, ConflictCopy("deleted"))
            return
        self.state.set_conflict(key, ConflictCopy("blob"))

    def _local_digest(self, key: str) -> bytes | None:
        try:
            return record_digest(self.store.get(key))
        except RecordNotFoundError:
            pass
        try:
            return blob_digest(self.store.get_blob(key))
        except RecordNotFoundError:
            return None

    def _mover(self, codec: SyncCodec) -> BlobMover:
        return BlobMover(
            self.send, self.account, self.staging, codec, self.chunk_size, self.in_flight
        )
