"""The server half of request signing, framework-neutral: no web framework is imported.

``RequestVerifier.verify`` checks, in this order: the headers' syntax (400),
the key id (401), the canonical form of the request (400), the MAC in
constant time (401), the timestamp window (401), and only then records the
nonce (401 if seen; 503 if the cache cannot answer), so a forged request
never burns a nonce and a cache failure never lets a request through.
Every refusal carries the server's time; a refusal of an authentic request
(stale timestamp, replay, cache unavailable) is signed, so the client can
trust that time and correct its clock.  Keys are HMAC keys shared with devices, named by key id
(``<device>.v<version>``), so a server holds several devices' keys and
rotates them by adding the new id and retiring the old.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from strongroom.errors import NonceCacheUnavailableError, RequestVerificationError, UsageError
from strongroom.idempotency import AsyncReplayState, Begun, Claim
from strongroom.nonce_cache import NonceCache
from strongroom.signing import headers as h
from strongroom.signing.canonical import CanonicalError, canonical_request, canonical_response

__all__ = ["DEFAULT_WINDOW", "KeyRing", "RequestVerifier", "VerifiedRequest"]

#: Seconds a request's timestamp may be from the server's clock, either way.
DEFAULT_WINDOW = 300.0

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class KeyRing:
    """Devices' MAC keys by key id; a retired id is refused like an unknown one."""

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        self._retired: set[str] = set()
        for key_id, key in (keys or {}).items():
            self.add(key_id, key)

    def add(self, key_id: str, key: bytes) -> None:
        """Accept requests signed under ``key_id`` with ``key`` (32 bytes or more).

        :raises strongroom.errors.UsageError: a malformed id, a short key, or an id retired.
        """
        if not h.is_key_id(key_id):
            raise UsageError("a key id is 1 to 64 of A-Z a-z 0-9 . _ -")
        if len(key) < 32:
            raise UsageError("a request-signing key is at least 32 bytes")
        if key_id in self._retired:
            raise UsageError(f"key id {key_id!r} was retired; a new key takes a new id")
        self._keys[key_id] = bytes(key)

    def retire(self, key_id: str) -> None:
        """Refuse ``key_id`` from now on, and forget its key."""
        self._retired.add(key_id)
        self._keys.pop(key_id, None)

    def __call__(self, key_id: str) -> bytes | None:
        return self._keys.get(key_id)

    def __repr__(self) -> str:
        return f"<KeyRing ids={sorted(self._keys)} retired={sorted(self._retired)}>"


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """What a verified request was signed with; pass it to :meth:`RequestVerifier.sign_response`."""

    key_id: str
    nonce: str
    timestamp: int
    idempotency_key: str
    #: The signed ``Strongroom-Challenge`` token, ``""`` when the request carries none.
    challenge: str = ""


class RequestVerifier:
    """Verifies signed requests and signs responses; share one per server process.

    ``keys(key_id)`` returns the MAC key or ``None`` (a :class:`KeyRing`, or
    any callable); ``nonces`` is the configured nonce cache
    (``Strongroom.nonce_cache``); ``clock`` returns Unix seconds.
    """

    def __init__(
        self,
        keys: Callable[[str], bytes | None],
        nonces: NonceCache,
        *,
        window: float = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < window <= 86_400:
            raise UsageError("the timestamp window is more than 0 and at most 86400 seconds")
        self._keys = keys
        self._nonces = nonces
        self.window = window
        self._clock = clock

    def verify(self, method: str, target: str, headers: Headers, body: bytes) -> VerifiedRequest:
        """Check a request as received; ``target`` is its raw path and query.

        :raises strongroom.errors.RequestVerificationError: refused, with the
            status to answer (see :meth:`rejection`).
        """
        verified = self.authenticate(method, target, headers, body)
        try:
            fresh = self._nonces.add(verified.key_id, verified.nonce, self._expiry(verified))
        except NonceCacheUnavailableError as exc:
            raise self._unavailable(verified, exc) from exc
        if not fresh:
            raise self._replayed(verified)
        return verified

    def authenticate(
        self, method: str, target: str, headers: Headers, body: bytes
    ) -> VerifiedRequest:
        """Every check of :meth:`verify` but the nonce: follow with :meth:`admit`.

        :raises strongroom.errors.RequestVerificationError: refused.
        """
        now = self._clock()
        try:
            found = _signed_headers(headers)
        except ValueError as exc:
            raise _refuse(400, "malformed", str(exc), now) from None
        key_id, timestamp, nonce, signature, idempotency_key, challenge = found
        key = self._keys(key_id)
        if key is None:
            raise _refuse(401, "signature", f"unknown or retired key id {key_id!r}", now)
        try:
            message = canonical_request(
                method,
                target,
                body_sha256=hashlib.sha256(body).hexdigest(),
                timestamp=timestamp,
                nonce=nonce,
                key_id=key_id,
                idempotency_key=idempotency_key,
                challenge=challenge,
            )
        except CanonicalError as exc:
            raise _refuse(400, "malformed", f"the request target: {exc}", now) from None
        expected = h.b64(hmac.digest(key, message, "sha256"))
        if not hmac.compare_digest(expected, signature):
            raise _refuse(401, "signature", "the signature does not verify", now)
        signed_at = int(timestamp)
        if abs(now - signed_at) > self.window:
            raise _refuse(
                401,
                "timestamp",
                "the timestamp is outside the window",
                now,
                key_id=key_id,
                nonce=nonce,
            )
        return VerifiedRequest(key_id, nonce, signed_at, idempotency_key, challenge)

    @property
    def nonce_cache(self) -> NonceCache:
        """The cache nonces are recorded in; :meth:`admit` needs an ``AsyncReplayState``."""
        return self._nonces

    async def admit(self, verified: VerifiedRequest, claim: Claim | None = None) -> Begun:
        """Record an authenticated request's nonce on the event loop, claiming ``claim`` with it.

        :raises strongroom.errors.RequestVerificationError: a replay (401), or
            the cache cannot answer (503).
        :raises strongroom.errors.UsageError: the nonce cache is not an
            :class:`~strongroom.idempotency.AsyncReplayState`.
        """
        nonces = self._nonces
        if not isinstance(nonces, AsyncReplayState):
            raise UsageError(f"{nonces!r} cannot admit on an event loop; use verify()")
        try:
            begun = await nonces.admit(
                verified.key_id, verified.nonce, self._expiry(verified), claim
            )
        except NonceCacheUnavailableError as exc:
            raise self._unavailable(verified, exc) from exc
        if begun is None:
            raise self._replayed(verified)
        return begun

    def _expiry(self, verified: VerifiedRequest) -> float:
        """When the request's timestamp leaves the window: its nonce may be forgotten then."""
        return verified.timestamp + self.window + 1

    def _unavailable(
        self, verified: VerifiedRequest, exc: NonceCacheUnavailableError
    ) -> RequestVerificationError:
        return _refuse(
            503,
            "unavailable",
            f"the nonce cache: {exc}",
            self._clock(),
            key_id=verified.key_id,
            nonce=verified.nonce,
        )

    def _replayed(self, verified: VerifiedRequest) -> RequestVerificationError:
        return _refuse(
            401,
            "replay",
            "the nonce was used before",
            self._clock(),
            key_id=verified.key_id,
            nonce=verified.nonce,
        )

    def sign_response(self, verified: VerifiedRequest, status: int, body: bytes) -> dict[str, str]:
        """The headers that sign a response to ``verified`` (status, body, its nonce, the time).

        :raises strongroom.errors.UsageError: the key id was retired since.
        """
        return self._sign(verified.key_id, verified.nonce, status, body, self._clock())

    def rejection(self, refused: RequestVerificationError) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and JSON body to answer a refused request with.

        The body names the reason and the server's time; a refusal of an
        authentic request (stale timestamp, replay) is signed with its key.
        """
        body = json.dumps(
            {"error": refused.reason, "server_time": refused.server_time}, separators=(",", ":")
        ).encode()
        headers = {h.SERVER_TIME: str(refused.server_time), h.REJECTED: refused.reason}
        if isinstance(refused, _AuthenticRefusal) and self._keys(refused.key_id) is not None:
            signature = self._sign(
                refused.key_id, refused.nonce, refused.status, body, refused.server_time
            )
            headers |= signature
        return refused.status, headers, body

    def _sign(
        self, key_id: str, nonce: str, status: int, body: bytes, server_time: float
    ) -> dict[str, str]:
        key = self._keys(key_id)
        if key is None:
            raise UsageError(f"key id {key_id!r} is no longer known: the response cannot be signed")
        when = str(int(server_time))
        message = canonical_response(
            status,
            body_sha256=hashlib.sha256(body).hexdigest(),
            nonce=nonce,
            key_id=key_id,
            server_time=when,
        )
        signature = h.b64(hmac.digest(key, message, "sha256"))
        return {h.SERVER_TIME: when, h.RESPONSE_SIGNATURE: signature}

    def __repr__(self) -> str:
        return f"<RequestVerifier window={self.window:g}s nonces={self._nonces!r}>"


def _signed_headers(headers: Headers) -> tuple[str, str, str, str, str, str]:
    """Key id, timestamp, nonce, signature, idempotency key and challenge, each checked.

    :raises ValueError: one is missing, repeated or malformed.
    """
    wanted = h.VERIFIER_READS
    found: dict[str, str] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        lower = name.lower()
        if lower in wanted:
            if lower in found:
                raise ValueError(f"header {name} appears more than once")
            found[lower] = value
    key_id, timestamp, nonce, signature = (found.get(name) for name in h.REQUEST_HEADERS)
    checks = (
        (h.KEY_ID, key_id, h.is_key_id),
        (h.TIMESTAMP, timestamp, h.is_time),
        (h.NONCE, nonce, h.is_nonce),
        (h.SIGNATURE, signature, h.is_signature),
    )
    for name, value, valid in checks:
        if value is None:
            raise ValueError(f"no {name} header")
        if not valid(value):
            raise ValueError(f"a malformed {name} header")
    idempotency_key = found.get(h.IDEMPOTENCY_KEY.lower(), "")
    if not h.is_idempotency_key(idempotency_key):
        raise ValueError(f"a malformed {h.IDEMPOTENCY_KEY} header")
    challenge = found.get(h.CHALLENGE.lower(), "")
    if not h.is_challenge(challenge):
        raise ValueError(f"a malformed {h.CHALLENGE} header")
    return key_id, timestamp, nonce, signature, idempotency_key, challenge  # type: ignore[return-value]


def _refuse(
    status: int,
    reason: str,
    message: str,
    now: float,
    *,
    key_id: str | None = None,
    nonce: str | None = None,
) -> RequestVerificationError:
    """The refusal; one of an authentic request remembers what to sign it for."""
    text = f"request refused ({status} {reason}): {message}"
    if key_id is not None and nonce is not None:
        return _AuthenticRefusal(
            text, status=status, reason=reason, server_time=int(now), key_id=key_id, nonce=nonce
        )
    return RequestVerificationError(text, status=status, reason=reason, server_time=int(now))


class _AuthenticRefusal(RequestVerificationError):
    """A refusal of a request whose MAC verified: its answer is signed."""

    def __init__(
        self, message: str, *, status: int, reason: str, server_time: int, key_id: str, nonce: str
    ) -> None:
        super().__init__(message, status=status, reason=reason, server_time=server_time)
        self.key_id = key_id
        self.nonce = nonce
