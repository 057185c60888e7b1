"""``memory``: a nonce cache inside one server process, bounded and expiring.

Entries sit in a dict for the membership test and in a heap ordered by
expiry, so each :meth:`MemoryNonceCache.add` first drops what has expired
(amortised O(log n)).  When ``max_entries`` live entries are held, a new
nonce is refused with ``NonceCacheUnavailableError`` rather than evicting
one: an evicted nonce could be replayed.  It serves idempotency records too
(:mod:`._memory_idempotency`), and its awaitable steps run in line: nothing
here waits on I/O, so an event loop loses nothing by calling them.
Several server processes need a shared cache (``redis``); each would
otherwise accept a nonce once.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Annotated

import msgspec

from strongroom.errors import NonceCacheUnavailableError
from strongroom.idempotency import (
    DEFAULT_KEEP_S,
    AsyncReplayState,
    Begun,
    Claim,
    Outcome,
    State,
)
from strongroom.nonce_cache import NonceCache
from strongroom.settings import BackendSettings
from strongroom_plugins.nonce_caches._memory_idempotency import MemoryIdempotency

__all__ = ["MemoryNonceCache", "MemoryNonceCacheSettings"]


class MemoryNonceCacheSettings(BackendSettings, frozen=True, kw_only=True):
    max_entries: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=100_000_000,
            description="live nonces held at most; beyond it requests are refused (503)",
        ),
    ] = 1_000_000


_NEW = Begun(State.NEW)


class MemoryNonceCache(NonceCache[MemoryNonceCacheSettings], MemoryIdempotency, AsyncReplayState):
    """Thread-safe; ``clock`` (Unix seconds) is injectable for tests; idempotency records too."""

    Settings = MemoryNonceCacheSettings

    def __init__(
        self,
        settings: MemoryNonceCacheSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings)
        self._clock = clock
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        """Record the pair unless it is live already; see :meth:`NonceCache.add`.

        :raises NonceCacheUnavailableError: ``max_entries`` live nonces are held.
        """
        now = self._clock()
        entry = (key_id, nonce)
        with self._lock:
            self._purge(now)
            held = self._expiry.get(entry)
            if held is not None and held > now:
                return False
            if held is None and len(self._expiry) >= self.settings.max_entries:
                raise NonceCacheUnavailableError(
                    f"the memory nonce cache holds its maximum of {self.settings.max_entries} "
                    "live nonces; requests are refused until some expire"
                )
            self._expiry[entry] = expires_at
            heapq.heappush(self._heap, (expires_at, key_id, nonce))
            return True

    async def admit(
        self, key_id: str, nonce: str, expires_at: float, claim: Claim | None = None
    ) -> Begun | None:
        if not self.add(key_id, nonce, expires_at):
            return None
        if claim is None:
            return _NEW
        return self.begin(claim.scope, claim.key, claim.fingerprint, lease_s=claim.lease_s)

    async def complete_async(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        self.complete(scope, key, fingerprint, outcome, keep_s=keep_s)

    async def release_async(self, scope: str, key: str, fingerprint: str) -> None:
        self.release(scope, key, fingerprint)

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key_id, nonce = heapq.heappop(heap)
            if expiry.get((key_id, nonce)) == expires_at:
                del expiry[(key_id, nonce)]

    def __len__(self) -> int:
        """Live and not yet purged entries."""
        with self._lock:
            return len(self._expiry)

    def __repr__(self) -> str:
        return f"<MemoryNonceCache max_entries={self.settings.max_entries}>"
