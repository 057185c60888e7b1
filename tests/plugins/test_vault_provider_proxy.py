"""Plain HTTP to a loopback Vault never goes through a proxy named in the environment.

requests reads ``HTTP_PROXY`` (and ``ALL_PROXY``) and, without ``NO_PROXY``,
sends even a ``http://127.0.0.1`` request to that proxy, in clear: the token
and, for Transit ``encrypt``, the secret being wrapped would cross the network
although ``http://`` is only accepted because it stays on this host.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from strongroom.errors import ProviderUnreachableError
from strongroom.key_provider import WrapContext
from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

TOKEN = "s.proxy-test-token"  # noqa: S105 - a stub's
SECRET = bytes(range(32))


class _Proxy(BaseHTTPRequestHandler):
    """A proxy that answers as a Vault would, recording every request."""

    seen: list[str]

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.seen.append(f"{self.command} {self.path} {dict(self.headers)} {body}")
        if "lookup-self" in self.path:
            data: dict[str, Any] = {"data": {"ttl": 0, "renewable": False}}
        elif "/keys/" in self.path:
            data = {"data": {"type": "aes256-gcm96", "derived": True, "exportable": False}}
        else:
            data = {"data": {"ciphertext": "vault:v1:" + base64.b64encode(bytes(48)).decode()}}
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("P", (_Proxy,), {"seen": seen}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_loopback_vault_is_reached_directly_never_through_a_proxy(proxy: list[str]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    token = SecretRef("env", "T", environ={"T": TOKEN})
    settings = VaultSettings(url=f"http://127.0.0.1:{port}", token=token, generation_mount="")
    with VaultProvider(settings) as provider, pytest.raises(ProviderUnreachableError):
        provider.wrap(SECRET, WrapContext("alice", "master", 1))
    assert proxy == []
