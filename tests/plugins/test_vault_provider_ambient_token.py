"""The provider sends only the credential its settings name, never hvac's ambient token.

Built without a token, an hvac client takes ``VAULT_TOKEN`` or
``~/.vault-token`` (the operator's own, often a powerful one, possibly for
another Vault) and sends it with every request it makes before logging in:
the AppRole login would carry it to the Vault in the provider's settings.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from strongroom.settings import SecretRef
from strongroom_plugins.providers.vault import VaultProvider, VaultSettings

AMBIENT = "s.operators-own-token"


class _Vault(BaseHTTPRequestHandler):
    seen: list[str]

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(f"{self.command} {self.path} {dict(self.headers)}")
        payload = json.dumps({"auth": {"client_token": "s.approle", "lease_duration": 0}}).encode()
        if "generation" in self.path:  # no kept generation
            self.send_response(404)
            payload = b'{"errors": []}'
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def vault() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("V", (_Vault,), {"seen": seen}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("where", ["env", "file"])
def test_an_approle_login_never_carries_the_ambient_token(
    vault: tuple[str, list[str]], where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = vault
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    if where == "env":
        monkeypatch.setenv("VAULT_TOKEN", AMBIENT)
    else:
        monkeypatch.setenv("HOME", str(tmp_path))
        (tmp_path / ".vault-token").write_text(AMBIENT)
    environ = {"R": "role", "S": "secret"}
    settings = VaultSettings(
        url=url,
        role_id=SecretRef("env", "R", environ=environ),
        secret_id=SecretRef("env", "S", environ=environ),
    )
    with VaultProvider(settings) as provider:
        assert provider.recorded_generation("alice") is None
    assert any("approle/login" in request for request in seen)
    assert not any(AMBIENT in request for request in seen)
