"""``strongroom sync``: two devices through the CLI, the key moved by export and import."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_cli_data import clean_environ, strongroom

from sync_server import ReferenceServer, device_config, make_device
from tls_servers import Pki, make_pki, serve_asgi


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def run(config: Path, *args: str | Path, code: int = 0) -> subprocess.CompletedProcess[bytes]:
    result = strongroom("--config", config, *args, env=clean_environ())
    assert result.returncode == code, result.stderr.decode(errors="replace")
    return result


def test_sync_moves_records_between_two_devices_and_reports_conflicts(
    tmp_path: Path, pki: Pki
) -> None:
    server = ReferenceServer(tmp_path / "server.db")
    with serve_asgi(server.app(), pki.server) as url:
        for name in ("phone", "laptop"):
            make_device(tmp_path / name, url, pki, server, f"{name}-1").close()
        phone = device_config(tmp_path / "phone", url, pki, "phone-1")
        laptop = device_config(tmp_path / "laptop", url, pki, "laptop-1")
        no_key = run(phone, "sync", code=2)
        assert no_key.stderr.decode().count("\n") == 1
        assert "--new-key" in no_key.stderr.decode()
        run(phone, "sync", "--new-key")
        exported = tmp_path / "sync-key.txt"
        warned = run(phone, "sync", "--export-key", exported)
        assert "exposed" in warned.stderr.decode()
        assert exported.stat().st_mode & 0o777 == 0o600
        run(phone, "sync", "--export-key", exported, code=2)  # never replaces a file
        run(laptop, "sync", "--import-key", exported)
        strongroom("--config", phone, "put", "notes", "k", env=clean_environ(), stdin=b"base")
        pushed = run(phone, "sync").stdout.decode()
        assert pushed.startswith("notes: pushed 1, pulled 0, conflicts 0, parked 0, queued 0")
        assert json.loads(run(laptop, "sync", "--json").stdout)["pulled"] == ["k"]
        assert run(laptop, "get", "notes", "k").stdout == b"base"
        strongroom("--config", phone, "put", "notes", "k", env=clean_environ(), stdin=b"phone")
        strongroom("--config", laptop, "put", "notes", "k", env=clean_environ(), stdin=b"laptop")
        run(phone, "sync")
        conflicted = run(laptop, "sync").stdout.decode()
        assert "conflicts 1" in conflicted
        assert "conflict: k (the local write is kept as a conflict copy)" in conflicted
        assert run(laptop, "get", "notes", "k").stdout == b"phone"
    # the server is gone: the change stays queued, one line, exit 1
    strongroom("--config", phone, "put", "notes", "n", env=clean_environ(), stdin=b"offline")
    offline = run(phone, "sync", code=1)
    assert "queued 1" in offline.stdout.decode()
    error = offline.stderr.decode()
    assert error.count("\n") == 1
    assert "could not be reached; 1 operation(s) stay queued" in error
    server.storage.close()
