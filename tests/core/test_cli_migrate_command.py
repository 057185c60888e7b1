"""``strongroom migrate PLAINTEXT.db --to STORE`` run as a user runs it, into a sqlcipher store.

Every run is checked as in ``test_cli_data``: no traceback, one error
line, warnings only on success, no passphrase printed.  The target is read
back with the key ``database key --expose-key`` prints, through SQLCipher.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlite_sources import (
    APP_NAMES,
    CANARY_BLOB,
    CANARY_TEXT,
    LATE_CANARY,
    dump,
    make_source,
    read_plaintext,
)
from test_cli_data import (
    FILE_VARIABLE,
    PASSPHRASE,
    Account,
    clean_environ,
    passphrase_table,
    write_config,
    write_private,
)

sqlcipher = pytest.importorskip("sqlcipher3.dbapi2")

#: Runs ``argv[2:]`` with the largest file it may write limited to ``argv[1]`` bytes.
FILE_SIZE_LIMIT = (
    sys.executable,
    "-c",
    "import os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n",
)


def make_vault_account(root: Path) -> Account:
    """``alice`` with a ``sqlcipher`` store ``vault`` (busy timeout 1 s) and a ``files`` store."""
    data_dir = root / "data"
    passphrase_file = write_private(root / "passphrase", PASSPHRASE)
    vault = '[stores.vault]\nuse = "sqlcipher"\nbusy_timeout = 1\n'
    config = write_config(
        root / "strongroom.toml", data_dir, passphrase_table("main"), vault, stores=("notes",)
    )
    return Account(config, data_dir, clean_environ(**{FILE_VARIABLE: str(passphrase_file)}))


@pytest.fixture(scope="module")
def vault_initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    account = make_vault_account(tmp_path_factory.mktemp("vault"))
    account.run("init")
    account.run("put", "vault", "own-record", stdin=b"the store's own")
    return account.data_dir


@pytest.fixture
def vault_account(tmp_path: Path, vault_initialised: Path) -> Account:
    made = make_vault_account(tmp_path)
    shutil.copytree(vault_initialised, made.data_dir, symlinks=True)
    return made


def database_of(account: Account) -> Path:
    return account.directory / "stores" / "vault" / "store.db"


def open_vault(account: Account) -> Any:
    """The vault's database, opened with what ``database key --expose-key`` prints."""
    printed = json.loads(account.run("database", "key", "vault", "--expose-key", "--json").stdout)
    conn = sqlcipher.connect(printed["database"])
    for pragma in printed["pragmas"]:
        conn.execute(pragma)
    return conn


def app_objects(conn: Any) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'")
    return {name for (name,) in rows if not name.startswith("strongroom_")}


def test_migrate_imports_everything_then_removes_the_plaintext(
    vault_account: Account, tmp_path: Path
) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source, "wal")
    result = vault_account.run("migrate", source, "--to", "vault")
    assert result.stdout.decode() == (
        f"migrated 4 table(s), 34 row(s), from {source} into store 'vault'; removed {source}\n"
    )
    warning = result.stderr.decode()
    assert "flash storage" in warning
    assert "copy-on-write" in warning
    assert f"{source} was deleted, not overwritten" in warning
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("app.db")] == []

    conn = open_vault(vault_account)
    try:
        assert dump(conn) == expected
        assert app_objects(conn) == set(APP_NAMES)
        stored = [database_of(vault_account), Path(f"{database_of(vault_account)}-wal")]
        for file in stored:
            if file.exists():
                data = file.read_bytes()
                for canary in (CANARY_TEXT.encode(), CANARY_BLOB[:16], LATE_CANARY.encode()):
                    assert canary not in data, f"{canary!r} in {file}"
    finally:
        conn.close()
    assert vault_account.run("get", "vault", "own-record").stdout == b"the store's own"


def test_keep_plaintext_keeps_it_and_says_so(vault_account: Account, tmp_path: Path) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source)
    result = vault_account.run("migrate", source, "--to", "vault", "--keep-plaintext", "--json")
    data = json.loads(result.stdout)
    assert data["removed"] is False
    assert data["tables"] == {"people": 5, "events": 18, "tags": 3, "audit": 6}
    assert "still holds the data unencrypted" in result.stderr.decode()
    assert read_plaintext(source) == expected


def test_every_refusal_is_one_line_exit_2_and_changes_nothing(
    vault_account: Account, tmp_path: Path
) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source)
    text = tmp_path / "notes.txt"
    text.write_text("not a database, but long enough to have a header\n")
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    link = tmp_path / "link.db"
    link.symlink_to(source)
    encrypted = tmp_path / "copy-of-the-vault.db"
    shutil.copyfile(database_of(vault_account), encrypted)
    colliding = tmp_path / "other.db"
    conn = sqlcipher.connect(str(colliding))
    conn.execute("CREATE TABLE strongroom_records (key)")
    conn.close()

    def refused(*args: str | Path) -> str:
        return vault_account.error("migrate", *args, code=2)

    assert "holds no SQL database" in refused(source, "--to", "notes")
    assert "no store 'elsewhere' is configured" in refused(source, "--to", "elsewhere")
    assert "the following arguments are required: --to" in refused(source)
    assert f"{tmp_path} is a directory" in refused(tmp_path, "--to", "vault")
    assert "not a regular file" in refused(fifo, "--to", "vault")
    assert "not a regular file" in refused("/dev/null", "--to", "vault")
    assert "is a symbolic link" in refused(link, "--to", "vault")
    assert "No such file" in refused(tmp_path / "missing.db", "--to", "vault")
    assert "is not a plaintext SQLite database" in refused(text, "--to", "vault")
    assert "is not a plaintext SQLite database" in refused(encrypted, "--to", "vault")
    assert "reserves (strongroom_*)" in refused(colliding, "--to", "vault")
    hard = tmp_path / "hard.db"
    os.link(source, hard)
    assert "other hard link(s)" in refused(source, "--to", "vault")
    os.unlink(hard)

    vault_account.run("migrate", source, "--to", "vault", "--keep-plaintext")
    clash = tmp_path / "clash.db"
    conn = sqlcipher.connect(str(clash))
    conn.execute("CREATE TABLE Tags (other)")
    conn.close()
    assert "store 'vault' already has 'Tags'" in refused(clash, "--to", "vault")
    # the same file again is found imported already: verified, and nothing doubled
    vault_account.run("migrate", source, "--to", "vault", "--keep-plaintext")
    assert read_plaintext(source) == expected
    assert fifo.exists()
    conn = open_vault(vault_account)
    try:
        assert dump(conn) == expected
    finally:
        conn.close()


def test_a_locked_store_fails_in_one_line_and_keeps_the_plaintext(
    vault_account: Account, tmp_path: Path
) -> None:
    import subprocess

    source = tmp_path / "app.db"
    expected = make_source(source)
    printed = json.loads(
        vault_account.run("database", "key", "vault", "--expose-key", "--json").stdout
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, sys, sqlcipher3.dbapi2 as s\n"
            "p = json.loads(sys.argv[1])\n"
            "c = s.connect(p['database'], isolation_level=None)\n"
            "[c.execute(x) for x in p['pragmas']]\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n",
            json.dumps(printed),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        line = vault_account.error("migrate", source, "--to", "vault", code=1)
    finally:
        holder.communicate("", timeout=30)
    assert "another process holds it locked" in line
    assert "nothing was migrated" in line
    assert read_plaintext(source) == expected


def test_a_full_disk_during_the_import_fails_in_one_line_and_changes_nothing(
    vault_account: Account, tmp_path: Path
) -> None:
    source = tmp_path / "app.db"
    expected = make_source(source, "wal", rows=400)  # about 400 KiB to import
    size = database_of(vault_account).stat().st_size
    wal = Path(f"{database_of(vault_account)}-wal")
    limit = max(size, wal.stat().st_size if wal.exists() else 0) + 64 * 1024
    line = vault_account.error(
        "migrate", source, "--to", "vault", code=1, launcher=(*FILE_SIZE_LIMIT, str(limit))
    )
    assert "a full disk, a file size limit" in line, line
    assert "nothing was migrated" in line
    assert read_plaintext(source) == expected
    conn = open_vault(vault_account)
    try:
        assert app_objects(conn) == set()
    finally:
        conn.close()
    vault_account.run("migrate", source, "--to", "vault")  # with room, it goes through


#: The command, stopping at a named step of ``strongroom.cli.migrate`` until killed.
STOPPING_CLI = """
import sys
from strongroom.cli import migrate
from strongroom.cli.main import main

def reached(step):
    if step == sys.argv[1]:
        print(f"stopped {step}", flush=True)
        sys.stdin.read()  # killed here

migrate.reached = reached
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("step", ["copying", "committed", "removing"])
def test_the_command_killed_mid_way_loses_nothing_and_a_rerun_finishes(
    vault_account: Account, tmp_path: Path, step: str
) -> None:
    import signal
    import subprocess

    source = tmp_path / "app.db"
    expected = make_source(source, "wal")
    argv = ["--config", str(vault_account.config), "migrate", str(source), "--to", "vault"]
    child = subprocess.Popen(
        [sys.executable, "-c", STOPPING_CLI, step, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=vault_account.env,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == f"stopped {step}\n"
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)

    assert read_plaintext(source) == expected
    conn = open_vault(vault_account)
    try:
        imported = app_objects(conn)
        assert imported == (set() if step == "copying" else set(APP_NAMES))
        if imported:
            assert dump(conn) == expected
    finally:
        conn.close()
    vault_account.run("migrate", source, "--to", "vault")
    assert not source.exists()
    conn = open_vault(vault_account)
    try:
        assert dump(conn) == expected
    finally:
        conn.close()
    assert vault_account.run("get", "vault", "own-record").stdout == b"the store's own"
