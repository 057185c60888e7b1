"""The secure channel: signing plus verifying a request, and the pin check in a TLS handshake.

Signing is set beside the Python signers a user would otherwise pick on the same 300-byte PUT
(``http-message-signatures``, RFC 9421 with HMAC-SHA256, covering the body's digest; botocore's
SigV4, sign side only), bare HMAC-SHA256 over the same bytes, and one request to a loopback HTTPS
server on a reused connection.  Pinning is a new TLS connection and one request
(``Connection: close``) with a pin set for the host and without: the difference is what the pin
check costs.  The server is uvicorn in its own process, apart from the client's interpreter.
"""

from __future__ import annotations

import contextlib
import datetime
import hmac
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import botocore.auth  # type: ignore[import-untyped]
import botocore.awsrequest  # type: ignore[import-untyped]
import botocore.credentials  # type: ignore[import-untyped]
import http_message_signatures as rfc9421
import msgspec
import pytest
import requests
from pytest_benchmark.fixture import BenchmarkFixture

from strongroom.signing.signer import sign_request
from strongroom.signing.verifier import KeyRing, RequestVerifier
from strongroom.transport import SyncRequest
from strongroom_plugins.nonce_caches.memory import MemoryNonceCache
from strongroom_plugins.transports._https_settings import HttpsSettings
from strongroom_plugins.transports.https import HttpsTransport

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tls_servers import Pki, make_pki  # type: ignore[import-not-found]

KEY, KEY_ID = os.urandom(32), "bench.v1"
BODY = os.urandom(300)
TARGET = "/v1/accounts/bench/records/note-000042?after=1200&limit=100"
URL = "https://sync.example.com" + TARGET
SIGNERS = ("strongroom", "http-message-signatures", "botocore SigV4", "bare HMAC-SHA256")
SIGNING = "channel: sign + verify a 300 B request"
Server = tuple[Pki, str]  # the server's PKI and base URL
#: The server's app: every request gets a short 200.
APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def signer(subject: str) -> Callable[[], object]:
    """One request signed (and, where the peer verifies, verified) by ``subject``."""
    if subject == "strongroom":
        verifier = RequestVerifier(KeyRing({KEY_ID: KEY}), MemoryNonceCache())

        def strongroom() -> object:
            headers = sign_request(KEY, KEY_ID, "PUT", TARGET, BODY, now=time.time())
            return verifier.verify("PUT", TARGET, headers, BODY)

        return strongroom
    if subject == "http-message-signatures":
        keys = rfc9421.MappingKeyResolver(public_keys={"k": KEY}, private_keys={"k": KEY})
        algorithm = rfc9421.algorithms.HMAC_SHA256
        sign = rfc9421.HTTPMessageSigner(signature_algorithm=algorithm, key_resolver=keys).sign
        verify = rfc9421.HTTPMessageVerifier(signature_algorithm=algorithm, key_resolver=keys)
        ids = ("@method", "@authority", "@target-uri", "content-digest")  # covered components

        def rfc9421_hmac() -> object:
            request = requests.Request("PUT", URL, data=BODY).prepare()
            now, nonce = datetime.datetime.now(datetime.UTC), os.urandom(16).hex()
            sign(
                request, key_id="k", created=now, nonce=nonce, covered_component_ids=ids, body=BODY
            )
            return verify.verify(request, body=BODY)

        return rfc9421_hmac
    if subject == "botocore SigV4":
        sigv4 = botocore.auth.SigV4Auth(botocore.credentials.Credentials("AK", "SK"), "s", "r")
        return lambda: sigv4.add_auth(botocore.awsrequest.AWSRequest("PUT", URL, data=BODY))
    return lambda: (hmac.digest(KEY, BODY, "sha256"), hmac.digest(KEY, BODY, "sha256"))


@pytest.mark.parametrize("subject", SIGNERS)
def test_sign_and_verify(benchmark: BenchmarkFixture, subject: str) -> None:
    benchmark.group = SIGNING
    benchmark.extra_info.update(subject=subject, ops=1)
    benchmark(signer(subject))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn over TLS in a child process."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    (app := pki.directory / "bench_app.py").write_text(APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "uvicorn", "bench_app:app", "--port", str(port)]
    argv += ["--ssl-certfile", str(pki.server.cert_chain), "--ssl-keyfile", str(pki.server.key)]
    argv += ["--log-level", "warning", "--no-access-log", "--app-dir", str(app.parent)]
    child = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert child.poll() is None, "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield pki, f"https://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


def transport(pki: Pki, url: str, *, pinned: bool) -> HttpsTransport:
    pins = {"127.0.0.1": {"pins": [pki.intermediate_pin, pki.root_pin]}} if pinned else {}
    settings = {"url": url, "ca_bundle": str(pki.ca_bundle), "pins": pins}
    return HttpsTransport(msgspec.convert(settings, HttpsSettings))


def test_request_on_a_reused_connection(benchmark: BenchmarkFixture, server: Server) -> None:
    """What signing is measured against: one request, the connection kept alive."""
    with transport(*server, pinned=True) as pinned:
        request = SyncRequest("PUT", TARGET, BODY)
        assert pinned.send(request).status == 200
        benchmark.group = SIGNING
        benchmark.extra_info.update(subject="HTTPS request, reused connection", ops=1)
        benchmark(pinned.send, request)


@pytest.mark.parametrize("pinned", [True, False], ids=["pins", "no pins"])
def test_handshake_and_request(benchmark: BenchmarkFixture, server: Server, pinned: bool) -> None:
    with transport(*server, pinned=pinned) as channel:
        request = SyncRequest("GET", "/", headers={"Connection": "close"})  # a handshake each
        assert channel.send(request).status == 200
        benchmark.group = "channel: new TLS connection + request"
        subject = "pin set for the host" if pinned else "no pins (chain verification only)"
        benchmark.extra_info.update(subject=subject, ops=1)
        benchmark(channel.send, request)
        if pinned:
            assert channel.policy.checks >= 2  # the check ran on every handshake
