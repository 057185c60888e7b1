"""``[stores.vault] use = "sqlcipher"`` driven through the CLI, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("strongroom")
PASSPHRASE = "vault passphrase 5d2e"  # noqa: S105 - a test's own


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    config = tmp_path / "strongroom.toml"
    config.write_text(
        f'[strongroom]\ndata_dir = "{tmp_path / "data"}"\naccount = "alice"\n\n'
        '[key_providers.main]\nuse = "passphrase"\nmemory_kib = 19456\niterations = 2\n'
        f'lanes = 1\npassphrase = "file:{secret}"\n\n'
        '[stores.vault]\nuse = "sqlcipher"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM")}
    env["STRONGROOM_CONFIG"] = str(config)

    def run(
        *args: str | Path, stdin: bytes = b"", code: int = 0
    ) -> subprocess.CompletedProcess[bytes]:
        command = (
            [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "strongroom.cli.main"]
        )
        result = subprocess.run(
            [*command, *map(str, args)],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        stderr = result.stderr.decode()
        assert result.returncode == code, stderr
        assert "Traceback" not in stderr
        assert PASSPHRASE not in stderr
        if code:
            assert len(stderr.splitlines()) == 1
            assert stderr.startswith("strongroom: error: ")
        return result

    return run


def test_init_put_get_ls_rotate_reencrypt(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("init")
    directory = tmp_path / "data" / "accounts" / "alice" / "stores" / "vault"
    cli("put", "vault", "notes/1", "-", stdin=b"first note")
    cli("put", "vault", "notes/2", "-", stdin=b"second note")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(700_000))
    cli("put", "vault", "scan", big, "--blob")
    assert cli("get", "vault", "notes/1").stdout == b"first note"
    assert cli("get", "vault", "scan").stdout == big.read_bytes()
    assert cli("ls", "vault", "notes/").stdout == b"notes/1\nnotes/2\n"
    assert (directory / "store.db").is_file()

    cli("keys", "rotate")
    cli("put", "vault", "notes/3", "-", stdin=b"after the rotation")
    sidecar = directory / "store.key-version"
    assert json.loads(sidecar.read_text())["version"] == 1  # the file keeps its version until...
    out = cli("keys", "reencrypt").stdout.decode()
    assert "vault: 4 of 4 current" in out
    assert "MB/s" in out
    assert json.loads(sidecar.read_text()) == {"format": 1, "version": 2}
    assert cli("get", "vault", "notes/3").stdout == b"after the rotation"
    assert cli("ls", "vault").stdout == b"notes/1\nnotes/2\nnotes/3\nscan\n"
    for path in directory.iterdir():
        data = path.read_bytes() if path.is_file() else b""
        assert b"first note" not in data, path.name
        assert b"notes/1" not in data, path.name


def test_a_damaged_database_is_exit_3_and_names_the_store(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("init")
    cli("put", "vault", "k", "-", stdin=b"value")
    database = tmp_path / "data" / "accounts" / "alice" / "stores" / "vault" / "store.db"
    data = bytearray(database.read_bytes())
    data[50] ^= 1
    database.write_bytes(bytes(data))
    error = cli("get", "vault", "k", code=3).stderr.decode()
    assert "store 'vault'" in error
    assert "file is not a database" not in error
