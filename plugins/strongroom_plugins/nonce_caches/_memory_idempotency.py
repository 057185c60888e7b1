"""Idempotency records inside one server process: bounded, expiring, thread-safe.

The ``memory`` nonce cache serves :class:`~strongroom.idempotency.IdempotencyStore`
through :class:`MemoryIdempotency`, a mixin that builds one
:class:`MemoryIdempotencyStore` on first use.  Records sit in a dict and
a heap ordered by expiry, as the nonces do.  A store holding
``max_entries`` live records, or ``max_bytes`` of stored bodies and
headers, refuses a new key (``IdempotencyUnavailableError``, 503) rather
than evict a live record, which would let a retry run twice.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from strongroom.errors import IdempotencyUnavailableError
from strongroom.idempotency import (
    DEFAULT_KEEP_S,
    DEFAULT_LEASE_S,
    Begun,
    IdempotencyStore,
    Outcome,
    State,
)

__all__ = ["MemoryIdempotency", "MemoryIdempotencyStore"]

_NEW = Begun(State.NEW)
_MISMATCH = Begun(State.MISMATCH)
_IN_FLIGHT = Begun(State.IN_FLIGHT)


@dataclass(slots=True)
class _Record:
    fingerprint: str
    expires_at: float
    outcome: Outcome | None = None
    size: int = 0


def _size(outcome: Outcome) -> int:
    return len(outcome.body) + sum(len(name) + len(value) for name, value in outcome.headers)


class MemoryIdempotencyStore(IdempotencyStore):
    """Records of one process; ``clock`` (Unix seconds) is injectable for tests."""

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._bytes = 0
        self._lock = threading.Lock()

    def begin(
        self, scope: str, key: str, fingerprint: str, *, lease_s: float = DEFAULT_LEASE_S
    ) -> Begun:
        now = self._clock()
        with self._lock:
            self._purge(now)
            record = self._records.get((scope, key))
            if record is None:
                if len(self._records) >= self.max_entries:
                    raise IdempotencyUnavailableError(
                        f"the memory idempotency store holds its maximum of {self.max_entries} "
                        "live records; keyed requests are refused until some expire"
                    )
                self._put(scope, key, _Record(fingerprint, now + lease_s))
                return _NEW
            if record.fingerprint != fingerprint:
                return _MISMATCH
            if record.outcome is None:
                return _IN_FLIGHT
            return Begun(State.REPLAY, record.outcome)

    def complete(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        now = self._clock()
        size = _size(outcome)
        with self._lock:
            self._purge(now)
            record = self._records.get((scope, key))
            if record is not None and (
                record.fingerprint != fingerprint or record.outcome is not None
            ):
                return  # the first outcome, or another request's key, stays
            if self._bytes + size > self.max_bytes:
                self._drop(scope, key)
                raise IdempotencyUnavailableError(
                    f"the memory idempotency store holds its maximum of {self.max_bytes} bytes "
                    "of outcomes; this one is not kept"
                )
            if record is None and len(self._records) >= self.max_entries:
                raise IdempotencyUnavailableError(
                    f"the memory idempotency store holds its maximum of {self.max_entries} "
                    "live records; this outcome is not kept"
                )
            self._drop(scope, key)
            self._put(scope, key, _Record(fingerprint, now + keep_s, outcome, size))

    def release(self, scope: str, key: str, fingerprint: str) -> None:
        with self._lock:
            record = self._records.get((scope, key))
            if record is not None and record.fingerprint == fingerprint and record.outcome is None:
                self._drop(scope, key)

    def _put(self, scope: str, key: str, record: _Record) -> None:
        self._records[(scope, key)] = record
        self._bytes += record.size
        heapq.heappush(self._heap, (record.expires_at, scope, key))

    def _drop(self, scope: str, key: str) -> None:
        record = self._records.pop((scope, key), None)
        if record is not None:
            self._bytes -= record.size

    def _purge(self, now: float) -> None:
        heap, records = self._heap, self._records
        while heap and heap[0][0] <= now:
            expires_at, scope, key = heapq.heappop(heap)
            record = records.get((scope, key))
            if record is not None and record.expires_at == expires_at:
                self._drop(scope, key)

    def __len__(self) -> int:
        """Live and not yet purged records."""
        with self._lock:
            return len(self._records)

    def __repr__(self) -> str:
        return f"<MemoryIdempotencyStore max_entries={self.max_entries} max_bytes={self.max_bytes}>"


_BUILDING = threading.Lock()


class MemoryIdempotency(IdempotencyStore):
    """Serves :class:`IdempotencyStore` from a :class:`MemoryIdempotencyStore` built on first use.

    A class mixing it in may set ``_clock`` (Unix seconds), which the store then reads.
    """

    _idempotency_store: MemoryIdempotencyStore | None = None

    def _idempotency(self) -> MemoryIdempotencyStore:
        store = self._idempotency_store
        if store is None:
            with _BUILDING:
                store = self._idempotency_store
                if store is None:
                    clock = getattr(self, "_clock", time.time)
                    store = self._idempotency_store = MemoryIdempotencyStore(clock=clock)
        return store

    def begin(
        self, scope: str, key: str, fingerprint: str, *, lease_s: float = DEFAULT_LEASE_S
    ) -> Begun:
        return self._idempotency().begin(scope, key, fingerprint, lease_s=lease_s)

    def complete(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        self._idempotency().complete(scope, key, fingerprint, outcome, keep_s=keep_s)

    def release(self, scope: str, key: str, fingerprint: str) -> None:
        self._idempotency().release(scope, key, fingerprint)
