"""The ``https`` transport's requests: retries, timeouts, size limits, paths, and its config.

Against uvicorn (a real ASGI server) and the recording server of
``tests/tls_servers.py``, both over TLS on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from https_support import GET, https, ok, pins, resolve_transport

from strongroom.errors import ConfigError, TransportError
from strongroom.transport import SyncRequest
from tls_servers import Pki, http_response, make_pki, serve_asgi, serve_recording

#: Stands for a token or payload that must never reach an error message.
CANARY = "tok-3f9a1c7e-canary"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering with what it received: method, path, query, body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    line = f"{scope['method']} {scope['raw_path'].decode()}?{scope['query_string'].decode()}"
    size = int(dict(scope["headers"]).get(b"x-size", b"0"))
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-seen", b"1")]})
    await send({"type": "http.response.body", "body": line.encode() + b"\n" + body + b"x" * size})


async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app sending 10 bytes every 0.1 s for 4 s."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(40):
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        await asyncio.sleep(0.1)
    await send({"type": "http.response.body", "body": b""})


def silent(release: threading.Event) -> Callable[[bytes], bytes | None]:
    """A recording server's answer: none, until ``release`` is set."""

    def respond(request: bytes) -> bytes | None:
        release.wait(10)
        return None

    return respond


def test_a_request_reaches_uvicorn_and_the_response_comes_back(pki: Pki) -> None:
    table = pins("127.0.0.1", pki.leaf_pin, pki.root_pin)
    with serve_asgi(echo, pki.server) as url, https(url, pki, pins=table) as transport:
        response = transport.send(SyncRequest("PUT", "/v1/items/a%2Fb?x=1&y=%20", b"payload"))
    assert response.status == 201
    assert response.headers["x-seen"] == "1"
    assert response.body == b"PUT /v1/items/a%2Fb?x=1&y=%20\npayload"


def test_the_path_is_sent_exactly_as_given(pki: Pki) -> None:
    path = "/v1/a%2Fb/c;d=e?q=%7E&r=a,b:c@d"
    with (
        serve_recording(pki.server, respond=ok) as server,
        https(server.url, pki) as transport,
    ):
        transport.send(SyncRequest("GET", path))
    assert server.requests[0].startswith(f"GET {path} HTTP/1.1\r\n".encode())


@pytest.mark.parametrize(
    "path", ["v1", "//evil.example/x", "/a/../b", "/a/./b", "/a#frag", "/a b", "/é", "/a%zz"]
)
def test_a_path_that_would_be_rewritten_is_refused(pki: Pki, path: str) -> None:
    with (
        https("https://127.0.0.1:9", pki) as transport,
        pytest.raises(TransportError, match="path"),
    ):
        transport.send(SyncRequest("GET", path))


def test_a_response_over_max_response_bytes_is_refused(pki: Pki) -> None:
    with serve_asgi(echo, pki.server) as url, https(url, pki, max_response_bytes=1000) as transport:
        assert transport.send(SyncRequest("GET", "/", headers={"X-Size": "900"})).status == 201
        with pytest.raises(TransportError, match=r"larger than max_response_bytes \(1000\)"):
            transport.send(SyncRequest("GET", "/", headers={"X-Size": "5000"}))


def test_a_chunked_response_over_the_limit_is_cut_off_while_streaming(pki: Pki) -> None:
    chunk = b"%x\r\n%s\r\n" % (4096, b"z" * 4096)
    endless = b"HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 64 + b"0\r\n\r\n"
    with (
        serve_recording(pki.server, respond=lambda request: endless) as server,
        https(server.url, pki, max_response_bytes=10_000) as transport,
        pytest.raises(TransportError, match="larger than max_response_bytes"),
    ):
        transport.send(GET)


def test_an_idempotent_get_is_retried_after_a_dropped_connection(pki: Pki) -> None:
    answers = iter([None, http_response(200, b"second")])
    with (
        serve_recording(pki.server, respond=lambda request: next(answers)) as server,
        https(server.url, pki) as transport,
    ):
        assert transport.send(GET).body == b"second"
    assert len(server.requests) == 2


@pytest.mark.parametrize(("key", "attempts"), [(None, 1), ("Idempotency-Key", 3)])
def test_a_post_is_retried_only_with_an_idempotency_key(
    pki: Pki, key: str | None, attempts: int
) -> None:
    headers = {key: "k-1"} if key else {}
    with (
        serve_recording(pki.server, respond=lambda request: None) as server,
        https(server.url, pki, retries=2) as transport,
        pytest.raises(TransportError, match="closed the connection before a response"),
    ):
        transport.send(SyncRequest("POST", "/v1/sync", b"{}", headers))
    assert len(server.requests) == attempts


def test_retries_stop_at_the_configured_count(pki: Pki) -> None:
    with (
        serve_recording(pki.server, respond=lambda request: None) as server,
        https(server.url, pki, retries=4) as transport,
        pytest.raises(TransportError),
    ):
        transport.send(GET)
    assert len(server.requests) == 5


def test_a_refused_connection_names_the_host(pki: Pki) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with (
        https(f"https://127.0.0.1:{port}", pki, retries=0) as transport,
        pytest.raises(TransportError, match=rf"^127\.0\.0\.1:{port}: connection refused$"),
    ):
        transport.send(GET)


def test_a_server_that_never_answers_hits_the_read_timeout(pki: Pki) -> None:
    release = threading.Event()
    with serve_recording(pki.server, respond=silent(release)) as server:
        try:
            with https(server.url, pki, read_timeout=0.3, retries=0) as transport:
                started = time.monotonic()
                with pytest.raises(TransportError, match=r"^127\.0\.0\.1:\d+: timed out"):
                    transport.send(GET)
                assert time.monotonic() - started < 2
        finally:
            release.set()


def test_total_timeout_bounds_every_retry(pki: Pki) -> None:
    release = threading.Event()
    with serve_recording(pki.server, respond=silent(release)) as server:
        try:
            table = {"read_timeout": 0.4, "total_timeout": 1.0, "retries": 10}
            with https(server.url, pki, **table) as transport:
                started = time.monotonic()
                with pytest.raises(TransportError, match="timed out"):
                    transport.send(GET)
                assert time.monotonic() - started < 1.8
        finally:
            release.set()


def test_total_timeout_bounds_a_slow_body(pki: Pki) -> None:
    """Each chunk arrives within read_timeout; the whole body does not arrive in time."""
    with (
        serve_asgi(slow, pki.server) as url,
        https(url, pki, read_timeout=1.0, total_timeout=1.0) as transport,
    ):
        started = time.monotonic()
        with pytest.raises(TransportError, match="timed out reading the response body"):
            transport.send(GET)
        assert time.monotonic() - started < 2.5


def test_no_body_header_value_or_query_appears_in_an_error(pki: Pki) -> None:
    request = SyncRequest(
        "POST", f"/v1/sync?token={CANARY}", CANARY.encode(), {"Authorization": CANARY}
    )
    redirect = http_response(302, CANARY.encode(), [("Location", f"/x?t={CANARY}")])
    with (
        serve_recording(pki.server, respond=lambda r: redirect) as server,
        https(server.url, pki) as transport,
        pytest.raises(TransportError) as caught,
    ):
        transport.send(request)
    assert CANARY not in str(caught.value)
    assert CANARY not in repr(request)


def test_invalid_pins_are_config_errors_naming_the_key(tmp_path: Path, pki: Pki) -> None:
    url = "https://sync.example.com"
    two = [pki.leaf_pin, pki.root_pin]
    cases = [
        ({"sync.example.com": {"pins": ["sha1/abc"]}}, "'sync.example.com', item 1"),
        ({"sync.example.com": {"pins": [pki.leaf_pin]}}, "at least two different pins"),
        ({"sync.example.com": {"pins": [pki.leaf_pin, pki.leaf_pin]}}, "at least two"),
        ({"a.*.com": {"pins": two}}, "first label"),
        ({"x.com": {"pins": two, "on_expiry": "ignore"}}, "allowed value"),
    ]
    for table, reason in cases:
        with pytest.raises(ConfigError) as caught:
            resolve_transport(tmp_path, {"url": url, "pins": table})
        assert "[transport] key 'pins'" in str(caught.value)
        assert reason in str(caught.value)
    single = {"sync.example.com": {"pins": [pki.leaf_pin], "allow_single_pin": True}}
    assert resolve_transport(tmp_path, {"url": url, "pins": single}).pins


def config_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "--config", str(config), "config", "check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_config_check_reads_a_pinned_https_transport(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "strongroom.toml"
    config.write_text(
        f'[strongroom]\ndata_dir = "{tmp_path / "data"}"\naccount = "alice"\n'
        '[transport]\nuse = "https"\nurl = "https://sync.example.com"\nmin_tls = "1.3"\n'
        f'[transport.pins."**.example.com"]\npins = ["{pki.leaf_pin}", "{pki.root_pin}"]\n'
        "expires = 2027-06-01\n"
    )
    done = config_check(config)
    assert done.returncode == 0, done.stderr
    assert "https" in done.stdout
    config.write_text(config.read_text().replace("https://sync", "http://sync"))
    done = config_check(config)
    assert done.returncode == 2
    assert "[transport] key 'url'" in done.stderr
