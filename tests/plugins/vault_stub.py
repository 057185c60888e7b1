"""A recording stand-in for Vault over plain HTTP on loopback, for tests of what the client sends.

These tests are about the client (redirects, proxies, ambient tokens), not
Vault: no real server could redirect or sit behind a proxy on demand.  The
provider's behaviour against Vault itself is tested on a real OpenBao.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


class Recording(BaseHTTPRequestHandler):
    """Records every request as one line and answers what :meth:`answer` says."""

    seen: ClassVar[list[str]]

    def answer(self) -> tuple[int, dict[str, Any]]:
        """``(status, JSON body)``: by default just enough of Transit for a wrap."""
        if "lookup-self" in self.path:
            return 200, {"data": {"ttl": 0, "renewable": False}}
        if "/keys/" in self.path:
            return 200, {"data": {"type": "aes256-gcm96", "derived": True, "exportable": False}}
        return 200, {"data": {"ciphertext": "vault:v1:" + base64.b64encode(bytes(48)).decode()}}

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.seen.append(f"{self.command} {self.path} {dict(self.headers)} {body}")
        status, data = self.answer()
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[Recording]) -> Iterator[tuple[str, list[str]]]:
    """``(its http:// URL, the lines it recorded)`` while a server of ``handler`` runs."""
    seen: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Serving", (handler,), {"seen": seen}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
