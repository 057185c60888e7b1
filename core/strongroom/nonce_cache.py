"""The ``NonceCache`` slot: which request nonces a server has already accepted.

A signed request is single-use: the verifier records its (key id, nonce)
here once its signature and timestamp check out, and refuses it if the
pair was already recorded.  An entry must live until ``expires_at``, when
its timestamp leaves the verifier's window and the request would be
refused anyway.  A cache that cannot answer (unreachable, or full of live
entries) raises, and the verifier refuses the request: it never accepts
unchecked, and a backend never evicts a live entry to make room, since an
evicted nonce is a replayable request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from strongroom.backend import Backend, S_co

__all__ = ["NonceCache"]


class NonceCache(Backend[S_co], ABC):
    """Single-use nonces, scoped per key id, for as long as a request could be accepted.

    Implementations are shared by every request a server handles, from
    any thread: :meth:`add` must be atomic, so that of any number of
    concurrent requests with one nonce exactly one is told it is new.
    """

    @abstractmethod
    def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        """Record ``nonce`` under ``key_id`` until ``expires_at`` (Unix seconds).

        Returns ``True`` if the pair was new (it is recorded now), ``False``
        if it is already recorded and not expired (a replay).

        :raises strongroom.errors.NonceCacheUnavailableError: the cache cannot
            answer or cannot record it; the request must be refused.
        """
