"""``strongroom serve`` as an operator runs it: devices registered by CLI, uvicorn over TLS.

The server is a real subprocess: its stderr must be JSON lines without any
body, query string, signature, token or key, and SIGTERM must let a request
still in flight finish before it exits 0.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from asgi_client import Device
from conftest import MakeDistribution
from strongroom.errors import ServerObjectNotFoundError
from strongroom.signing import headers as h
from sync_client import SyncClient, decoded
from tls_servers import make_pki

KEY = secrets.token_bytes(32)
KEY_ID = "laptop-1.v1"
TESTS = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Deployment:
    root: Path
    config: Path
    port: int
    ca_bundle: Path

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "strongroom.cli.main", *args, "--config", str(self.config)],
            input=stdin,
            capture_output=True,
            timeout=60,
            check=False,
            env=environ(),
        )


def environ() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("serve")
    pki = make_pki(root / "pki")
    secret = root / "challenge-secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    port = free_port()
    config = root / "server.toml"
    config.write_text(
        "[server]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'certfile = "pki/{pki.server.cert_chain.name}"\nkeyfile = "pki/{pki.server.key.name}"\n'
        f'secret = "file:{secret}"\n'
        f'[server_storage]\nuse = "sqlite"\npath = "{root / "server.sqlite3"}"\n'
        '[nonce_cache]\nuse = "memory"\n'
    )
    deployment = Deployment(root, config, port, pki.ca_bundle)
    key_file = root / "key.b64"
    key_file.write_text(base64.b64encode(KEY).decode() + "\n")
    added = deployment.run("serve", "devices", "add", "alice", KEY_ID, "--key-file", str(key_file))
    assert added.returncode == 0, added.stderr
    return deployment


def test_devices_are_added_listed_and_retired_without_showing_a_key(
    deployment: Deployment,
) -> None:
    key = secrets.token_bytes(32)
    encoded_key = base64.b64encode(key)
    added = deployment.run(
        "serve", "devices", "add", "bob", "bob-phone.v1", "--key-file", "-", stdin=encoded_key
    )
    assert (added.returncode, added.stderr) == (0, b"")
    again = deployment.run(
        "serve", "devices", "add", "bob", "bob-phone.v1", "--key-file", "-", stdin=encoded_key
    )
    assert again.returncode == 0  # an exact repeat is a no-op
    listed = deployment.run("serve", "devices", "list", "--json")
    devices = json.loads(listed.stdout)["devices"]
    assert {"key_id": "bob-phone.v1", "account": "bob", "active": True} in devices
    assert encoded_key not in listed.stdout + deployment.run("serve", "devices", "list").stdout
    retired = deployment.run("serve", "devices", "retire", "bob", "bob-phone.v1")
    assert retired.returncode == 0
    assert b"bob-phone.v1  bob  retired" in deployment.run("serve", "devices", "list").stdout
    taken = deployment.run(
        "serve", "devices", "add", "mallory", "bob-phone.v1", "--key-file", "-", stdin=encoded_key
    )
    assert taken.returncode == 1
    assert len(taken.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (("add", "bob", "bad key id", "--key-file", "-"), base64.b64encode(bytes(32)), 2),
        (("add", "bob", "bob-2.v1", "--key-file", "-"), b"not base64!", 2),
        (("add", "bob", "bob-2.v1", "--key-file", "-"), base64.b64encode(bytes(8)), 2),
        (("add", "bob", "bob-2.v1", "--key-file", "/nonexistent/key"), b"", 1),
        (("retire", "bob", "never-there.v1"), b"", 1),
    ],
)
def test_device_command_errors_are_one_line_with_their_exit_code(
    deployment: Deployment, args: tuple[str, ...], stdin: bytes, code: int
) -> None:
    done = deployment.run("serve", "devices", *args, stdin=stdin)
    assert done.returncode == code
    assert len(done.stderr.splitlines()) == 1
    assert b"Traceback" not in done.stderr


def test_serve_without_a_server_table_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "no-server.toml"
    config.write_text('[server_storage]\nuse = "sqlite"\npath = "x.db"\n')
    done = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "serve", "--config", str(config)],
        capture_output=True,
        timeout=60,
        check=False,
        env=environ(),
    )
    assert done.returncode == 2
    assert done.stderr.decode().strip().endswith("no [server] table: strongroom serve needs one")


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "strongroom serve exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)  # a poll interval under a deadline
    pytest.fail("strongroom serve did not listen")


def wait_refusing(port: int) -> None:
    """Until the listener is closed: the server has begun its shutdown."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.02)  # a poll interval under a deadline
    pytest.fail("the server kept accepting after SIGTERM")


@pytest.fixture
def serving(deployment: Deployment) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = deployment.root / f"serve-{secrets.token_hex(4)}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "serve",
                "--config",
                str(deployment.config),
            ],
            stdout=sink,
            stderr=sink,
            env=environ(),
        )
    try:
        wait_listening(deployment.port, process)
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_serve_logs_json_lines_without_secrets_and_finishes_in_flight_requests_on_sigterm(
    deployment: Deployment, serving: tuple[subprocess.Popen[bytes], Path]
) -> None:
    process, log = serving
    url = f"https://127.0.0.1:{deployment.port}"
    context = ssl.create_default_context(cafile=deployment.ca_bundle)
    with httpx.Client(verify=context, timeout=30) as http:
        client = SyncClient(http, url, "alice", Device(KEY, KEY_ID))
        assert http.get(url + "/v1/ready").status_code == 200
        token = decoded(client.challenge("op-serve"))["token"]
        pushed = client.push(
            ("note", b"BODY-MARKER-31", None),
            idempotency_key="op-serve",
            challenge=token,
        )
        assert pushed.response.status_code == 200
        pulled = client.pull(after=0, limit=55)
        assert pulled.response.status_code == 200

        chunk = secrets.token_bytes(4096)
        upload = decoded(client.begin("big", b"m", [chunk]))["upload"]
        path = f"/v1/accounts/alice/uploads/{upload}/chunks/0"
        signed = client.device.sign("PUT", path, chunk, "op-slow")
        gate = threading.Event()
        sent_half = threading.Event()

        def body() -> Iterator[bytes]:
            yield chunk[:2048]
            sent_half.set()
            assert gate.wait(30)
            yield chunk[2048:]

        outcome: dict[str, httpx.Response] = {}

        def slow_upload() -> None:
            with httpx.Client(verify=context, timeout=30) as own:
                outcome["answer"] = own.put(url + path, content=body(), headers=signed)

        sender = threading.Thread(target=slow_upload)
        sender.start()
        assert sent_half.wait(30)
        process.send_signal(signal.SIGTERM)
        wait_refusing(deployment.port)
        gate.set()
        sender.join(30)
        assert outcome["answer"].status_code == 204
    # the idle keep-alive connection is closed now: an open one would hold the exit until
    # asyncio's TLS shutdown timeout (30 s) ended it
    assert process.wait(30) == 0

    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "strongroom.access"]
    assert {"PUT", "POST", "GET"} <= {line["method"] for line in access}
    assert all(line["key_id"] == KEY_ID for line in access)
    assert any(line["path"].endswith("/chunks/0") and line["status"] == 204 for line in access)
    leaks = [
        "BODY-MARKER-31",
        token,
        "limit=55",
        pushed.sent[h.SIGNATURE],
        pushed.sent[h.NONCE],
        signed[h.SIGNATURE],
        base64.b64encode(KEY).decode(),
        "op-serve",
    ]
    assert [leak for leak in leaks if leak in text] == []


def test_several_workers_with_a_memory_nonce_cache_are_refused(deployment: Deployment) -> None:
    done = deployment.run("serve", "--workers", "2")
    assert done.returncode == 2
    assert b"several workers need a shared nonce cache" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_an_unloadable_certificate_is_one_line(deployment: Deployment, tmp_path: Path) -> None:
    config = tmp_path / "bad-cert.toml"
    config.write_text(
        deployment.config.read_text().replace(
            'certfile = "pki/', f'certfile = "{tmp_path}/missing/'
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", "serve", "--config", str(config)],
        capture_output=True,
        timeout=60,
        check=False,
        env=environ(),
    )
    assert done.returncode == 2
    assert b"[server] certfile" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_the_server_table_is_validated_like_any_other() -> None:
    from strongroom.config import parse_config
    from strongroom.errors import ConfigError

    table = {"certfile": "chain.pem", "keyfile": "key.pem"}
    server = parse_config({"server": table}, source="t.toml", environ={}).server
    assert server is not None
    assert (server.host, server.port, server.window, server.secret) == (
        "127.0.0.1",
        8443,
        300.0,
        None,
    )
    assert parse_config({}, source="t.toml", environ={}).server is None
    overridden = parse_config(
        {"server": table}, source="t.toml", environ={"STRONGROOM__SERVER__PORT": "9443"}
    )
    assert overridden.server is not None
    assert overridden.server.port == 9443
    for bad, where in [
        ({**table, "secret": "a literal secret"}, "[server] key 'secret'"),
        ({**table, "port": 0}, "[server] key 'port'"),
        ({"certfile": "chain.pem"}, "[server] key 'keyfile'"),
        ({**table, "tls": True}, "[server] key 'tls'"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config({"server": bad}, source="t.toml", environ={})
        assert where in str(caught.value)
        assert "a literal secret" not in str(caught.value)


MASKING = """
from strongroom.hookspecs import hookimpl

@hookimpl
def strongroom_redaction_patterns():
    return [r"hidden-[a-z0-9]+"]
"""


def test_the_redaction_patterns_of_hook_plugins_mask_every_log_field(
    deployment: Deployment, make_distribution: MakeDistribution, tmp_path: Path
) -> None:
    make_distribution(
        "masking-plugin",
        entry_points={"strongroom.plugins": {"masking": "masking_plugin"}},
        modules={"masking_plugin": MASKING},
    )
    port = free_port()
    config = tmp_path / "masked.toml"
    text = deployment.config.read_text().replace(f"port = {deployment.port}", f"port = {port}")
    config.write_text(text.replace('"pki/', f'"{deployment.root}/pki/'))
    masked = Deployment(deployment.root, config, port, deployment.ca_bundle)
    key = secrets.token_bytes(32)
    added = masked.run(
        "serve", "devices", "add", "hidden-acct", "masked-1.v1", "--key-file", "-",
        stdin=base64.b64encode(key),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    log = tmp_path / "masked.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "strongroom.cli.main", "serve", "--config", str(config)],
            stdout=sink,
            stderr=sink,
            env=environ(),
        )
    try:
        wait_listening(port, process)
        context = ssl.create_default_context(cafile=deployment.ca_bundle)
        with httpx.Client(verify=context, timeout=30) as http:
            client = SyncClient(
                http, f"https://127.0.0.1:{port}", "hidden-acct", Device(key, "masked-1.v1")
            )
            assert client.pull().response.status_code == 200
    finally:
        process.terminate()
        assert process.wait(30) == 0
    access = [
        json.loads(line) for line in log.read_text().splitlines() if '"strongroom.access"' in line
    ]
    assert access
    assert all("hidden-acct" not in json.dumps(line) for line in access)
    assert access[0]["path"] == "/v1/accounts/[redacted]/changes"


def test_a_port_in_use_exits_1_with_one_error_line(deployment: Deployment) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", deployment.port))
        taken.listen()
        done = deployment.run("serve")
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert lines[-1].startswith("strongroom: error: the server could not start on 127.0.0.1")
    assert "address already in use" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()


def test_prune_drops_only_uploads_idle_for_the_days_given(deployment: Deployment) -> None:
    from strongroom_plugins.server_stores.sqlite import (
        SqliteServerStorage,
        SqliteServerStorageSettings,
    )

    settings = SqliteServerStorageSettings(path=str(deployment.root / "server.sqlite3"))
    with SqliteServerStorage(settings) as storage:
        storage.clock = lambda: time.time() - 3 * 86_400
        old = storage.begin_blob("alice", "old", b"m", [bytes(32)])
        storage.clock = time.time
        fresh = storage.begin_blob("alice", "fresh", b"m", [bytes(32)])
    pruned = deployment.run("serve", "prune", "--idle-days", "2", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"pruned_uploads": 1, "idle_days": 2.0}
    with SqliteServerStorage(settings) as storage:
        assert storage.missing_chunks("alice", fresh) == [0]
        with pytest.raises(ServerObjectNotFoundError, match="no open upload"):
            storage.missing_chunks("alice", old)
    for days in ("-1", "nan", "soon"):
        refused = deployment.run("serve", "prune", "--idle-days", days)
        assert refused.returncode == 2
        assert len(refused.stderr.splitlines()) == 1
