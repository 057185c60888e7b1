"""The signed endpoints of ``docs/sync-protocol.md``, as Starlette handlers.

Each runs after the middleware verified the request.  It first checks the
account: the verified device must belong to the account its path names,
else 403 before the storage is touched; then, for a request whose
signature covers a ``Strongroom-Challenge`` token, that token (428).
Storage calls block, so they run in the middleware's worker threads
(``_asgi_io.in_thread``: half the CPU of Starlette's thread pool per
call); storage errors map to the protocol's codes, and a storage that
cannot answer to 503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from strongroom.errors import (
    IntegrityError,
    NonceCacheUnavailableError,
    ServerObjectNotFoundError,
    ServerStorageUnavailableError,
    UploadIncompleteError,
    UsageError,
)
from strongroom.server_storage import Applied, Change, ServerStorage
from strongroom.signing.headers import is_idempotency_key
from strongroom.signing.verifier import VerifiedRequest
from strongroom_contrib._asgi_io import in_thread
from strongroom_contrib.asgi import VERIFIED
from strongroom_contrib.server._challenges import Challenges
from strongroom_contrib.server._devices import DeviceKeys
from strongroom_contrib.server._wire import (
    ChallengeIn,
    CommitIn,
    Malformed,
    PushIn,
    UploadIn,
    answer,
    decode,
    number,
    problem,
    segment,
)

__all__ = ["Endpoints"]

log = logging.getLogger("strongroom.server")

Handler = Callable[[Request, str], Awaitable[Response]]


class Endpoints:
    """The protocol's routes over one storage, the verifier's keys and the challenges."""

    def __init__(self, storage: ServerStorage, keys: DeviceKeys, challenges: Challenges) -> None:
        self.storage = storage
        self.keys = keys
        self.challenges = challenges

    def routes(self) -> list[Route]:
        """Paths match the raw, still percent-encoded form (see ``create_app``)."""
        base = "/v1/accounts/{account}"
        table: list[tuple[str, Handler, str]] = [
            ("/push", self.push, "POST"),
            ("/changes", self.changes, "GET"),
            ("/uploads", self.begin_upload, "POST"),
            ("/uploads/{upload}/chunks/{index}", self.put_chunk, "PUT"),
            ("/uploads/{upload}", self.upload_state, "GET"),
            ("/uploads/{upload}/commit", self.commit, "POST"),
            ("/blobs/{key}", self.blob, "GET"),
            ("/blobs/{key}/chunks/{index}", self.chunk, "GET"),
            ("/challenges", self.challenge, "POST"),
        ]
        return [
            Route(base + path, self._guarded(handler), methods=[method])
            for path, handler, method in table
        ]

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                account = segment(request.path_params["account"])
                verified: VerifiedRequest = request.scope[VERIFIED]
                refusal = await self._refusal(request, account, verified)
                return refusal or await handler(request, account)
            except _ANSWERED as exc:
                return _answer_for(exc)

        endpoint.__name__ = handler.__name__
        return endpoint

    async def _refusal(
        self, request: Request, account: str, verified: VerifiedRequest
    ) -> Response | None:
        """403 for another account's device, 428 for a signed token that does not redeem.

        A request carries a token only when its client asked for fresh
        authorisation, and the token is under the request signature, so a
        proxy cannot strip it (the signature would fail: 401) and a request
        that carries one runs only if it redeems.
        """
        device = self.keys.seen(verified.key_id)
        if device is None:  # forgotten since it was verified: ask again
            device = await in_thread(self.storage.device, verified.key_id)
        if device is None or device.account != account:
            return problem(403, "account")
        token = verified.challenge
        if not token:
            return None
        operation = verified.idempotency_key
        if not operation or not await in_thread(
            self.challenges.redeem, token, account, verified.key_id, operation
        ):
            return problem(428, "challenge")
        return None

    # records

    async def push(self, request: Request, account: str) -> Response:
        body: PushIn = decode(await request.body(), PushIn)
        changes = [Change(item.key, item.value, item.base_seq) for item in body.changes]
        applied = await in_thread(self.storage.push, account, changes)
        return answer({"results": [_applied(item) for item in applied]})

    async def changes(self, request: Request, account: str) -> Response:
        query = request.query_params
        if any(name not in {"after", "limit"} for name in query):
            raise Malformed
        after = number(query.get("after", "0"))
        limit = number(query.get("limit", "1000"))
        page = await in_thread(self.storage.pull, account, after, limit)
        entries = [
            {"key": entry.key, "seq": entry.seq, "kind": entry.kind, "value": entry.value}
            for entry in page.entries
        ]
        return answer({"entries": entries, "next": page.cursor, "more": page.more})

    # blobs

    async def begin_upload(self, request: Request, account: str) -> Response:
        body: UploadIn = decode(await request.body(), UploadIn)

        def begin() -> tuple[str, list[int]]:
            upload = self.storage.begin_blob(account, body.key, body.manifest, body.chunk_hashes)
            return upload, self.storage.missing_chunks(account, upload)

        upload, missing = await in_thread(begin)
        return answer({"upload": upload, "missing": missing})

    async def put_chunk(self, request: Request, account: str) -> Response:
        upload = segment(request.path_params["upload"])
        index = number(request.path_params["index"])
        data = await request.body()
        await in_thread(self.storage.put_chunk, account, upload, index, data)
        return Response(status_code=204)

    async def upload_state(self, request: Request, account: str) -> Response:
        upload = segment(request.path_params["upload"])
        missing = await in_thread(self.storage.missing_chunks, account, upload)
        return answer({"missing": missing})

    async def commit(self, request: Request, account: str) -> Response:
        upload = segment(request.path_params["upload"])
        body: CommitIn = decode(await request.body(), CommitIn)
        applied = await in_thread(self.storage.commit_blob, account, upload, body.base_seq)
        return answer(_applied(applied))

    async def blob(self, request: Request, account: str) -> Response:
        key = segment(request.path_params["key"])
        found = await in_thread(self.storage.blob_manifest, account, key)
        return answer(
            {"seq": found.seq, "manifest": found.manifest, "chunk_hashes": found.chunk_hashes}
        )

    async def chunk(self, request: Request, account: str) -> Response:
        key = segment(request.path_params["key"])
        index = number(request.path_params["index"])
        data = await in_thread(self.storage.get_chunk, account, key, index)
        return Response(data, media_type="application/octet-stream")

    # fresh authorisation

    async def challenge(self, request: Request, account: str) -> Response:
        body: ChallengeIn = decode(await request.body(), ChallengeIn)
        if not is_idempotency_key(body.operation):
            raise Malformed
        verified: VerifiedRequest = request.scope[VERIFIED]
        token, expires = self.challenges.issue(account, verified.key_id, body.operation)
        return answer({"token": token, "expires": expires})


#: What each error the storage (or the request) raises is answered with, first match wins.
_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (Malformed, 400, "malformed"),
    (ServerStorageUnavailableError, 503, "unavailable"),
    (NonceCacheUnavailableError, 503, "unavailable"),
    (ServerObjectNotFoundError, 404, "not-found"),
    (UploadIncompleteError, 409, "incomplete"),
    (IntegrityError, 422, "hash"),
    (UsageError, 400, "malformed"),
)
_ANSWERED = tuple(kind for kind, _, _ in _ERRORS)


def _answer_for(exc: Exception) -> Response:
    for kind, status, code in _ERRORS:
        if isinstance(exc, kind):
            if status == 503:
                log.warning("unavailable: %s", exc)
            return problem(status, code)
    raise exc  # pragma: no cover - only _ANSWERED reaches here


def _applied(item: Applied) -> dict[str, Any]:
    return {"key": item.key, "seq": item.seq, "conflict": item.conflict}
