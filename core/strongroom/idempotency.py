"""``IdempotencyStore``: the first outcome of each idempotency key, replayed to retries.

A device retries a queued operation as a new signed request with the same
``Idempotency-Key``.  The server asks :meth:`IdempotencyStore.begin` before
running it: the first request with a key runs (``NEW``) while an in-flight
marker holds the key for ``lease_s``; a retry of a finished one gets the
stored outcome back (``REPLAY``) without running again; a retry while the
first is still running gets ``IN_FLIGHT`` (answer 409); the same key with
another request is ``MISMATCH`` (422).  Keys are scoped by the verified key
id, so one device never reads another's outcomes.

It is not a slot of its own: replay and idempotency state live together in
the ``strongroom.nonce_caches`` slot (memory for one process, Redis for
many), whose backends implement this interface beside
:class:`~strongroom.nonce_cache.NonceCache`, and may implement
:class:`AsyncReplayState` too, so a server takes each request's steps on
its event loop.  A store that cannot answer
raises :class:`~strongroom.errors.IdempotencyUnavailableError` and the
request is refused (503): nothing runs unchecked, and a live record is
never evicted to make room, since that would let a retry run twice.
"""

from __future__ import annotations

import enum
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

from strongroom.signing.canonical import canonical_path, canonical_query

__all__ = [
    "DEFAULT_KEEP_S",
    "DEFAULT_LEASE_S",
    "NOT_STORED",
    "AsyncReplayState",
    "Begun",
    "Claim",
    "IdempotencyStore",
    "Outcome",
    "State",
    "fingerprint",
    "is_stored",
]

#: Seconds an outcome is kept: a day, so a device offline overnight still gets its answer.
DEFAULT_KEEP_S = 86_400.0
#: Seconds an in-flight marker holds its key; a crashed server frees it after this.
DEFAULT_LEASE_S = 60.0
#: Statuses never stored: the request may well succeed when tried again.
#: (401: the handler refused the caller, perhaps only for now; 408, 409, 425,
#: 429: timing; every 5xx: the server failed.)
NOT_STORED = frozenset({401, 408, 409, 425, 429})


def is_stored(status: int) -> bool:
    """Whether an outcome with ``status`` is kept and replayed, rather than released."""
    return status < 500 and status not in NOT_STORED


def fingerprint(method: str, target: str, body: bytes) -> str:
    """SHA-256 (hex) over the method, the canonical target and the body's SHA-256.

    The target is canonicalised as for signing, so two spellings a server
    reads alike are one request.

    :raises strongroom.signing.canonical.CanonicalError: the target has no
        canonical form (a verified request always has one).
    """
    path, _, query = target.partition("?")
    text = "\n".join(
        (
            "strongroom-idempotency-v1",
            method.upper(),
            canonical_path(path),
            canonical_query(query),
            hashlib.sha256(body).hexdigest(),
        )
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class Outcome:
    """A stored response: its status, the headers worth replaying, and its body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __repr__(self) -> str:  # bodies are payloads: never in a log line
        return (
            f"Outcome(status={self.status}, headers={len(self.headers)}, body={len(self.body)} B)"
        )


class State(enum.Enum):
    """What :meth:`IdempotencyStore.begin` found."""

    #: The key was free: run the request, then ``complete`` or ``release`` it.
    NEW = "new"
    #: The key has a stored outcome for this very request: answer it, do not run.
    REPLAY = "replay"
    #: The key belongs to another request (another fingerprint): answer 422.
    MISMATCH = "mismatch"
    #: The same request is running elsewhere: answer 409.
    IN_FLIGHT = "in_flight"


@dataclass(frozen=True, slots=True)
class Begun:
    """The answer of :meth:`IdempotencyStore.begin`; ``outcome`` is set for ``REPLAY`` only."""

    state: State
    outcome: Outcome | None = None


class IdempotencyStore(ABC):
    """Outcomes by (scope, key), shared by every server process using one store.

    Every method may be called from any thread.  ``begin`` is atomic: of any
    number of concurrent begins with one scope and key, exactly one is told
    ``NEW``.  Every method raises
    :class:`~strongroom.errors.IdempotencyUnavailableError` when the store
    cannot answer or cannot hold one more record.
    """

    @abstractmethod
    def begin(
        self, scope: str, key: str, fingerprint: str, *, lease_s: float = DEFAULT_LEASE_S
    ) -> Begun:
        """Claim ``key`` for a request with ``fingerprint``, or say why not.

        On ``NEW`` an in-flight marker holds the key for ``lease_s`` seconds.

        :raises strongroom.errors.IdempotencyUnavailableError: the store cannot answer.
        """

    @abstractmethod
    def complete(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        """Store the request's outcome for ``keep_s`` seconds, replacing its marker.

        The first outcome stays: an outcome already stored, or a record of
        another fingerprint (the key was taken after this lease ran out),
        is left as it is.

        :raises strongroom.errors.IdempotencyUnavailableError: the store cannot answer.
        """

    @abstractmethod
    def release(self, scope: str, key: str, fingerprint: str) -> None:
        """Drop the in-flight marker of ``fingerprint``: the request left nothing worth keeping.

        A stored outcome or another request's marker is left as it is.

        :raises strongroom.errors.IdempotencyUnavailableError: the store cannot answer.
        """


@dataclass(frozen=True, slots=True)
class Claim:
    """An idempotency key to claim for a request once its nonce is recorded."""

    scope: str
    key: str
    fingerprint: str
    lease_s: float = DEFAULT_LEASE_S


class AsyncReplayState(ABC):
    """Optional for a backend that is both nonce cache and idempotency store: awaitable steps.

    A server's event loop awaits these instead of handing each step to a
    worker thread: for a backend that does I/O (Redis) the hand-off, and
    the wait for the interpreter lock on the way back, cost a busy server
    more than the step itself.  The semantics are those of the blocking
    methods; :meth:`admit` takes the nonce and the claim in one step, and
    a backend may make that one round trip.
    """

    @abstractmethod
    async def admit(
        self, key_id: str, nonce: str, expires_at: float, claim: Claim | None = None
    ) -> Begun | None:
        """``NonceCache.add``, then for a new nonce ``IdempotencyStore.begin`` of ``claim``.

        ``None``: the nonce was recorded before (a replay), and nothing was
        claimed; ``Begun(State.NEW)`` for a new nonce without a claim.

        :raises strongroom.errors.NonceCacheUnavailableError: the backend cannot
            answer (:class:`~strongroom.errors.IdempotencyUnavailableError` for the claim).
        """

    @abstractmethod
    async def complete_async(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        outcome: Outcome,
        *,
        keep_s: float = DEFAULT_KEEP_S,
    ) -> None:
        """:meth:`IdempotencyStore.complete`, awaited."""

    @abstractmethod
    async def release_async(self, scope: str, key: str, fingerprint: str) -> None:
        """:meth:`IdempotencyStore.release`, awaited."""

    async def aclose(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what calls on the running event loop opened; await it before the loop ends."""
