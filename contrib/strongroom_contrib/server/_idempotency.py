"""The idempotency store as the sync server hands it to the middleware.

The middleware keeps every outcome :func:`strongroom.idempotency.is_stored`
accepts, 428 among them.  A 428 (no valid challenge token) must not be
the operation's final answer: the client fetches a token and retries with
the same idempotency key, which must then run.  This wrapper releases the
key instead of storing such an outcome; everything else is delegated.
"""

from __future__ import annotations

from strongroom.idempotency import DEFAULT_KEEP_S, DEFAULT_LEASE_S, Begun, IdempotencyStore, Outcome

__all__ = ["NOT_STORED_HERE", "ReleasingStore"]

#: Outcomes released rather than stored, besides those the middleware never stores.
NOT_STORED_HERE = frozenset({428})


class ReleasingStore(IdempotencyStore):
    """``store``, but an outcome whose status is in :data:`NOT_STORED_HERE` is released."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store

    def begin(
        self, scope: str, key: str, fingerprint: str, *, lease_s: float = DEFAULT_LEASE_S
    ) -> Begun:
        return self._store.begin(scope, key, fingerprint, lease_s=lease_s)

    def complete(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        if outcome.status in NOT_STORED_HERE:
            self._store.release(scope, key, fingerprint)
        else:
            self._store.complete(scope, key, fingerprint, outcome, keep_s=keep_s)

    def release(self, scope: str, key: str, fingerprint: str) -> None:
        self._store.release(scope, key, fingerprint)

    def __repr__(self) -> str:
        return f"<ReleasingStore {self._store!r}>"
