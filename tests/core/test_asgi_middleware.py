"""``SignedRequestsMiddleware`` in front of a Starlette app, under uvicorn over real TLS.

Requests are signed as a device signs them (``Strongroom.send`` with a
``[signing]`` table, or ``sign_request`` for the attacks and races) and
every answer's signature is checked on the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_client import KEY, KEY_ID, Device, Handlers
from strongroom import Strongroom, load_config
from strongroom.errors import (
    IdempotencyUnavailableError,
    NonceCacheUnavailableError,
    UsageError,
)
from strongroom.idempotency import IdempotencyStore
from strongroom.keys.purposes import SIGNING
from strongroom.nonce_cache import NonceCache
from strongroom.signing import headers as h
from strongroom.signing.keying import derive_mac_key
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncRequest
from strongroom_contrib.asgi import REPLAYED, SignedRequestsMiddleware
from strongroom_plugins.nonce_caches._memory_idempotency import MemoryIdempotencyStore
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache
from tls_servers import Pki, make_pki, serve_asgi

PASSPHRASE = "asgi middleware passphrase 41"  # noqa: S105 - a test's own


@dataclass
class Server:
    url: str
    handlers: Handlers
    ring: KeyRing
    client: httpx.Client
    device: Device


class DownCache(MemoryNonceCache, IdempotencyStore):
    """A nonce cache and idempotency store that cannot be reached."""

    def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
        raise NonceCacheUnavailableError("redis at 127.0.0.1:1 cannot answer (ConnectionError)")

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        raise IdempotencyUnavailableError("redis at 127.0.0.1:1 cannot answer")

    complete = release = begin


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def serving(
    pki: Pki,
    nonces: NonceCache | None = None,
    idempotency: IdempotencyStore | None = None,
    **options: Any,
) -> Any:
    handlers = Handlers()
    ring = KeyRing({KEY_ID: KEY})
    verifier = RequestVerifier(ring, nonces if nonces is not None else MemoryNonceCache())
    store = idempotency if idempotency is not None else MemoryIdempotencyStore()
    app = SignedRequestsMiddleware(handlers.app(), verifier=verifier, idempotency=store, **options)

    class Serving:
        def __enter__(self) -> Server:
            self.served = serve_asgi(app, pki.server)
            url = self.served.__enter__()
            self.client = httpx.Client(verify=ssl.create_default_context(cafile=pki.ca_bundle))
            return Server(url, handlers, ring, self.client, Device())

        def __exit__(self, *exc: object) -> None:
            self.client.close()
            self.served.__exit__(None, None, None)

    return Serving()


@pytest.fixture(params=["threaded", "awaited"])
def server(pki: Pki, request: pytest.FixtureRequest) -> Iterator[Server]:
    """Each test twice: a separate idempotency store (worker-thread steps), and the nonce
    cache keeping the records too (the steps awaited on the event loop)."""
    shared = MemoryNonceCache()
    options = {"nonces": shared, "idempotency": shared} if request.param == "awaited" else {}
    with serving(pki, **options) as running:  # type: ignore[arg-type]
        yield running


def test_a_valid_request_reaches_the_app_and_its_response_verifies_on_the_client(
    tmp_path: Path, pki: Pki, server: Server
) -> None:
    config = tmp_path / "strongroom.toml"
    config.write_text(
        f'[strongroom]\ndata_dir = "{tmp_path / "data"}"\naccount = "alice"\n'
        '[key_providers.main]\nuse = "passphrase"\nmemory_kib = 19456\niterations = 2\n'
        f'[transport]\nuse = "https"\nurl = "{server.url}"\nca_bundle = "{pki.ca_bundle}"\n'
        f'[transport.pins."127.0.0.1"]\npins = ["{pki.leaf_pin}", "{pki.intermediate_pin}"]\n'
        '[signing]\nkey_id = "phone-2"\n'
    )
    with Strongroom(load_config(config, environ={}), secrets={"main": PASSPHRASE}) as stack:
        stack.initialise()
        data_key = stack.keys.data_key(SIGNING)
        server.ring.add("phone-2.v1", derive_mac_key(data_key.material.view(), "alice", 1))
        response = stack.send(SyncRequest("POST", "/v1/notes?b=2&a=1", b"hello"))
        assert response.status == 201  # the client checked its signature ([signing] requires it)
        assert json.loads(response.body) == {"run": 1, "body": "hello", "query": "b=2&a=1"}
        assert response.headers["x-app"] == "notes"
        assert REPLAYED.lower() not in {name.lower() for name in response.headers}
        key = {h.IDEMPOTENCY_KEY: "op-7f1c"}
        first = stack.send(SyncRequest("POST", "/v1/notes", b"queued", key))
        retry = stack.send(SyncRequest("POST", "/v1/notes", b"queued", key))
    assert server.handlers.seen == [
        {"key_id": "phone-2.v1", "body": b"hello"},
        {"key_id": "phone-2.v1", "body": b"queued"},
    ]
    assert (first.status, first.body) == (retry.status, retry.body)
    replayed = {name.lower(): value for name, value in retry.headers.items()}
    assert replayed[REPLAYED.lower()] == "true"
    assert replayed["x-run"] == "2"


def test_a_replayed_request_is_refused_401_without_reaching_the_app(server: Server) -> None:
    first = server.device.send(server.client, server.url, "POST", "/v1/notes", b"once")
    assert first.response.status_code == 201
    replay = server.device.resend(
        server.client, server.url, "POST", "/v1/notes", b"once", sent=first.sent
    )
    assert replay.response.status_code == 401
    assert replay.response.headers[h.REJECTED] == "replay"
    assert replay.signed_at is not None  # an authentic request's refusal is signed
    forged = {**first.sent, h.SIGNATURE: "A" * 43}
    refused = server.device.resend(
        server.client, server.url, "POST", "/v1/notes", b"x", sent=forged
    )
    assert refused.response.status_code == 401
    assert server.handlers.runs == {"notes": 1}


def test_an_idempotent_retry_gets_the_stored_outcome_once_with_the_marker(server: Server) -> None:
    device, client, url = server.device, server.client, server.url
    first = device.send(client, url, "POST", "/v1/notes", b"note", idempotency_key="op-1")
    retries = [
        device.send(client, url, "POST", "/v1/notes", b"note", idempotency_key="op-1")
        for _ in range(3)
    ]
    assert server.handlers.runs == {"notes": 1}
    assert first.response.status_code == 201
    assert REPLAYED not in first.response.headers
    for retry in retries:
        assert retry.signed_at is not None  # re-signed over this request's own nonce
        assert retry.response.status_code == 201
        assert retry.response.content == first.response.content
        assert retry.response.headers[REPLAYED] == "true"
        assert retry.response.headers["x-app"] == "notes"
    other = device.send(client, url, "POST", "/v1/notes", b"note", idempotency_key="op-2")
    assert REPLAYED not in other.response.headers
    assert server.handlers.runs == {"notes": 2}


def test_the_same_key_with_another_request_is_422(server: Server) -> None:
    device, client, url = server.device, server.client, server.url
    device.send(client, url, "POST", "/v1/notes", b"note", idempotency_key="op-1")
    for path, body in (("/v1/notes", b"other"), ("/v1/notes?x=1", b"note")):
        clash = device.send(client, url, "POST", path, body, idempotency_key="op-1")
        assert clash.response.status_code == 422
        assert clash.response.json()["error"] == "idempotency_mismatch"
        assert clash.signed_at is not None
    assert server.handlers.runs == {"notes": 1}


def test_a_retry_while_the_first_still_runs_is_409(server: Server) -> None:
    device, client, url = server.device, server.client, server.url
    handlers = server.handlers
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            device.send, client, url, "POST", "/v1/slow", b"s", idempotency_key="op-s"
        )
        assert handlers.entered.wait(10)
        busy = device.send(client, url, "POST", "/v1/slow", b"s", idempotency_key="op-s")
        handlers.gate.set()
        first = running.result(timeout=10)
    assert busy.response.status_code == 409
    assert busy.response.json()["error"] == "idempotency_in_flight"
    assert busy.signed_at is not None
    assert first.response.status_code == 200
    after = device.send(client, url, "POST", "/v1/slow", b"s", idempotency_key="op-s")
    assert after.response.headers[REPLAYED] == "true"
    assert handlers.runs == {"slow": 1}


def test_a_server_error_is_not_stored_and_the_retry_runs_again(server: Server) -> None:
    device, client, url = server.device, server.client, server.url
    for run in (1, 2):
        answer = device.send(client, url, "POST", "/v1/broken", b"b", idempotency_key="op-b")
        assert answer.response.status_code == 503
        assert answer.response.json() == {"run": run}
        assert REPLAYED not in answer.response.headers


def test_an_unreachable_nonce_cache_is_503_and_the_app_is_not_called(pki: Pki) -> None:
    with serving(pki, nonces=DownCache()) as server:
        answer = server.device.send(server.client, server.url, "POST", "/v1/notes", b"n")
        assert answer.response.status_code == 503
        assert answer.response.headers[h.REJECTED] == "unavailable"
        assert answer.signed_at is not None
        assert server.handlers.runs == {}


def test_an_unreachable_idempotency_store_is_503_and_the_app_is_not_called(pki: Pki) -> None:
    with serving(pki, idempotency=DownCache()) as server:
        device, client, url = server.device, server.client, server.url
        keyed = device.send(client, url, "POST", "/v1/notes", b"n", idempotency_key="op-1")
        assert keyed.response.status_code == 503
        assert keyed.response.headers[h.REJECTED] == "unavailable"
        assert keyed.signed_at is not None
        assert server.handlers.runs == {}
        plain = device.send(client, url, "POST", "/v1/notes", b"n")  # no key: no store needed
        assert plain.response.status_code == 201


@pytest.mark.parametrize("key", ["k" * 256, "with space", "tab\tin"])
def test_a_malformed_idempotency_key_is_400(server: Server, key: str) -> None:
    device, client, url = server.device, server.client, server.url
    headers = {**device.sign("POST", "/v1/notes", b"n"), h.IDEMPOTENCY_KEY: key}
    answer = device.resend(client, url, "POST", "/v1/notes", b"n", sent=headers)
    assert answer.response.status_code == 400
    assert answer.response.headers[h.REJECTED] == "malformed"
    assert server.handlers.runs == {}
    longest = device.send(client, url, "POST", "/v1/notes", b"n", idempotency_key="k" * 255)
    assert longest.response.status_code == 201


def test_bodies_over_the_limits_are_refused(pki: Pki) -> None:
    with serving(pki, max_body_bytes=1000, max_response_bytes=5000) as server:
        device, client, url = server.device, server.client, server.url
        large = device.send(client, url, "POST", "/v1/notes", b"x" * 1001)
        assert large.response.status_code == 413
        assert server.handlers.runs == {}
        server.handlers.big_size = 5001
        big = device.send(client, url, "GET", "/v1/big")
        assert big.response.status_code == 500
        assert big.signed_at is not None
        server.handlers.big_size = 5000
        assert device.send(client, url, "GET", "/v1/big").response.content == b"x" * 5000


def test_unsigned_responses_when_asked(pki: Pki) -> None:
    with serving(pki, sign_responses=False) as server:
        answer = server.device.send(server.client, server.url, "POST", "/v1/notes", b"n")
        assert answer.response.status_code == 201
        assert answer.signed_at is None


def test_access_log_lines_carry_no_payload_query_signature_or_token(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    device, client, url = server.device, server.client, server.url
    secrets = {
        "body": b"BODY-SECRET-4d2a",
        "query": "QUERY-SECRET-88e1",
        "token": "Bearer TOKEN-SECRET-19bc",
        "key": "IDEMPOTENCY-SECRET-7a",
    }
    path = f"/v1/notes?q={secrets['query']}"
    extra = {"Authorization": secrets["token"]}
    with caplog.at_level(logging.DEBUG):
        first = device.send(
            client,
            url,
            "POST",
            path,
            secrets["body"],
            idempotency_key=secrets["key"],
            headers=extra,
        )
        device.send(
            client,
            url,
            "POST",
            path,
            secrets["body"],
            idempotency_key=secrets["key"],
            headers=extra,
        )
        device.resend(client, url, "POST", path, secrets["body"], sent=first.sent)
    lines = [record for record in caplog.records if record.name == "strongroom.access"]
    assert [(r.method, r.path, r.status, r.key_id, r.replayed) for r in lines] == [  # type: ignore[attr-defined]
        ("POST", "/v1/notes", 201, KEY_ID, False),
        ("POST", "/v1/notes", 201, KEY_ID, True),
        ("POST", "/v1/notes", 401, KEY_ID, False),
    ]
    assert lines[2].reason == "replay"  # type: ignore[attr-defined]
    assert all(record.duration_ms >= 0 for record in lines)  # type: ignore[attr-defined]
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert lines[0] in server_side
    text = "".join(record.getMessage() + repr(vars(record)) for record in server_side)
    leaks = [*secrets.values(), first.sent[h.SIGNATURE], first.sent[h.NONCE]]
    leaks.append(first.response.headers[h.RESPONSE_SIGNATURE])
    for leak in leaks:
        assert (leak.decode() if isinstance(leak, bytes) else leak) not in text


def test_a_websocket_is_closed_and_lifespan_passes_through() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    verifier = RequestVerifier(KeyRing(), MemoryNonceCache())
    middleware = SignedRequestsMiddleware(app, verifier=verifier)
    asyncio.run(middleware({"type": "websocket"}, receive, send))
    asyncio.run(middleware({"type": "lifespan"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert reached == ["lifespan"]


def test_the_verifier_runs_off_the_event_loop(pki: Pki) -> None:
    threads: list[str] = []

    class Watching(MemoryNonceCache):
        def add(self, key_id: str, nonce: str, expires_at: float) -> bool:
            threads.append(threading.current_thread().name)
            return super().add(key_id, nonce, expires_at)

    with serving(pki, nonces=Watching()) as server:
        server.device.send(server.client, server.url, "POST", "/v1/notes", b"n")
    assert len(threads) == 1
    assert threads[0] != "MainThread"
    assert "uvicorn" not in threads[0].lower()


def test_an_unreachable_awaited_cache_is_a_signed_503_and_the_app_is_not_called(
    pki: Pki,
) -> None:
    down = DownCache()
    with serving(pki, nonces=down, idempotency=down) as server:
        device, client, url = server.device, server.client, server.url
        for key in ("op-1", ""):
            answer = device.send(client, url, "POST", "/v1/notes", b"n", idempotency_key=key)
            assert answer.response.status_code == 503
            assert answer.response.headers[h.REJECTED] == "unavailable"
            assert answer.signed_at is not None
        assert server.handlers.runs == {}


def test_awaited_steps_run_on_the_loop_and_the_key_lookup_off_it(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, list[str]] = {"lookup": [], "admit": [], "complete": []}

    class Watching(MemoryNonceCache):
        async def admit(self, *args: Any, **kwargs: Any) -> Any:
            threads["admit"].append(threading.current_thread().name)
            return await super().admit(*args, **kwargs)

        async def complete_async(self, *args: Any, **kwargs: Any) -> None:
            threads["complete"].append(threading.current_thread().name)
            await super().complete_async(*args, **kwargs)

    lookup = KeyRing.__call__

    def looked_up(ring: KeyRing, key_id: str) -> bytes | None:
        threads["lookup"].append(threading.current_thread().name)
        return lookup(ring, key_id)

    monkeypatch.setattr(KeyRing, "__call__", looked_up)
    watching = Watching()
    with serving(pki, nonces=watching, idempotency=watching) as server:
        answer = server.device.send(
            server.client, server.url, "POST", "/v1/notes", b"n", idempotency_key="op-1"
        )
        assert answer.response.status_code == 201
    assert len(threads["admit"]) == len(threads["complete"]) == 1
    assert threads["admit"] == threads["complete"]  # the event loop's thread
    assert threads["lookup"][0] != threads["admit"][0]  # verifying; signing the answer is on it


def test_the_awaited_backend_is_closed_at_lifespan_shutdown() -> None:
    events: list[str] = []

    class Closing(MemoryNonceCache):
        async def aclose(self) -> None:
            events.append("aclose")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Any:
        return next(incoming)

    async def send(message: Any) -> None:
        events.append(message["type"])

    closing = Closing()
    verifier = RequestVerifier(KeyRing(), closing)
    middleware = SignedRequestsMiddleware(app, verifier=verifier, idempotency=closing)
    asyncio.run(middleware({"type": "lifespan"}, receive, send))
    assert events == ["lifespan.startup.complete", "aclose", "lifespan.shutdown.complete"]


def test_a_store_that_keeps_no_outcomes_is_refused_up_front() -> None:
    verifier = RequestVerifier(KeyRing(), MemoryNonceCache())
    with pytest.raises(UsageError, match="is not an IdempotencyStore"):
        SignedRequestsMiddleware(Handlers().app(), verifier=verifier, idempotency=object())  # type: ignore[arg-type]
