"""The ``vault`` provider never follows a redirect: the token and the master key stay put.

hvac follows redirects by default, and requests keeps the ``X-Vault-Token``
header (only ``Authorization`` is dropped across hosts) and, for a 307, the
body, which for Transit ``encrypt`` holds the secret being wrapped.  A Vault
(or anything answering at its URL) that redirects could so send both to
another host, over plain HTTP.  No real server is needed: a stub on loopback
redirects every request to a second stub that records what reaches it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from strongroom.errors import ProviderUnreachableError
from strongroom.key_provider import WrapContext
from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

TOKEN = "s.redirect-test-token"  # noqa: S105 - a stub's
SECRET = bytes(range(32))
CONTEXT = WrapContext("alice", "master", 1)


class _Elsewhere(BaseHTTPRequestHandler):
    """A fake Vault that answers enough for a wrap, recording every request."""

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


def _redirector(target: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _redirect

        def log_message(self, *args: object) -> None:
            pass

    return Redirect


def _serving(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def redirected() -> Iterator[tuple[str, list[str]]]:
    """``(url of a server that redirects everything, what the redirect target saw)``."""
    seen: list[str] = []
    elsewhere, target = _serving(type("Elsewhere", (_Elsewhere,), {"seen": seen}))
    # Another host name for the same loopback target: a cross-host redirect.
    front, url = _serving(_redirector(target.replace("127.0.0.1", "localhost")))
    try:
        yield url, seen
    finally:
        for server in (front, elsewhere):
            server.shutdown()
            server.server_close()


def test_a_redirect_is_refused_and_nothing_reaches_its_target(
    redirected: tuple[str, list[str]],
) -> None:
    url, seen = redirected
    token = SecretRef("env", "T", environ={"T": TOKEN})
    with (
        VaultProvider(VaultSettings(url=url, token=token, generation_mount="")) as provider,
        pytest.raises(ProviderUnreachableError, match="redirect") as caught,
    ):
        provider.wrap(SECRET, CONTEXT)
    assert str(caught.value).startswith(f"Vault at {url} ")
    leaked = "\n".join(seen)
    assert TOKEN not in leaked
    assert base64.b64encode(SECRET).decode() not in leaked
    assert seen == []
