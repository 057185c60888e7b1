"""An answer that is not Vault's JSON (a proxy's or portal's page) is an unreachable Vault.

hvac hands back the raw ``requests.Response`` for any answer but a 200 with
JSON; the provider must name that as Vault not answering (exit 4), never
fail with an ``AttributeError`` or ``TypeError`` (the CLI's "internal error").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from strongroom.errors import ProviderUnreachableError
from strongroom.key_provider import WrapContext
from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

CONTEXT = WrapContext("alice", "master", 1)
BLOB = b"SRVT\x01\x01\x00\x00\x00\x01" + bytes(40)


class _Portal(BaseHTTPRequestHandler):
    status = 200

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        page = b"<html>please log in to the network</html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[200, 202])
def portal(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("P", (_Portal,), {"status": request.param}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("operation", ["wrap", "unwrap", "recorded_generation", "destroy"])
def test_a_page_that_is_not_json_is_an_unreachable_vault(portal: str, operation: str) -> None:
    token = SecretRef("env", "T", environ={"T": "t"})
    calls = {
        "wrap": lambda provider: provider.wrap(bytes(32), CONTEXT),
        "unwrap": lambda provider: provider.unwrap(BLOB, CONTEXT),
        "recorded_generation": lambda provider: provider.recorded_generation("alice"),
        "destroy": lambda provider: provider.destroy("alice"),
    }
    with (
        VaultProvider(VaultSettings(url=portal, token=token)) as provider,
        pytest.raises(ProviderUnreachableError, match=f"^Vault at {portal} "),
    ):
        calls[operation](provider)
