"""``SignedRequestsMiddleware``: a sync server behind the request verifier, as pure ASGI.

It wraps any ASGI application (Starlette, FastAPI, or a bare callable)
and imports neither.  Per HTTP request it reads the body (bounded), asks
:meth:`RequestVerifier.verify` in a worker thread (the verifier's key
lookup and a Redis-backed nonce cache block, and the event loop must
not), and answers a refusal with :meth:`RequestVerifier.rejection`
without calling the application.  When the nonce cache is an
:class:`~strongroom.idempotency.AsyncReplayState` (``memory`` and
``redis`` are) and also keeps the idempotency records, only the signature
check goes to the thread: the nonce and the idempotency key are taken in
one awaited step on the event loop, and the outcome is stored the same
way, which saves a busy server two hand-offs per request.  The middleware
then closes the backend's client for its loop at lifespan shutdown.  A
verified request reaches the application with ``scope["strongroom.verified"]``
(a :class:`~strongroom.signing.verifier.VerifiedRequest`) and its body
replayed; the response is buffered (bounded) and signed over the request's
nonce.

With an idempotency store, a request carrying an ``Idempotency-Key`` (the
verifier has checked it: 1 to 255 printable ASCII characters, else 400)
is run at most once per key id and key: a retry gets the first stored
outcome back, re-signed over its own nonce and marked
``Idempotency-Replayed: true``; the same key with another request is 422,
one still running 409, and a store that cannot answer 503.  Which
outcomes are kept is :func:`strongroom.idempotency.is_stored`, less the
statuses in ``not_stored``.

Each request leaves one line on the ``strongroom.access`` logger, with
the fields also as record attributes (``method``, ``path``, ``status``,
``key_id``, ``duration_ms``, ``replayed``, ``reason``): never a body, a
query string, a header value, a signature or a token.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from strongroom.errors import IdempotencyUnavailableError, RequestVerificationError, UsageError
from strongroom.idempotency import (
    DEFAULT_KEEP_S,
    DEFAULT_LEASE_S,
    AsyncReplayState,
    Begun,
    Claim,
    IdempotencyStore,
    Outcome,
    State,
    fingerprint,
    is_stored,
)
from strongroom.signing import headers as h
from strongroom.signing.verifier import RequestVerifier, VerifiedRequest
from strongroom_contrib._asgi_io import (
    Response,
    TooLarge,
    capture,
    in_thread,
    read_body,
    replaying,
    respond,
)

__all__ = ["REPLAYED", "VERIFIED", "SignedRequestsMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope key the verified request is passed under.
VERIFIED = "strongroom.verified"
#: The header marking an answer replayed from the idempotency store.
REPLAYED = "Idempotency-Replayed"

access_log = logging.getLogger("strongroom.access")

_VERIFIER_READS = frozenset(name.encode("latin-1") for name in h.VERIFIER_READS)

#: Response headers never stored for a replay: they describe one transmission, or are re-made.
_NOT_REPLAYED = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "date",
        "server",
        "set-cookie",
        "strongroom-response-signature",
        "strongroom-server-time",
        REPLAYED.lower(),
    }
)


class SignedRequestsMiddleware:
    """Verify, run at most once per idempotency key, sign; see the module docstring.

    :raises strongroom.errors.UsageError: ``idempotency`` is not an
        :class:`~strongroom.idempotency.IdempotencyStore`.
    """

    def __init__(
        self,
        app: App,
        *,
        verifier: RequestVerifier,
        idempotency: IdempotencyStore | None = None,
        sign_responses: bool = True,
        max_body_bytes: int = 16 * 1024 * 1024,
        max_response_bytes: int = 64 * 1024 * 1024,
        lease_s: float = DEFAULT_LEASE_S,
        keep_s: float = DEFAULT_KEEP_S,
        not_stored: frozenset[int] = frozenset(),
    ) -> None:
        if idempotency is not None and not isinstance(idempotency, IdempotencyStore):
            raise UsageError(f"{idempotency!r} is not an IdempotencyStore")
        nonces = verifier.nonce_cache
        #: The backend awaited on the loop, when it holds the nonces and the records alike.
        self._awaited = (
            nonces
            if isinstance(nonces, AsyncReplayState)
            and (idempotency is None or idempotency is cast(object, nonces))
            else None
        )
        self.app = app
        self.verifier = verifier
        self.idempotency = idempotency
        self.sign_responses = sign_responses
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self.lease_s = lease_s
        self.keep_s = keep_s
        self.not_stored = not_stored

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no signature covers a socket: refuse it
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "lifespan" and self._awaited is not None:
            await self.app(scope, receive, _closing_at_shutdown(self._awaited, send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        entry = _Entry(scope)
        try:
            await self._serve(scope, receive, send, entry)
        finally:
            entry.log(started)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, entry: _Entry) -> None:
        method: str = scope["method"]
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        headers = [  # those the verifier reads: on a busy server every header costs
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in raw
            if name.lower() in _VERIFIER_READS
        ]
        try:
            body = await read_body(receive, raw, self.max_body_bytes)
        except TooLarge:
            entry.status, entry.reason = 413, "too_large"
            await respond(send, _problem(413, "too_large"))
            return
        store = self.idempotency
        try:
            verified, started = await self._admit(method, target.decode("latin-1"), headers, body)
        except RequestVerificationError as refused:
            entry.status, entry.reason = refused.status, refused.reason
            entry.key_id = getattr(refused, "key_id", None)
            if refused.status >= 500:  # the operator's to fix: say what failed
                access_log.warning("%s", refused)
            status, refusal, text = self.verifier.rejection(refused)
            await respond(send, Response(status, list(refusal.items()), text))
            return
        entry.key_id = verified.key_id
        inner = {**scope, VERIFIED: verified, "extensions": _body_extensions(scope)}
        if store is None or started is None:
            if not self.sign_responses:
                entry.status = await _passing(self.app, inner, replaying(body, receive), send)
                return
            answer = await self._run(inner, body, receive)
        else:
            answer = await self._once(store, inner, body, receive, started=started, entry=entry)
        entry.status = answer.status
        await respond(send, self._signed(verified, answer))

    async def _run(self, scope: Scope, body: bytes, receive: Receive) -> Response:
        """The application's response, buffered; 500 if it is over the limit."""
        try:
            return await capture(self.app, scope, replaying(body, receive), self.max_response_bytes)
        except TooLarge:
            access_log.warning("a response over max_response_bytes was refused")
            return _problem(500, "response_too_large")

    async def _admit(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[VerifiedRequest, _Started | None]:
        """Verify, and begin a request with an idempotency key; see the module docstring.

        :raises strongroom.errors.RequestVerificationError: refused.
        """
        if self._awaited is None:  # one hand-off to a worker thread for both steps
            return await in_thread(self._verify_and_begin, method, target, headers, body)
        verified, digest = await in_thread(self._authenticate, method, target, headers, body)
        if digest is None:
            await self.verifier.admit(verified)
            return verified, None
        claim = Claim(verified.key_id, verified.idempotency_key, digest, self.lease_s)
        return verified, _Started(digest, await self.verifier.admit(verified, claim), None)

    def _authenticate(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[VerifiedRequest, str | None]:
        """Authenticate (in a worker thread); the fingerprint too if an idempotency key is kept."""
        verified = self.verifier.authenticate(method, target, headers, body)
        return verified, self._fingerprint(verified, method, target, body)

    def _fingerprint(
        self, verified: VerifiedRequest, method: str, target: str, body: bytes
    ) -> str | None:
        """The request's fingerprint when its outcome is kept: a store and an idempotency key."""
        if self.idempotency is None or not verified.idempotency_key:
            return None
        return fingerprint(method, target, body)

    def _verify_and_begin(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[VerifiedRequest, _Started | None]:
        """Verify; then, for a request with an idempotency key, begin it (in a worker thread).

        :raises strongroom.errors.RequestVerificationError: refused.
        """
        verified = self.verifier.verify(method, target, headers, body)
        store, digest = self.idempotency, self._fingerprint(verified, method, target, body)
        if store is None or digest is None:
            return verified, None
        try:
            begun = store.begin(
                verified.key_id, verified.idempotency_key, digest, lease_s=self.lease_s
            )
        except IdempotencyUnavailableError as exc:
            return verified, _Started(digest, None, exc)
        return verified, _Started(digest, begun, None)

    async def _once(
        self,
        store: IdempotencyStore,
        scope: Scope,
        body: bytes,
        receive: Receive,
        *,
        started: _Started,
        entry: _Entry,
    ) -> Response:
        verified: VerifiedRequest = scope[VERIFIED]
        scope_id, key, digest = verified.key_id, verified.idempotency_key, started.digest
        begun = started.begun
        if begun is None:
            access_log.warning("idempotency store unavailable: %s", started.failure)
            entry.reason = "unavailable"
            return _problem(503, "unavailable", rejected=True)
        if begun.state is State.REPLAY and begun.outcome is not None:
            entry.replayed = True
            stored = begun.outcome
            return Response(stored.status, [*stored.headers, (REPLAYED, "true")], stored.body)
        if begun.state is State.MISMATCH:
            entry.reason = "idempotency_mismatch"
            return _problem(422, "idempotency_mismatch")
        if begun.state is State.IN_FLIGHT:
            entry.reason = "idempotency_in_flight"
            return _problem(409, "idempotency_in_flight")
        try:
            answer = await self._run(scope, body, receive)
        except BaseException:
            await self._record(store, scope_id, key, digest, None)
            raise
        if is_stored(answer.status) and answer.status not in self.not_stored:
            headers = tuple(
                (name, value) for name, value in answer.headers if name.lower() not in _NOT_REPLAYED
            )
            await self._record(
                store, scope_id, key, digest, Outcome(answer.status, headers, answer.body)
            )
        else:
            await self._record(store, scope_id, key, digest, None)
        return answer

    async def _record(
        self, store: IdempotencyStore, scope: str, key: str, digest: str, outcome: Outcome | None
    ) -> None:
        """Store ``outcome``, or release the key for ``None``; a failure is logged.

        The request has run: refusing its answer now would only make the device
        retry it.  Its marker then holds the key until the lease runs out.
        """
        awaited = self._awaited
        try:
            if outcome is None:
                if awaited is not None:
                    await awaited.release_async(scope, key, digest)
                else:
                    await in_thread(store.release, scope, key, digest)
            elif awaited is not None:
                await awaited.complete_async(scope, key, digest, outcome, keep_s=self.keep_s)
            else:
                await in_thread(store.complete, scope, key, digest, outcome, keep_s=self.keep_s)
        except IdempotencyUnavailableError as exc:
            access_log.warning("an idempotent outcome was not recorded: %s", exc)

    def _signed(self, verified: VerifiedRequest, answer: Response) -> Response:
        if not self.sign_responses:
            return answer
        headers = [
            (name, value)
            for name, value in answer.headers
            if name.lower() not in {"strongroom-response-signature", "strongroom-server-time"}
        ]
        signature = self.verifier.sign_response(verified, answer.status, answer.body)
        return Response(answer.status, [*headers, *signature.items()], answer.body)


@dataclass(frozen=True)
class _Started:
    """An idempotent request begun in the verifying thread: the store's answer, or why none."""

    digest: str
    begun: Begun | None
    failure: IdempotencyUnavailableError | None


class _Entry:
    """One access-log line in the making: only what may be logged is ever put here."""

    def __init__(self, scope: Scope) -> None:
        self.method = str(scope.get("method", "-"))
        path = str(scope.get("path", "-"))[:200]
        if not path.isprintable():
            path = "".join(ch if ch.isprintable() else "?" for ch in path)
        self.path = path
        self.status = 500
        self.key_id: str | None = None
        self.replayed = False
        self.reason = ""

    def log(self, started: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):  # spare a busy server the fields
            return
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        fields = {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "key_id": self.key_id or "-",
            "duration_ms": duration_ms,
            "replayed": self.replayed,
            "reason": self.reason or "-",
        }
        access_log.info(
            "%(method)s %(path)s %(status)s key_id=%(key_id)s duration_ms=%(duration_ms)s "
            "replayed=%(replayed)s reason=%(reason)s",
            fields,
            extra=fields,
        )


def _problem(status: int, error: str, *, rejected: bool = False) -> Response:
    """A small JSON answer of the middleware's own; ``rejected`` marks a refusal for the client."""
    server_time = int(time.time())
    body = json.dumps({"error": error, "server_time": server_time}, separators=(",", ":")).encode()
    headers = [("content-type", "application/json")]
    if rejected:
        headers.append(("Strongroom-Rejected", error))
    return Response(status, headers, body)


def _body_extensions(scope: Scope) -> dict[str, Any]:
    """The scope's extensions without the response ones, so the body comes as messages."""
    return {
        name: value
        for name, value in (scope.get("extensions") or {}).items()
        if not name.startswith("http.response.")
    }


async def _passing(app: App, scope: Scope, receive: Receive, send: Send) -> int:
    """Run the application, streaming its response; the status it sent."""
    status = 500

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    await app(scope, receive, sending)
    return status


def _closing_at_shutdown(state: AsyncReplayState, send: Send) -> Send:
    """``send`` for a lifespan: the backend's client for this loop closes before shutdown ends."""

    async def sending(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await state.aclose()
        await send(message)

    return sending
