"""``Outbox``: operations queued durably on the device, sent later, each once.

An operation is a :class:`~strongroom.transport.SyncRequest` kept, sealed,
in one of the stack's stores under the reserved key prefix
``strongroom.outbox/`` (one record per operation, replaced atomically on
every change of state, so a process killed while queueing or sending
leaves the whole operation or none).  It gets a 128-bit random
idempotency key when it is queued and is signed only when it is sent
(:meth:`strongroom.Strongroom.send` signs), so it can wait offline for
days and still pass the server's timestamp window; the idempotency key
makes every retry of it run once on the server.

:meth:`Outbox.drain` sends what is due, in queue order:

- a failure worth retrying (no connection, 5xx, 408, 409 still running,
  425, 428, 429, a refused timestamp or replay) sets the next attempt
  after a full-jitter exponential backoff, ``uniform(0, min(max_delay,
  base_delay * 2 ** (attempts - 1)))`` seconds;
- any other refusal, or ``max_attempts`` failures, *parks* the operation
  with a one-line error (status and the server's error code, never a
  payload); it stays until :meth:`Outbox.retry` or :meth:`Outbox.drop`;
- an operation first tried longer ago than the server's idempotency
  retention (24 h by default) without success is parked as ``stale``
  rather than sent again: that attempt may have run on the server, whose
  record of its key may be gone, so sending it could run it twice.  One
  never tried can wait any time: nothing of it reached the server;
- operations of one ``stream`` go strictly in queue order: while its head
  waits or is parked, the rest of that stream waits (reported as blocked,
  naming the head); other operations go on.

A ``fresh_auth`` operation first asks the server for a challenge token
bound to its idempotency key (``POST /v1/accounts/{account}/challenges``)
and sends it as ``Strongroom-Challenge``, a header the request signature
covers; a token is fetched for every attempt (single use, 60 s).
See ``docs/sync-protocol.md``, "The outbox".
"""

from __future__ import annotations

import base64
import os
import random
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from strongroom._outbox_record import (
    Operation,
    decode,
    describe_answer,
    encode,
    is_retryable_error,
    is_retryable_status,
)
from strongroom.errors import (
    IntegrityError,
    PinMismatchError,
    RecordNotFoundError,
    RequestRefusedError,
    TransportError,
    UsageError,
)
from strongroom.signing import headers as h
from strongroom.signing.headers import IDEMPOTENCY_KEY
from strongroom.transport import SyncRequest, SyncResponse

if TYPE_CHECKING:
    from strongroom.store import Store

__all__ = [
    "CHALLENGE",
    "DEFAULT_RETENTION_S",
    "PREFIX",
    "DrainReport",
    "Operation",
    "Outbox",
]

#: The reserved key prefix of the outbox's records in its store.
PREFIX = "strongroom.outbox/"
#: How long the reference server keeps an idempotency key's outcome.
DEFAULT_RETENTION_S = 24 * 3600.0
#: The header carrying a challenge token (signed with the request).
CHALLENGE = h.CHALLENGE

Send = Callable[[SyncRequest], SyncResponse]


@dataclass
class DrainReport:
    """What one :meth:`Outbox.drain` did."""

    #: Sent and answered 2xx, with the answer; removed from the outbox.
    sent: list[tuple[Operation, SyncResponse]] = field(default_factory=list)
    #: Failed, to be tried again at their ``next_at``.
    retrying: list[Operation] = field(default_factory=list)
    #: Parked by this drain (they stay until retried or dropped).
    parked: list[Operation] = field(default_factory=list)
    #: Not due yet.
    waiting: list[Operation] = field(default_factory=list)
    #: ``(operation id, id of the operation ahead of it in its stream)``.
    blocked: list[tuple[str, str]] = field(default_factory=list)
    #: The server could not be reached: the drain stopped there.
    offline: bool = False


class Outbox:
    """Operations queued in ``store`` for ``account``; see the module docstring.

    ``clock`` (Unix seconds) and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        *,
        account: str,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        base_delay: float = 2.0,
        max_delay: float = 3600.0,
        max_attempts: int = 12,
        retention: float = DEFAULT_RETENTION_S,
    ) -> None:
        if not 0 < base_delay <= max_delay or max_attempts < 1 or retention <= 0:
            raise UsageError("outbox delays, attempts and retention must be positive")
        self.store = store
        self.account = account
        self.clock = clock
        self.rng = rng if rng is not None else random.SystemRandom()
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.retention = retention
        self._last_ns = 0

    def __repr__(self) -> str:
        return f"<Outbox of {self.account!r} in store {self.store.binding.name!r}>"

    # queueing

    def enqueue(
        self,
        request: SyncRequest,
        *,
        stream: str | None = None,
        fresh_auth: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue ``request`` durably; return the operation's id.

        It is written in one atomic record: once this returns it survives a
        crash, and a crash before leaves nothing.

        :raises strongroom.errors.UsageError: it already carries an ``Idempotency-Key``.
        :raises strongroom.errors.StoreError: the store refused the write.
        """
        if any(name.lower() == IDEMPOTENCY_KEY.lower() for name in request.headers):
            raise UsageError(
                "the outbox assigns the Idempotency-Key: the request must not carry one"
            )
        now = self.clock()
        # ids sort in queue order: nanoseconds, strictly increasing in this process
        stamp = max(int(now * 1e9), time.time_ns(), self._last_ns + 1)
        self._last_ns = stamp
        operation = Operation(
            id=f"{stamp:020d}-{os.urandom(4).hex()}",
            idempotency_key=base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(),
            method=request.method.upper(),
            path=request.path,
            body=bytes(request.body),
            headers=dict(request.headers),
            stream=stream,
            fresh_auth=fresh_auth,
            created=now,
            next_at=now,
            meta=dict(meta or {}),
        )
        self._save(operation)
        return operation.id

    # inspection and repair

    def operations(self) -> list[Operation]:
        """Every queued operation, parked or not, in queue order."""
        found = []
        for key in list(self.store.keys(PREFIX)):
            try:
                found.append(self._load(key))
            except RecordNotFoundError:  # sent and removed meanwhile
                continue
        return found

    def pending(self) -> list[Operation]:
        """The operations still to be sent (not parked), in queue order."""
        return [operation for operation in self.operations() if operation.parked is None]

    def parked(self) -> list[Operation]:
        """The parked operations, in queue order."""
        return [operation for operation in self.operations() if operation.parked is not None]

    def get(self, operation_id: str) -> Operation:
        """:raises strongroom.errors.RecordNotFoundError: no such operation is queued."""
        return self._load(PREFIX + operation_id)

    def retry(self, operation_id: str, *, send_stale: bool = False) -> Operation:
        """Unpark an operation: due now, its attempts counted afresh.

        ``send_stale`` sends one first tried longer ago than the retention
        anyway, accepting that it may run twice if that attempt ran.

        :raises strongroom.errors.RecordNotFoundError: no such operation is queued.
        """
        queued = self.get(operation_id)
        operation = msgspec.structs.replace(
            queued,
            parked=None,
            attempts=0,
            next_at=self.clock(),
            send_stale=send_stale or queued.send_stale,
        )
        self._save(operation)
        return operation

    def drop(self, operation_id: str) -> None:
        """Remove an operation unsent.

        :raises strongroom.errors.RecordNotFoundError: no such operation is queued.
        """
        self.store.delete(PREFIX + operation_id)

    # sending

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failure: full jitter under a doubling cap."""
        cap = min(self.max_delay, self.base_delay * 2 ** min(attempts - 1, 62))
        return self.rng.uniform(0, cap)

    def drain(
        self,
        send: Send,
        *,
        on_sent: Callable[[Operation, SyncResponse], None] | None = None,
    ) -> DrainReport:
        """Send every due operation once, in queue order; see the module docstring.

        ``on_sent(operation, response)`` runs for each success before the
        operation leaves the outbox: a crash between the two sends it again,
        and the server answers the retry from its idempotency record, so
        ``on_sent`` must accept the same answer twice.

        :raises strongroom.errors.PinMismatchError: the server's key is not
            pinned: nothing more is sent.
        :raises strongroom.errors.IntegrityError: an answer failed its check:
            nothing more is sent, and the operation stays as it was.
        :raises strongroom.errors.KeyUnavailableError: signing needs the unlocked account.
        """
        report = DrainReport()
        blocked: dict[str, str] = {}
        for operation in self.operations():
            stream = operation.stream
            if stream is not None and stream in blocked:
                report.blocked.append((operation.id, blocked[stream]))
                continue
            if report.offline:
                report.waiting.append(operation)
                continue
            done = self._drain_one(operation, send, on_sent, report)
            if not done and stream is not None:
                blocked[stream] = operation.id
        return report

    def _drain_one(
        self,
        operation: Operation,
        send: Send,
        on_sent: Callable[[Operation, SyncResponse], None] | None,
        report: DrainReport,
    ) -> bool:
        """Try ``operation`` if it is due; whether it left the outbox."""
        if operation.parked is not None:
            return False
        now = self.clock()
        first = operation.first_attempt
        if first is not None and now - first > self.retention and not operation.send_stale:
            hours = self.retention / 3600
            error = (
                f"first sent more than {hours:g} h ago, past the server's idempotency "
                "retention: retry it with send_stale to send it anyway, or drop it"
            )
            report.parked.append(self._park(operation, "stale", error))
            return False
        if operation.next_at > now:
            report.waiting.append(operation)
            return False
        return self._send_one(operation, send, on_sent, report)

    def _send_one(
        self,
        operation: Operation,
        send: Send,
        on_sent: Callable[[Operation, SyncResponse], None] | None,
        report: DrainReport,
    ) -> bool:
        if operation.first_attempt is None:  # kept only if this attempt fails
            operation = msgspec.structs.replace(operation, first_attempt=self.clock())
        try:
            response = self._attempt(operation, send)
        except PinMismatchError:
            raise
        except RequestRefusedError as refused:  # a signed refusal of the request's signature
            retry, error = is_retryable_error(refused), _one_line(refused)
        except TransportError as failed:  # no answer at all: stop here
            report.offline = True
            retry, error = True, _one_line(failed)
        else:
            if 200 <= response.status < 300:
                if on_sent is not None:
                    on_sent(operation, response)
                self.store.delete(PREFIX + operation.id)
                report.sent.append((operation, response))
                return True
            retry = is_retryable_status(response.status)
            error = describe_answer(response.status, response.body)
        if retry:
            self._failed(operation, error, report)
        else:
            report.parked.append(self._park(operation, "refused", error))
        return False

    def _attempt(self, operation: Operation, send: Send) -> SyncResponse:
        headers = {**operation.headers, IDEMPOTENCY_KEY: operation.idempotency_key}
        if operation.fresh_auth:
            token = self._challenge(operation, send)
            if isinstance(token, SyncResponse):
                return token  # the challenge itself was refused: judged as the operation's answer
            headers[CHALLENGE] = token
        return send(SyncRequest(operation.method, operation.path, operation.body, headers))

    def _challenge(self, operation: Operation, send: Send) -> str | SyncResponse:
        account = urllib.parse.quote(self.account, safe="")
        body = msgspec.msgpack.encode({"operation": operation.idempotency_key})
        headers = {"Content-Type": "application/msgpack"}
        answer = send(SyncRequest("POST", f"/v1/accounts/{account}/challenges", body, headers))
        if answer.status != 200:
            return answer
        try:
            token = msgspec.msgpack.decode(answer.body).get("token")
        except (msgspec.DecodeError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or not h.is_challenge(token):
            return SyncResponse(502, msgspec.msgpack.encode({"error": "challenge-malformed"}))
        return token

    def _failed(self, operation: Operation, error: str, report: DrainReport) -> None:
        attempts = operation.attempts + 1
        if attempts >= self.max_attempts:
            report.parked.append(
                self._park(operation, "attempts", f"{attempts} attempts failed; last: {error}")
            )
            return
        later = msgspec.structs.replace(
            operation,
            attempts=attempts,
            error=error,
            next_at=self.clock() + self.delay(attempts),
        )
        self._save(later)
        report.retrying.append(later)

    def _park(self, operation: Operation, why: str, error: str) -> Operation:
        parked = msgspec.structs.replace(operation, parked=why, error=error)
        self._save(parked)
        return parked

    def _save(self, operation: Operation) -> None:
        self.store.put(PREFIX + operation.id, encode(operation))

    def _load(self, key: str) -> Operation:
        data = self.store.get(key)
        try:
            return decode(data)
        except msgspec.DecodeError:  # the store verified it: only our own bug writes this
            raise IntegrityError(f"outbox record {key[len(PREFIX) :]} is malformed") from None


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]
