"""Two sync server processes behind the middleware, sharing one real Redis.

Each process (``asgi_server_worker.py``) is uvicorn over TLS with its own
``redis`` nonce cache; the handler counts its runs in Redis, so the test
sees how often it ran across both.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgi_client import Device
from redis_server import RedisServer, running_redis
from strongroom.signing import headers as h
from strongroom_contrib.asgi import REPLAYED
from tls_servers import Pki, make_pki

PASSWORD = "pw-asgi-3b9e-never-logged"  # noqa: S105 - the test server's own
WORKER = Path(__file__).with_name("asgi_server_worker.py")
TESTS = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.02)  # a poll interval under a deadline
    return False


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[RedisServer, list[str], httpx.Client, Path]]:
    pki: Pki = make_pki(tmp_path / "pki")
    with running_redis(password=PASSWORD) as redis_server:
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        processes: list[subprocess.Popen[bytes]] = []
        urls: list[str] = []
        log = tmp_path / "servers.log"
        try:
            with log.open("wb") as sink:
                for _ in range(2):
                    port = _free_port()
                    argv = [sys.executable, str(WORKER), str(port)]
                    argv += [str(pki.server.cert_chain), str(pki.server.key)]
                    process = subprocess.Popen(argv, env=env, stdout=sink, stderr=sink)
                    processes.append(process)
                    assert _listening(port, process), log.read_text()
                    urls.append(f"https://127.0.0.1:{port}")
            context = ssl.create_default_context(cafile=pki.ca_bundle)
            with httpx.Client(verify=context, timeout=20) as client:
                yield redis_server, urls, client, log
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)


def test_a_retry_to_another_process_is_replayed_and_the_handler_ran_once(
    setup: tuple[RedisServer, list[str], httpx.Client, Path],
) -> None:
    redis_server, (one, two), client, _ = setup
    device = Device()
    first = device.send(client, one, "POST", "/v1/notes", b"note", idempotency_key="op-1")
    retry = device.send(client, two, "POST", "/v1/notes", b"note", idempotency_key="op-1")
    assert first.response.status_code == retry.response.status_code == 201
    assert retry.response.content == first.response.content
    assert retry.response.headers[REPLAYED] == "true"
    assert retry.signed_at is not None
    replay = device.resend(client, two, "POST", "/v1/notes", b"note", sent=first.sent)
    assert replay.response.status_code == 401
    assert replay.response.headers[h.REJECTED] == "replay"
    assert int(redis_server.admin().get("runs") or 0) == 1


def test_concurrent_retries_to_both_processes_run_the_handler_once(
    setup: tuple[RedisServer, list[str], httpx.Client, Path],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    redis_server, urls, client, _ = setup
    device = Device()
    keys = [f"op-{index}" for index in range(20)]

    def send(url: str, key: str) -> int:
        answer = device.send(client, url, "POST", "/v1/notes", key.encode(), idempotency_key=key)
        return answer.response.status_code

    pairs = [(url, key) for key in keys for url in urls]  # each key to both, at once
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, *zip(*pairs, strict=True)))
    assert set(statuses) <= {201, 409}
    assert int(redis_server.admin().get("runs") or 0) == len(keys)
    for key in keys:  # afterwards every key answers its one stored outcome, from either process
        for url in urls:
            answer = device.send(
                client, url, "POST", "/v1/notes", key.encode(), idempotency_key=key
            )
            assert answer.response.headers[REPLAYED] == "true"
    assert int(redis_server.admin().get("runs") or 0) == len(keys)


def test_a_stopped_redis_is_503_from_both_processes_and_they_recover(
    setup: tuple[RedisServer, list[str], httpx.Client, Path],
) -> None:
    redis_server, urls, client, log = setup
    device = Device()
    redis_server.stop()
    try:
        for url in urls:
            for key in ("", "op-1"):
                answer = device.send(client, url, "POST", "/v1/notes", b"n", idempotency_key=key)
                assert answer.response.status_code == 503
                assert answer.response.headers[h.REJECTED] == "unavailable"
    finally:
        redis_server.start()
    assert redis_server.admin().get("runs") is None  # the handler never ran
    for url in urls:
        answer = device.send(client, url, "POST", "/v1/notes", b"n", idempotency_key=url)
        assert answer.response.status_code == 201
    text = log.read_text()
    assert "request refused (503 unavailable): the nonce cache: redis at 127.0.0.1:" in text
    assert "POST /v1/notes 503 key_id=phone-1.v1" in text
    assert PASSWORD not in text
