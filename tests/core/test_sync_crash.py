"""Syncs SIGKILLed at chosen points, client and server, converge on the next run.

A real ``strongroom serve`` (uvicorn over TLS, ``sqlite`` server storage,
``memory`` nonce cache and idempotency store, so a killed server forgets
every outcome it kept) and two devices, each driven by a process of its
own (``tests/sync_crash_device.py``), syncing records and a blob of a few
chunks.  Each kill point is an event of the device's ``send``: the ``N``-th
request of a kind, where the device kills itself once the answer arrived
(before it recorded it), or kills the server just before the request or
just after the server answered it (the answer lost).  After every kill the
server is restarted if need be and the devices sync again; at the end both
hold the same contents, every acknowledged write is there once, and
nothing is left in an outbox, an upload, a conflict copy, a staging file or
an open upload on the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from strongroom.sync import Syncer
from sync_crash_device import blob_bytes
from sync_server import ReferenceServer, device_config, make_device
from tls_servers import Pki, make_pki

TESTS = Path(__file__).resolve().parents[1]
DEVICE = TESTS / "sync_crash_device.py"
#: Four stored chunks of 4096 bytes and a short one: six transfer chunks with the header.
BLOB_SIZE = 4 * 4096 + 500


def environ() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """``strongroom serve`` as a child process, restarted on the same port after a kill."""

    config: Path
    port: int
    database: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "strongroom.cli.main", "serve", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environ(),
        )
        self.starts += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "strongroom serve exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)  # a poll interval under a deadline
        pytest.fail("strongroom serve did not listen")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def ensure_running(self) -> None:
        """Reap a killed server and start another on the same database and port."""
        assert self.process is not None
        if self.process.poll() is not None:
            self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Device:
    config: Path
    #: What this device's acknowledged writes were, by key: SHA-256 hex.
    written: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(DEVICE), str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=TESTS,
            env=environ(),
        )

    def put(self, key: str, value: str) -> None:
        done = self.run("put", key, value)
        assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
        self.written[key] = hashlib.sha256(value.encode()).hexdigest()

    def put_blob(self, key: str, seed: int) -> None:
        done = self.run("blob", key, str(BLOB_SIZE), str(seed))
        assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
        self.written[key] = hashlib.sha256(blob_bytes(BLOB_SIZE, seed)).hexdigest()

    def dump(self) -> dict[str, Any]:
        done = self.run("dump")
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found


@dataclass
class World:
    server: Server
    phone: Device
    laptop: Device

    def sync(self, device: Device, spec: str = "none:0:none") -> dict[str, Any] | None:
        """One sync of ``device``, killed where ``spec`` says: its report, ``None`` if killed.

        A server killed meanwhile is restarted.
        """
        done = device.run("sync", spec, str(self.server.pid))
        self.server.ensure_running()
        assert done.returncode in (0, -9), done.stderr
        if done.returncode == -9:
            return None
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def killed(self, device: Device, spec: str) -> None:
        """A sync whose device is SIGKILLed at ``spec``."""
        assert self.sync(device, spec) is None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    pki: Pki = make_pki(tmp_path / "pki")
    port = free_port()
    database = tmp_path / "server.sqlite3"
    secret = tmp_path / "challenge-secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    config = tmp_path / "server.toml"
    config.write_text(
        "[server]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'certfile = "{pki.server.cert_chain}"\nkeyfile = "{pki.server.key}"\n'
        f'secret = "file:{secret}"\n'
        f'[server_storage]\nuse = "sqlite"\npath = "{database}"\n'
        '[nonce_cache]\nuse = "memory"\n'
    )
    url = f"https://127.0.0.1:{port}"
    registry = ReferenceServer(database)
    phone_stack = make_device(tmp_path / "phone", url, pki, registry, "phone-1")
    laptop_stack = make_device(tmp_path / "laptop", url, pki, registry, "laptop-1")
    registry.storage.close()
    with phone_stack, laptop_stack:
        first = Syncer(phone_stack, "notes")
        first.create_key()
        Syncer(laptop_stack, "notes").import_key(first.export_key())
    server = Server(config, port, database)
    server.start()
    try:
        yield World(
            server,
            Device(device_config(tmp_path / "phone", url, pki, "phone-1")),
            Device(device_config(tmp_path / "laptop", url, pki, "laptop-1")),
        )
    finally:
        server.stop()


def open_uploads(database: Path) -> int:
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT count(*) FROM strongroom_uploads WHERE NOT committed").fetchone()
    return int(row[0])


def assert_converged(world: World) -> None:
    """Both devices hold every acknowledged write once, the same contents, nothing pending."""
    for _ in range(2):
        for device in (world.phone, world.laptop):
            assert world.sync(device) == {"offline": False, "conflicts": []}
    expected = {**world.phone.written, **world.laptop.written}
    for device in (world.phone, world.laptop):
        state = device.dump()
        assert state["contents"] == expected
        assert (state["outbox"], state["uploads"], state["conflicts"]) == ([], [], [])
        assert state["staging"] == []
    assert open_uploads(world.server.database) == 0


def test_a_device_killed_while_pushing_pulling_uploading_or_downloading_converges(
    world: World,
) -> None:
    phone, laptop = world.phone, world.laptop
    for index in range(3):
        phone.put(f"note-{index}", f"phone note {index}")
    world.killed(phone, "push:1:client")  # the push ran; its answer never recorded
    world.killed(laptop, "apply:3:client")  # two of the three records applied, no cursor
    phone.put_blob("photo", seed=1)
    world.killed(phone, "chunk-put:3:client")  # mid-upload: chunks 0-2 sent
    world.killed(phone, "commit:1:client")  # the blob committed; the answer never recorded
    world.killed(laptop, "chunk-get:2:client")  # mid-download
    laptop.put("note-0", "laptop's edit")  # ...on top of the pulled note-0
    world.sync(laptop)
    assert_converged(world)
    assert world.server.starts == 1


def test_a_server_killed_mid_push_or_mid_upload_converges(world: World) -> None:
    phone, laptop = world.phone, world.laptop
    phone.put("a", "first")
    phone.put("b", "second")
    world.sync(phone, "push:1:server-before")  # no server: the push stays queued
    world.sync(phone, "push:1:server-after")  # applied, then the server died: answer lost
    laptop.put_blob("video", seed=2)
    world.sync(laptop, "chunk-put:2:server-before")  # the server dies mid-upload
    world.sync(laptop, "commit:1:server-after")  # committed, then the server died
    # the push is sent again to a server that forgot its outcome: it meets the write it
    # made itself, which is no conflict to report; then the server dies mid-download
    report = world.sync(phone, "chunk-get:3:server-before")
    assert report == {"offline": True, "conflicts": []}
    assert world.server.starts == 6
    assert_converged(world)
