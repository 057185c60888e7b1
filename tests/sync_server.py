"""Sync servers for the outbox and sync tests: the reference one, counted, and a small one.

``ReferenceServer`` is ``strongroom_contrib.server.create_app`` on the
``sqlite`` server storage and the ``memory`` nonce cache (which also keeps
idempotent outcomes), wrapped so tests can count what reached it.
``SyncServer`` is a small stand-in for what the reference server does
not have, behind the same middleware (verifier, idempotent replay, signed
answers): ``POST /v1/accounts/{a}/ops/{name}`` is a test operation that
counts its runs in order; ``fail`` is refused 400, ``busy-<n>`` answers
503 its first ``n`` times, anything else 201.  It issues challenges, and a
request whose signature covers a ``Strongroom-Challenge`` token runs only
if that token was issued for its idempotency key and not used before.
"""

from __future__ import annotations

import os
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from strongroom import Strongroom, load_config
from strongroom.keys.purposes import SIGNING
from strongroom.signing.keying import derive_mac_key
from strongroom.signing.verifier import KeyRing, RequestVerifier, VerifiedRequest
from strongroom_contrib.asgi import VERIFIED, SignedRequestsMiddleware
from strongroom_contrib.server import create_app
from strongroom_plugins.nonce_caches._memory_idempotency import (
    MemoryIdempotencyStore,
)
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache
from strongroom_plugins.server_stores.sqlite import (
    SqliteServerStorage,
    SqliteServerStorageSettings,
)
from tls_servers import Pki

PASSPHRASE = "sync tests passphrase 5e17"  # noqa: S105 - a test's own


def device_config(root: Path, url: str, pki: Pki, key_id: str, account: str = "alice") -> Path:
    """A device's config: a ``files`` store ``notes``, pinned https to ``url``, ``[signing]``."""
    root.mkdir(parents=True, exist_ok=True)
    secret = root / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    config = root / "strongroom.toml"
    config.write_text(
        f'[strongroom]\ndata_dir = "{root / "data"}"\naccount = "{account}"\n'
        '[key_providers.main]\nuse = "passphrase"\nmemory_kib = 19456\niterations = 2\n'
        f'passphrase = "file:{secret}"\n'
        '[stores.notes]\nuse = "files"\n'
        f'[transport]\nuse = "https"\nurl = "{url}"\nca_bundle = "{pki.ca_bundle}"\n'
        '[transport.pins."127.0.0.1"]\n'
        f'pins = ["{pki.leaf_pin}", "{pki.intermediate_pin}"]\n'
        f'[signing]\nkey_id = "{key_id}"\n'
    )
    return config


def make_device(
    root: Path,
    url: str,
    pki: Pki,
    server: SyncServer | ReferenceServer,
    key_id: str,
    *,
    account: str = "alice",
) -> Strongroom:
    """A device's stack, initialised, its signing key registered on ``server``."""
    config = device_config(root, url, pki, key_id, account)
    stack = Strongroom(load_config(config, environ={}))
    stack.initialise()
    mac = derive_mac_key(stack.keys.data_key(SIGNING).material.view(), account, 1)
    server.register(f"{key_id}.v1", account, mac)
    return stack


@dataclass
class ReferenceServer:
    """The reference server, counting pushes, chunk uploads and chunk downloads."""

    database: Path
    runs: Counter[str] = field(default_factory=Counter)
    chunk_puts: list[int] = field(default_factory=list)
    chunk_gets: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.storage = SqliteServerStorage(SqliteServerStorageSettings(path=str(self.database)))

    def register(self, key_id: str, account: str, key: bytes) -> None:
        self.storage.register_device(account, key_id, key)

    def app(self) -> Any:
        served = create_app(self.storage, MemoryNonceCache(), challenge_secret=os.urandom(32))

        async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                method, parts = scope["method"], scope["path"].split("/")
                if method == "POST" and parts[-1] in {"push", "commit"}:
                    self.runs[parts[-1]] += 1
                elif parts[-2:-1] == ["chunks"]:
                    (self.chunk_puts if method == "PUT" else self.chunk_gets).append(int(parts[-1]))
            await served(scope, receive, send)

        return counting


def answer(status: int, body: Any = None) -> Response:
    if body is None:
        return Response(b"", status)
    return Response(msgspec.msgpack.encode(body), status, media_type="application/msgpack")


@dataclass
class SyncServer:
    """Test operations and challenges behind the middleware; counts each operation's runs."""

    ring: KeyRing = field(default_factory=KeyRing)
    accounts: dict[str, str] = field(default_factory=dict)
    runs: Counter[str] = field(default_factory=Counter)
    #: The test operations in the order they ran.
    order: list[str] = field(default_factory=list)
    challenges: dict[str, str] = field(default_factory=dict)

    def register(self, key_id: str, account: str, key: bytes) -> None:
        self.ring.add(key_id, key)
        self.accounts[key_id] = account

    def app(self) -> Any:
        inner = Starlette(
            routes=[Route("/v1/accounts/{rest:path}", self.endpoint, methods=["POST"])]
        )
        verifier = RequestVerifier(self.ring, MemoryNonceCache())
        return SignedRequestsMiddleware(
            inner, verifier=verifier, idempotency=MemoryIdempotencyStore()
        )

    async def endpoint(self, request: Request) -> Response:  # noqa: PLR0911 - one per answer
        verified: VerifiedRequest = request.scope[VERIFIED]
        parts = [urllib.parse.unquote(part) for part in request.url.path.split("/")[3:]]
        account, route = parts[0], parts[1:]
        if self.accounts.get(verified.key_id) != account:
            return answer(403, {"error": "account"})
        challenge = verified.challenge
        if challenge and self.challenges.pop(challenge, None) != verified.idempotency_key:
            return answer(428, {"error": "challenge"})
        body = await request.body()
        if route == ["challenges"]:
            token = os.urandom(16).hex()
            self.challenges[token] = msgspec.msgpack.decode(body)["operation"]
            return answer(200, {"token": token, "expires": 60})
        if len(route) != 2 or route[0] != "ops":
            return answer(404, {"error": "not-found"})
        name = route[1]
        self.runs[name] += 1
        self.order.append(name)
        if name == "fail":
            return answer(400, {"error": "refused"})
        if name.startswith("busy-") and self.runs[name] <= int(name[5:]):
            return answer(503, {"error": "unavailable"})
        return answer(201, {"run": self.runs[name]})
