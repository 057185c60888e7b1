"""A signing client and a counting Starlette app for the ASGI middleware's tests.

``Device(key, key_id).send(client, url, method, path, body, idempotency_key=)``
signs with :func:`strongroom.signing.signer.sign_request`, sends with httpx
and checks the response's signature with ``check_response`` (``None`` when
unsigned).  ``Handlers`` is a Starlette app whose routes count their runs:
``/v1/notes`` echoes, ``/v1/slow`` waits for ``gate``, ``/v1/broken``
answers 503, ``/v1/big`` answers ``big_size`` bytes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from strongroom.signing import headers as h
from strongroom.signing.signer import check_response, sign_request
from strongroom.transport import SyncResponse

KEY = bytes(range(32))
KEY_ID = "phone-1.v1"


@dataclass
class Answer:
    response: httpx.Response
    #: The server time the response signature carried; ``None``: unsigned.
    signed_at: int | None
    #: The headers the request was sent with.
    sent: dict[str, str]


@dataclass
class Device:
    key: bytes = KEY
    key_id: str = KEY_ID

    def sign(
        self, method: str, path: str, body: bytes, idempotency_key: str = "", challenge: str = ""
    ) -> dict[str, str]:
        headers = sign_request(
            self.key,
            self.key_id,
            method,
            path,
            body,
            idempotency_key=idempotency_key,
            challenge=challenge,
            now=time.time(),
        )
        if idempotency_key:
            headers[h.IDEMPOTENCY_KEY] = idempotency_key
        if challenge:
            headers[h.CHALLENGE] = challenge
        return headers

    def send(
        self,
        client: httpx.Client,
        url: str,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        idempotency_key: str = "",
        challenge: str = "",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = {**self.sign(method, path, body, idempotency_key, challenge), **(headers or {})}
        return self.resend(client, url, method, path, body, sent=sent)

    def resend(
        self,
        client: httpx.Client,
        url: str,
        method: str,
        path: str,
        body: bytes,
        *,
        sent: dict[str, str],
    ) -> Answer:
        """Send exactly these headers again (a replay)."""
        response = client.request(method, url + path, content=body, headers=sent)
        answer = SyncResponse(response.status_code, response.content, dict(response.headers))
        signed_at = check_response(self.key, self.key_id, sent[h.NONCE], answer)
        return Answer(response, signed_at, sent)


@dataclass
class Handlers:
    """The application behind the middleware; counts what reached it."""

    runs: dict[str, int] = field(default_factory=dict)
    seen: list[dict[str, Any]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    big_size: int = 0

    def _count(self, name: str) -> int:
        self.runs[name] = self.runs.get(name, 0) + 1
        return self.runs[name]

    async def notes(self, request: Request) -> Response:
        body = await request.body()
        verified = request.scope["strongroom.verified"]
        self.seen.append({"key_id": verified.key_id, "body": body})
        run = self._count("notes")
        payload = {"run": run, "body": body.decode(), "query": str(request.query_params)}
        return JSONResponse(payload, 201, headers={"x-app": "notes", "x-run": str(run)})

    async def slow(self, request: Request) -> Response:
        await request.body()
        run = self._count("slow")
        self.entered.set()
        await anyio.to_thread.run_sync(self.gate.wait, 10)
        return JSONResponse({"run": run})

    async def broken(self, request: Request) -> Response:
        await request.body()
        return Response(json.dumps({"run": self._count("broken")}), 503)

    async def big(self, request: Request) -> Response:
        self._count("big")
        return Response(b"x" * self.big_size, 200)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/notes", self.notes, methods=["GET", "POST"]),
                Route("/v1/slow", self.slow, methods=["POST"]),
                Route("/v1/broken", self.broken, methods=["POST"]),
                Route("/v1/big", self.big, methods=["GET"]),
            ]
        )
