"""``create_app``: the reference sync server as one ASGI application.

Layers, outermost first: the two unsigned probes (``/v1/health``,
``/v1/ready``), answered without the verifier; the signed-requests
middleware (verification, idempotent replay, response signing, the access
log); a shim that lets routes match the raw, percent-encoded path, so a
``/`` encoded in a key stays inside its segment; the Starlette routes of
:mod:`strongroom_contrib.server._endpoints`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from strongroom.errors import StrongroomError, UsageError
from strongroom.idempotency import IdempotencyStore
from strongroom.nonce_cache import NonceCache
from strongroom.server_storage import ServerStorage
from strongroom.signing.verifier import DEFAULT_WINDOW, RequestVerifier
from strongroom_contrib.asgi import SignedRequestsMiddleware
from strongroom_contrib.server._challenges import Challenges
from strongroom_contrib.server._devices import DeviceKeys
from strongroom_contrib.server._endpoints import Endpoints
from strongroom_contrib.server._wire import answer, problem

__all__ = ["DEFAULT_MAX_BODY_BYTES", "HEALTH", "READY", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH = "/v1/health"
READY = "/v1/ready"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Outcomes released rather than kept, besides those the middleware never keeps: a 428
#: (no valid challenge token) is not the operation's answer; the device fetches a
#: token and retries with the same idempotency key, which must then run.
NOT_STORED_HERE = frozenset({428})
#: The scope under which the readiness probe records a throwaway nonce (no key id has a colon).
_PROBE_SCOPE = "strongroom:ready"

log = logging.getLogger("strongroom.server")


def create_app(
    storage: ServerStorage,
    nonce_cache: NonceCache,
    *,
    window: float = DEFAULT_WINDOW,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    challenge_secret: bytes | None = None,
) -> App:
    """The sync server over ``storage`` and ``nonce_cache`` (the caller owns and closes both).

    The verifier's keys are the storage's active devices; the nonce cache
    also keeps idempotent outcomes when it implements
    :class:`~strongroom.idempotency.IdempotencyStore`.  ``challenge_secret``
    (32 bytes or more) keys challenge tokens and must be the same in every
    process of a deployment; ``None`` draws one for this process alone.

    :raises strongroom.errors.UsageError: a window, limit or secret out of range.
    """
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise UsageError("max_body_bytes is a positive number of bytes")
    keys = DeviceKeys(storage)
    verifier = RequestVerifier(keys, nonce_cache, window=window)
    secret = secrets.token_bytes(32) if challenge_secret is None else challenge_secret
    endpoints = Endpoints(storage, keys, Challenges(secret, nonce_cache))
    routes = Starlette(
        routes=endpoints.routes(),
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    signed = SignedRequestsMiddleware(
        _raw_path_routing(routes),
        verifier=verifier,
        idempotency=nonce_cache if isinstance(nonce_cache, IdempotencyStore) else None,
        max_body_bytes=max_body_bytes,
        not_stored=NOT_STORED_HERE,
    )
    probes = _Probes(storage, nonce_cache)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in (HEALTH, READY):
            await probes(scope, receive, send)
        else:
            await signed(scope, receive, send)

    return app


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return problem(404, "not-found")


async def _not_allowed(_request: Request, _exc: Exception) -> Response:
    return problem(405, "method")


def _raw_path_routing(app: Starlette) -> App:
    """Route on the raw path: ``{key}`` then matches one encoded segment, decoded by the handler."""

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path")
            path = raw.decode("latin-1") if raw else scope["path"]
            scope = {**scope, "path": path, "root_path": ""}
        await app(scope, receive, send)

    return routed


class _Probes:
    """``/v1/health``: the process serves; ``/v1/ready``: storage and nonce cache answer."""

    def __init__(self, storage: ServerStorage, nonce_cache: NonceCache) -> None:
        self._storage = storage
        self._nonce_cache = nonce_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            response = problem(405, "method")
        elif scope["path"] == HEALTH:
            response = answer({"status": "ok"})
        elif await run_in_threadpool(self._ready):
            response = answer({"status": "ready"})
        else:
            response = problem(503, "unavailable")
        await response(scope, receive, send)

    def _ready(self) -> bool:
        try:
            self._storage.device(_PROBE_SCOPE)
            self._nonce_cache.add(_PROBE_SCOPE, secrets.token_urlsafe(16), time.time() + 2)
        except StrongroomError as exc:
            log.warning("not ready: %s", exc)
            return False
        return True
