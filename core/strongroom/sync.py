"""``Syncer``: one store of a device kept in step with the sync server, end to end sealed.

What the server receives is sealed under the account's *sync key*, not
under the store's at-rest keys: a record (with its name) as a sealed
object, a blob as a chunked object with its manifest and name sealed
beside it, each under an opaque server-side id (an HMAC of store and key
under the sync key) and bound to (account, ``"sync"``, that id) as
associated data, so the server reads no value or name and cannot move one
to another key (``strongroom._sync_codec``).

The sync key is kept in the store itself (``strongroom.sync/key``, sealed
at rest like every record); the first device makes it with
:meth:`Syncer.create_key`, and every other device of the account gets it
out of band, :meth:`Syncer.export_key` on one and :meth:`Syncer.import_key`
on the other (``strongroom sync --export-key`` / ``--import-key``): how it
travels is the application's choice (``docs/threat-model.md``, "E2E
payloads and the server").

:meth:`Syncer.sync` sends what the outbox holds, pulls the server's
changes after the stored cursor and applies them, queues every local
change in the outbox (records, with the ``base_seq`` last seen for each
key; also while offline), sends it, moves blobs chunk by chunk, and pulls
again if a push met a conflict.

**Conflicts** (``docs/sync-protocol.md``, "Conflicts"): a push is a
compare-and-set on the key's seq.  When another device wrote the key
first, the server's version wins the key on every device; the losing local
write is kept on the device that made it as a *conflict copy*
(:meth:`Syncer.conflicts`), which the application resolves: it writes the
value it wants (or restores the copy with ``keep_local=True``) and calls
:meth:`Syncer.resolve`; the next sync pushes that as an ordinary write.
Keys starting with ``strongroom.`` are the framework's own and are never
synced.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

from strongroom._sync_blobs import IN_FLIGHT, Transferred
from strongroom._sync_codec import Payload, SyncCodec
from strongroom._sync_pull import Pulling, SyncReport
from strongroom._sync_state import (
    CONFLICT_BLOB,
    RESERVED,
    Seen,
    SyncKeyRecord,
    SyncState,
    Upload,
    blob_digest,
    record_digest,
)
from strongroom._sync_wire import (
    MSGPACK,
    PushAnswer,
    account_path,
    decode_answer,
    encode,
)
from strongroom.errors import (
    PinMismatchError,
    RecordNotFoundError,
    TransportError,
    UsageError,
)
from strongroom.outbox import Operation, Outbox
from strongroom.secret import Secret
from strongroom.transport import SyncRequest, SyncResponse

if TYPE_CHECKING:
    import random

    from strongroom._stack import Strongroom

__all__ = ["SyncReport", "Syncer"]

_KEY_EXPORT = re.compile(
    r"strongroom-sync-key:v1:([a-z0-9-]{1,40}):([0-9]{1,9}):([A-Za-z0-9_-]{43})"
)
#: Most changes one push operation carries.
_PUSH_BATCH = 256


class Syncer(Pulling):
    """Sync store ``store_name`` of ``stack`` with the server; see the module docstring."""

    def __init__(
        self,
        stack: Strongroom,
        store_name: str,
        *,
        send: Callable[[SyncRequest], SyncResponse] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        chunk_size: int = 1 << 20,
        page: int = 500,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        """``in_flight``: blob chunk requests kept in flight at once (see ``_sync_blobs``).

        :raises strongroom.errors.UsageError: ``in_flight`` is below 1.
        """
        if in_flight < 1:
            raise UsageError("in_flight is at least 1")
        self.stack = stack
        self.name = store_name
        self.store = stack.store(store_name)
        self.account = stack.config.account
        self.send = send if send is not None else stack.send
        self.state = SyncState(self.store)
        self.outbox = Outbox(self.store, account=self.account, clock=clock, rng=rng)
        self.chunk_size = chunk_size
        self.page = page
        self.in_flight = in_flight
        self.staging = stack.config.account_dir / "sync" / store_name
        self._key: Secret | None = None
        self._key_record: SyncKeyRecord | None = None

    def __repr__(self) -> str:
        return f"<Syncer of store {self.name!r} for {self.account!r}>"

    # the sync key

    def create_key(self) -> None:
        """Make the account's sync key on this, its first device.

        :raises strongroom.errors.UsageError: this store has a sync key already.
        """
        if self.state.sync_key() is not None:
            raise UsageError(f"store {self.name!r} has a sync key already")
        secret = Secret.generate(32, label="sync key")
        suite = self.stack.config.choice("cipher_suite").use
        raw = secret.export_raw(reason="stored sealed in the store it syncs")
        self.state.set_sync_key(SyncKeyRecord(suite, 1, raw))
        secret.wipe()

    def export_key(self) -> str:
        """The sync key as one line of text, for another device of the account.

        Whoever holds it reads everything this store syncs: move it only over
        a channel the application trusts, never through the sync server.

        :raises strongroom.errors.UsageError: there is no sync key yet.
        """
        record = self._record()
        encoded = base64.urlsafe_b64encode(record.key).rstrip(b"=").decode()
        return f"strongroom-sync-key:v1:{record.suite}:{record.version}:{encoded}"

    def import_key(self, exported: str) -> None:
        """Keep the sync key :meth:`export_key` gave on another device.

        :raises strongroom.errors.UsageError: it is malformed, or this store
            holds another sync key already.
        """
        found = _KEY_EXPORT.fullmatch(exported.strip())
        if found is None:
            raise UsageError("that is not an exported sync key")
        suite, version, encoded = found.groups()
        key = base64.urlsafe_b64decode(encoded + "=")
        record = SyncKeyRecord(suite, int(version), key)
        current = self.state.sync_key()
        if current is not None:
            if not hmac.compare_digest(current.key, key) or current.version != record.version:
                raise UsageError(f"store {self.name!r} holds another sync key")
            return
        self.stack.suite(suite)  # refuse a suite this device cannot load, before keeping it
        self.state.set_sync_key(record)

    def _record(self) -> SyncKeyRecord:
        record = self.state.sync_key()
        if record is None:
            raise UsageError(
                f"store {self.name!r} has no sync key: make one on the first device "
                "('strongroom sync --new-key') and import it on the others ('--import-key')"
            )
        return record

    def _codec(self) -> SyncCodec:
        if self._key is None or self._key.wiped or self._key_record is None:
            record = self._record()
            self._key_record = record
            self._key = Secret(record.key, label="sync key")
        record = self._key_record
        return SyncCodec(self.account, self.stack.suite(record.suite), self._key, record.version)

    def close(self) -> None:
        """Wipe the sync key from memory."""
        if self._key is not None:
            self._key.wipe()

    # sync

    def sync(self) -> SyncReport:
        """Send what is queued, pull, push local changes, pull again after a conflict.

        :raises strongroom.errors.UsageError: the store has no sync key.
        :raises strongroom.errors.TransportError: an answer is malformed, or a
            pinned key does not match (the outbox keeps what it holds).
        :raises strongroom.errors.IntegrityError: the server sent something
            that does not open under the sync key.
        """
        report = SyncReport()
        self._codec()
        self._drain(report)
        if not report.offline:
            self._pull(report)
        self._push(report)
        if report.conflicts and not report.offline:
            self._pull(report)
        report.conflicts = [key for key in dict.fromkeys(report.conflicts) if self._lost(key)]
        report.parked = self.outbox.parked()
        report.queued = len(self.outbox.pending())
        return report

    # conflicts

    def _lost(self, key: str) -> bool:
        """Whether a push of ``key`` that met a conflict still has a losing write to report.

        Not when the device now agrees with the server on exactly its own
        content: the write that "conflicted" was its own, applied by an
        attempt whose answer was lost (a server killed before it answered
        forgets the idempotent outcome), and the pull found it there.
        """
        if self.state.conflict(key) is not None:
            return True
        agreed = self.state.seen(key)
        return agreed is None or self._local_digest(key) != agreed.digest

    def conflicts(self) -> list[str]:
        """The keys holding a conflict copy, sorted."""
        return self.state.conflicts()

    def conflict_value(self, key: str) -> bytes | None:
        """The losing local record, or ``None`` when the losing write was a delete.

        :raises strongroom.errors.RecordNotFoundError: ``key`` has no conflict copy.
        :raises strongroom.errors.UsageError: the copy is a blob (:meth:`conflict_blob`).
        """
        copy = self.state.conflict(key)
        if copy is None:
            raise RecordNotFoundError(f"no conflict copy of {key!r}")
        if copy.kind == "blob":
            raise UsageError(f"the conflict copy of {key!r} is a blob: use conflict_blob")
        return copy.value

    def conflict_blob(self, key: str) -> Iterator[bytes]:
        """The losing local blob, verified chunk by chunk.

        :raises strongroom.errors.RecordNotFoundError: ``key`` has no blob conflict copy.
        """
        return self.store.get_blob(CONFLICT_BLOB + key)

    def resolve(self, key: str, *, keep_local: bool = False) -> None:
        """Drop the conflict copy of ``key``; with ``keep_local``, make it the local value first.

        Whatever the key holds locally then is pushed by the next sync.

        :raises strongroom.errors.RecordNotFoundError: ``key`` has no conflict copy.
        """
        copy = self.state.conflict(key)
        if copy is None:
            raise RecordNotFoundError(f"no conflict copy of {key!r}")
        if keep_local:
            if copy.kind == "record" and copy.value is not None:
                self.store.put(key, copy.value)
            elif copy.kind == "blob":
                self.store.put_blob(key, self.store.get_blob(CONFLICT_BLOB + key))
            else:
                with contextlib.suppress(RecordNotFoundError):
                    self.store.delete(key)
        self.state.end_conflict(key)

    # outbox

    def _drain(self, report: SyncReport) -> None:
        drained = self.outbox.drain(self.send, on_sent=self._on_sent)
        report.offline = report.offline or drained.offline
        for operation, response in drained.sent:
            if operation.meta.get("kind") == "push":
                answer = decode_answer(response, PushAnswer)
                conflicted = {result.key for result in answer.results if result.conflict}
                for local, server_key, _ in operation.meta["keys"]:
                    if server_key in conflicted:
                        report.conflicts.append(local)
                    else:
                        report.pushed.append(local)
        report.errors += [f"{op.id}: {op.error}" for op in drained.parked]

    def _on_sent(self, operation: Operation, response: SyncResponse) -> None:
        """Record what a push made the server's; a conflict is left for the pull."""
        if operation.meta.get("kind") != "push":
            return
        answer = decode_answer(response, PushAnswer)
        results = {result.key: result for result in answer.results}
        seen = {}
        for local, server_key, digest in operation.meta["keys"]:
            result = results.get(server_key)
            if result is None or result.conflict:
                continue
            kind: Literal["record", "deleted"] = "record" if digest is not None else "deleted"
            seen[local] = Seen(result.seq, digest, kind)
        self.state.save(seen)

    # push

    def _push(self, report: SyncReport) -> None:
        """Queue every local change (also offline: the outbox keeps it), then send if online."""
        seen = self.state.all_seen()
        records, blobs = self._local_changes(seen, self._busy_keys())
        for start in range(0, len(records), _PUSH_BATCH):
            self._enqueue_push(records[start : start + _PUSH_BATCH], seen)
        for key, digest in blobs:
            self._stage_blob(key, digest, seen.get(key))
        if records and not report.offline:
            self._drain(report)
        if not report.offline:
            self._upload_blobs(report)

    def _local_changes(
        self, seen: dict[str, Seen], busy: set[str]
    ) -> tuple[list[tuple[str, bytes | None, bytes | None]], list[tuple[str, bytes]]]:
        """Records (``value`` ``None``: deleted) and blobs whose content is not what was seen."""
        records: list[tuple[str, bytes | None, bytes | None]] = []
        blobs: list[tuple[str, bytes]] = []
        present = set()
        for key in list(self.store.keys()):
            if key.startswith(RESERVED):
                continue
            present.add(key)
            if key in busy:
                continue
            known = seen.get(key)
            try:
                value = self.store.get(key)
            except RecordNotFoundError:
                try:
                    digest = blob_digest(self.store.get_blob(key))
                except RecordNotFoundError:  # deleted meanwhile: the next sync sees it
                    continue
                if known is None or known.digest != digest:
                    blobs.append((key, digest))
                continue
            digest = record_digest(value)
            if known is None or known.digest != digest:
                records.append((key, value, digest))
        for key, known in seen.items():
            if key not in present and key not in busy and known.digest is not None:
                records.append((key, None, None))
        return records, blobs

    def _busy_keys(self) -> set[str]:
        """Keys an operation or upload still carries: not pushed again until it is done."""
        busy = {key for key, _ in self.state.uploads()}
        for operation in self.outbox.operations():
            if operation.meta.get("kind") == "push":
                busy.update(local for local, _, _ in operation.meta["keys"])
        return busy

    def _enqueue_push(
        self, batch: list[tuple[str, bytes | None, bytes | None]], seen: dict[str, Seen]
    ) -> None:
        codec = self._codec()
        changes = []
        keys = []
        for local, value, digest in batch:
            if value is None:
                server_key, sealed = codec.server_key(self.name, local), None
            else:
                server_key, sealed = codec.seal(Payload(self.name, local, value=value))
            known = seen.get(local)
            base_seq = known.seq if known is not None else 0
            changes.append({"key": server_key, "value": sealed, "base_seq": base_seq})
            keys.append([local, server_key, digest])
        body = encode({"changes": changes})
        request = SyncRequest("POST", account_path(self.account, "push"), body, MSGPACK)
        self.outbox.enqueue(request, meta={"kind": "push", "keys": keys})

    def _stage_blob(self, key: str, digest: bytes, known: Seen | None) -> None:
        codec = self._codec()
        mover = self._mover(codec)
        context = codec.context(codec.server_key(self.name, key))
        staged, manifest = mover.stage(self.store.get_blob(key), context)
        _, envelope = codec.seal(Payload(self.name, key, manifest=manifest.to_bytes()))
        idempotency_key = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        base_seq = known.seq if known is not None else 0
        self.state.set_upload(key, Upload(digest, base_seq, staged, envelope, idempotency_key))

    def _upload_blobs(self, report: SyncReport) -> None:
        codec = self._codec()
        mover = self._mover(codec)
        moved = Transferred()
        try:
            for key, upload in list(self.state.uploads()):
                agreed = self.state.seen(key)
                if agreed is not None and agreed.digest == upload.digest:
                    # committed by a process killed before it recorded the answer (the
                    # pull has since agreed on this content): uploading again would
                    # open a new upload whose commit only conflicts with itself
                    self.state.end_upload(key)
                    mover.discard(upload.staged)
                    continue
                answer = mover.upload(codec.server_key(self.name, key), upload, moved)
                if answer.conflict:
                    report.conflicts.append(key)
                else:
                    self.state.save({key: Seen(answer.seq, upload.digest, "blob")})
                    report.pushed.append(key)
                self.state.end_upload(key)
                mover.discard(upload.staged)
        except PinMismatchError:
            raise
        except TransportError as failed:
            report.offline = True
            report.errors.append(f"blob upload stopped: {failed}")
        finally:
            report.chunks_sent += moved.sent
