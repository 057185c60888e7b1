"""Signed requests end to end over real TLS: ``Strongroom.send`` -> pinned https -> uvicorn.

The server is a Starlette app whose endpoint runs the framework-neutral
verifier before its handler and signs what it answers, with the key that
``strongroom signing key`` would print.  A middleware outside it plays the
TLS-terminating proxy that rewrites a response.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from signing_device import provision, signing_device
from strongroom import Strongroom
from strongroom.errors import IntegrityError, RequestVerificationError
from strongroom.signing import headers as h
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncRequest
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache
from tls_servers import Pki, make_pki, serve_asgi


@dataclass
class SyncServer:
    """The verifier in front of a handler; records what it refused."""

    verifier: RequestVerifier
    refusals: list[str] = field(default_factory=list)
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    #: Rewrite every response body on its way out, as a proxy would.
    proxy_rewrites: bool = False

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        target = request.scope["raw_path"].decode("ascii")
        if request.scope["query_string"]:
            target += "?" + request.scope["query_string"].decode("ascii")
        self.received.append((request.method, target, dict(request.headers), body))
        try:
            verified = self.verifier.verify(request.method, target, request.headers.items(), body)
        except RequestVerificationError as refused:
            self.refusals.append(refused.reason)
            status, headers, answer = self.verifier.rejection(refused)
            return Response(answer, status, headers)
        answer = json.dumps({"stored": body.decode(), "query": str(request.query_params)}).encode()
        headers = self.verifier.sign_response(verified, 200, answer)
        return Response(answer, 200, headers, media_type="application/json")

    def app(self) -> Any:
        inner = Starlette(routes=[Route("/v1/{rest:path}", self.endpoint, methods=["GET", "POST"])])

        async def proxy(scope: dict[str, Any], receive: Any, send: Any) -> None:
            async def rewriting(message: dict[str, Any]) -> None:
                if self.proxy_rewrites and message["type"] == "http.response.start":
                    message = {
                        **message,
                        "headers": [
                            (name, value)
                            for name, value in message["headers"]
                            if name != b"content-length"
                        ],
                    }
                if self.proxy_rewrites and message["type"] == "http.response.body":
                    message = {**message, "body": message["body"].replace(b"hello", b"HELLO")}
                await send(message)

            await inner(scope, receive, rewriting)

        return proxy


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def stack_and_server(tmp_path: Path, pki: Pki) -> Iterator[tuple[Strongroom, SyncServer, str]]:
    """A device stack sending over pinned https to the server, and the server."""
    ring = KeyRing()
    server = SyncServer(RequestVerifier(ring, MemoryNonceCache()))
    with (
        serve_asgi(server.app(), pki.server) as url,
        signing_device(tmp_path, url, pki.ca_bundle, [pki.leaf_pin, pki.intermediate_pin]) as stack,
    ):
        provision(stack, ring)
        yield stack, server, url


def test_a_signed_request_is_verified_and_its_signed_response_accepted(
    stack_and_server: tuple[Strongroom, SyncServer, str],
) -> None:
    stack, server, _ = stack_and_server
    request = SyncRequest("POST", "/v1/notes?b=2&a=1", b"hello", {h.IDEMPOTENCY_KEY: "op-1"})
    response = stack.send(request)
    assert response.status == 200
    assert json.loads(response.body) == {"stored": "hello", "query": "b=2&a=1"}
    assert server.refusals == []
    for _ in range(3):  # a reused connection, fresh nonces
        assert stack.send(SyncRequest("GET", "/v1/notes")).status == 200
    assert len({headers[h.NONCE.lower()] for _, _, headers, _ in server.received}) == 4


def test_a_replayed_or_altered_request_is_refused_by_the_server(
    stack_and_server: tuple[Strongroom, SyncServer, str], pki: Pki
) -> None:
    stack, server, url = stack_and_server
    stack.send(SyncRequest("POST", "/v1/notes?x=1", b"hello"))
    method, target, headers, body = server.received[0]
    signed = {name: value for name, value in headers.items() if name.startswith("strongroom-")}
    context = ssl.create_default_context(cafile=str(pki.ca_bundle))
    with httpx.Client(verify=context) as attacker:
        replay = attacker.request(method, url + target, content=body, headers=signed)
        altered = attacker.request(method, url + "/v1/notes?x=2", content=body, headers=signed)
        other_body = attacker.request(method, url + target, content=b"HELLO", headers=signed)
    assert [replay.status_code, altered.status_code, other_body.status_code] == [401] * 3
    assert server.refusals == ["replay", "signature", "signature"]
    assert replay.headers[h.REJECTED] == "replay"
    assert int(replay.headers[h.SERVER_TIME]) > 0


def test_a_response_altered_by_a_proxy_is_rejected_by_the_client(
    stack_and_server: tuple[Strongroom, SyncServer, str],
) -> None:
    stack, server, _ = stack_and_server
    server.proxy_rewrites = True
    with pytest.raises(IntegrityError, match=r"status 200\) failed its signature check"):
        stack.send(SyncRequest("POST", "/v1/notes", b"hello"))
    assert server.refusals == []  # the request itself was fine
