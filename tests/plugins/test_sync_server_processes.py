"""Two ``strongroom serve`` processes sharing one real Redis and one real PostgreSQL 15.

What one process accepted, the other knows: a replayed request is refused,
an idempotent retry gets the first outcome and the write lands once.  Both
fail closed (503) while Redis is stopped and recover when it is back; a
PostgreSQL restart in the middle of a sync loses no acknowledged write.
"""

from __future__ import annotations

import base64
import itertools
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from asgi_client import Device
from postgres import PASSWORD, PASSWORD_VARIABLE, Postgres, running_postgres
from redis_server import RedisServer, running_redis
from strongroom.signing import headers as h
from strongroom_contrib.asgi import REPLAYED
from sync_client import SyncClient, decoded
from tls_servers import make_pki

KEY = secrets.token_bytes(32)
KEY_ID = "phone-7.v1"
REDIS_PASSWORD = "pw-serve-51c2-never-logged"  # noqa: S105 - the test server's own


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)  # a poll interval under a deadline
    pytest.fail("strongroom serve did not listen: " + log.read_text())


@dataclass
class Cluster:
    redis: RedisServer
    postgres: Postgres
    urls: list[str]
    http: httpx.Client
    log: Path
    config: Path
    env: dict[str, str]
    context: ssl.SSLContext

    def clients(self, account: str = "alice") -> list[SyncClient]:
        return [SyncClient(self.http, url, account, Device(KEY, KEY_ID)) for url in self.urls]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    pki = make_pki(root / "pki")
    secret = root / "secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    with running_postgres() as postgres, running_redis(password=REDIS_PASSWORD) as redis_server:
        dbname = postgres.create_database("sync")
        config = root / "server.toml"
        config.write_text(
            f'[server]\ncertfile = "{pki.server.cert_chain}"\nkeyfile = "{pki.server.key}"\n'
            f'secret = "file:{secret}"\n'
            f'[server_storage]\nuse = "postgresql"\nhost = "{postgres.socket_dir}"\n'
            f'dbname = "{dbname}"\nuser = "strongroom"\npassword = "env:{PASSWORD_VARIABLE}"\n'
            "connect_timeout = 0.5\n"
            '[nonce_cache]\nuse = "redis"\nurl = "env:SYNC_REDIS_URL"\n'
            "socket_timeout = 1.0\nconnect_timeout = 1.0\n"
        )
        env = {
            **os.environ,
            PASSWORD_VARIABLE: PASSWORD,
            "SYNC_REDIS_URL": redis_server.url,
        }
        key_file = root / "key"
        key_file.write_text(base64.b64encode(KEY).decode())
        cli = [sys.executable, "-m", "strongroom.cli.main"]
        added = subprocess.run(
            [
                *cli,
                "serve",
                "devices",
                "add",
                "alice",
                KEY_ID,
                "--key-file",
                str(key_file),
                "--config",
                str(config),
            ],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert added.returncode == 0, added.stderr
        log = root / "servers.log"
        processes: list[subprocess.Popen[bytes]] = []
        urls = []
        try:
            with log.open("ab") as sink:
                for _ in range(2):
                    port = free_port()
                    process = subprocess.Popen(
                        [*cli, "serve", "--config", str(config)],
                        env={**env, "STRONGROOM__SERVER__PORT": str(port)},
                        stdout=sink,
                        stderr=sink,
                    )
                    processes.append(process)
                    wait_listening(port, process, log)
                    urls.append(f"https://127.0.0.1:{port}")
            context = ssl.create_default_context(cafile=pki.ca_bundle)
            with httpx.Client(verify=context, timeout=30) as http:
                yield Cluster(redis_server, postgres, urls, http, log, config, env, context)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(40)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
    assert REDIS_PASSWORD not in log.read_text()
    assert PASSWORD not in log.read_text()


def test_a_request_replayed_to_the_other_process_is_refused(cluster: Cluster) -> None:
    one, two = cluster.clients()
    first = one.push(("replayed", b"once", None))
    assert first.response.status_code == 200
    path = "/v1/accounts/alice/push"
    replay = two.device.resend(
        cluster.http, two.url, "POST", path, first.response.request.content, sent=first.sent
    )
    assert replay.response.status_code == 401
    assert replay.response.headers[h.REJECTED] == "replay"
    entries = decoded(one.pull())["entries"]
    assert [entry["key"] for entry in entries].count("replayed") == 1


def test_an_idempotent_retry_to_the_other_process_is_applied_once(cluster: Cluster) -> None:
    one, two = cluster.clients()
    before = decoded(one.pull())["next"]
    key = secrets.token_urlsafe(16)
    first = one.push(("retried", b"v", None), idempotency_key=key)
    retry = two.push(("retried", b"v", None), idempotency_key=key)
    assert first.response.status_code == retry.response.status_code == 200
    assert retry.response.headers[REPLAYED] == "true"
    assert retry.response.content == first.response.content
    assert retry.signed_at is not None
    page = decoded(two.pull(after=before))
    assert page["next"] == before + 1  # one write, one seq
    assert [entry["key"] for entry in page["entries"]] == ["retried"]


def test_a_428_is_not_the_stored_outcome_and_a_token_works_on_the_other_process(
    cluster: Cluster,
) -> None:
    one, two = cluster.clients()
    operation = secrets.token_urlsafe(16)
    change = ("guarded", b"v", None)
    elsewhere = decoded(one.challenge(secrets.token_urlsafe(16)))["token"]  # another operation's
    refused = one.push(change, idempotency_key=operation, challenge=elsewhere)
    assert (refused.response.status_code, decoded(refused)) == (428, {"error": "challenge"})
    token = decoded(one.challenge(operation))["token"]
    done = two.push(change, idempotency_key=operation, challenge=token)
    assert done.response.status_code == 200
    assert REPLAYED not in done.response.headers
    retried = one.push(change, idempotency_key=operation)  # its answer was lost
    assert retried.response.headers[REPLAYED] == "true"
    assert retried.response.content == done.response.content


def test_a_stopped_redis_is_503_from_both_and_both_recover(cluster: Cluster) -> None:
    clients = cluster.clients()
    cluster.redis.stop()
    try:
        for client in clients:
            refused = client.push(("during-outage", b"v", None))
            assert refused.response.status_code == 503
            assert refused.response.headers[h.REJECTED] == "unavailable"
            assert cluster.http.get(client.url + "/v1/ready").status_code == 503
    finally:
        cluster.redis.start()
    for client in clients:
        assert client.push(("after-outage", b"v", None)).response.status_code == 200
        assert cluster.http.get(client.url + "/v1/ready").status_code == 200
    keys = [entry["key"] for entry in decoded(clients[0].pull())["entries"]]
    assert "during-outage" not in keys


def test_a_postgres_restart_mid_sync_loses_no_acknowledged_write(cluster: Cluster) -> None:
    clients = cluster.clients()
    acknowledged: dict[str, int] = {}
    counter = itertools.count()

    def push_some(count: int) -> list[int]:
        statuses = []
        for _ in range(count):
            index = next(counter)
            key = f"sync-{index}"
            answer = clients[index % 2].push((key, f"value {index}".encode(), 0))
            statuses.append(answer.response.status_code)
            if answer.response.status_code == 200:
                acknowledged[key] = decoded(answer)["results"][0]["seq"]
        return statuses

    assert push_some(10) == [200] * 10
    cluster.postgres.stop("fast")
    assert push_some(2) == [503] * 2  # refused, so not acknowledged
    for client in clients:
        assert cluster.http.get(client.url + "/v1/ready").status_code == 503
    cluster.postgres.start()
    after = push_some(12)
    # a pooled connection the restart broke may fail one push per process, then all go through
    assert set(after) <= {200, 503}
    assert after[4:] == [200] * 8
    page = decoded(clients[1].pull())
    stored = {entry["key"]: entry["seq"] for entry in page["entries"]}
    assert {key: stored.get(key) for key in acknowledged} == acknowledged


def test_several_workers_share_the_state_and_stop_cleanly_on_sigterm(cluster: Cluster) -> None:
    port = free_port()
    log = cluster.log.with_name("workers.log")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "strongroom.cli.main", "serve"),
                *("--workers", "2", "--config", str(cluster.config)),
            ],
            env={**cluster.env, "STRONGROOM__SERVER__PORT": str(port)},
            stdout=sink,
            stderr=sink,
        )
    own = httpx.Client(verify=cluster.context, timeout=30)
    try:
        wait_listening(port, process, log)
        client = SyncClient(own, f"https://127.0.0.1:{port}", "alice", Device(KEY, KEY_ID))
        pushed = client.push(("from-a-worker", b"v", None))
        assert pushed.response.status_code == 200
        replay = client.device.resend(
            cluster.http,
            cluster.urls[0],
            "POST",
            "/v1/accounts/alice/push",
            pushed.response.request.content,
            sent=pushed.sent,
        )
        assert replay.response.status_code == 401
    finally:
        own.close()  # no idle connection holds the workers' shutdown
        process.terminate()
        assert process.wait(30) == 0


def test_devices_are_listed_from_postgresql_without_their_keys(cluster: Cluster) -> None:
    listed = subprocess.run(
        [
            *(sys.executable, "-m", "strongroom.cli.main", "serve", "devices", "list"),
            *("--json", "--config", str(cluster.config)),
        ],
        env=cluster.env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert b'"key_id": "phone-7.v1"' in listed.stdout
    assert base64.b64encode(KEY) not in listed.stdout
