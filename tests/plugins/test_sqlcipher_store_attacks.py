"""Attacks on the sqlcipher store: application connections after a lock, special files, rollback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlcipher_support import sqlcipher_stack

from strongroom import Strongroom
from strongroom.errors import KeyLockedError

sqlcipher = pytest.importorskip("sqlcipher3.dbapi2")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Strongroom]:
    with sqlcipher_stack(tmp_path) as built:
        yield built


def test_a_connection_opened_before_a_lock_reads_nothing_after_it(stack: Strongroom) -> None:
    stack.store("vault").put("secret", b"SECRET-VALUE")
    conn = stack.open_database("vault")
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    stack.keys.lock()
    for attempt in (
        lambda: conn.execute("SELECT value FROM strongroom_records"),
        lambda: conn.cursor().execute("SELECT count(*) FROM mine"),
        lambda: conn.executemany("INSERT INTO mine VALUES (?)", [(1,)]),
    ):
        with pytest.raises((KeyLockedError, sqlcipher.ProgrammingError)):
            attempt()
    with pytest.raises(sqlcipher.ProgrammingError):  # closed: its key left SQLCipher's memory
        conn.execute("SELECT 1")


def test_after_a_rekey_and_retire_the_old_connection_still_says_rekeyed(
    stack: Strongroom,
) -> None:
    from strongroom_plugins.sqlcipher._app import DatabaseKeyError

    vault = stack.store("vault")
    conn = stack.open_database("vault")
    stack.keys.rotate(vault.binding.purpose)
    list(vault.reencrypt())
    stack.keys.retire(vault.binding.purpose, 1)
    with pytest.raises(DatabaseKeyError) as info:
        conn.execute("SELECT 1")
    assert info.value.rekeyed


def _in_child(code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("planted", ["fifo-sidecar", "zero-sidecar", "fifo-database"])
def test_a_special_file_in_the_store_never_hangs_it(tmp_path: Path, planted: str) -> None:
    """A FIFO or a link to /dev/zero in place of a store file: an error or a fallback, at once."""
    code = f"""
import os, sys
from pathlib import Path
sys.path[:0] = {sys.path!r}
from strongroom.errors import StoreError
from strongroom.store import StoreBinding
from strongroom.testing import MemoryKeyProvider, make_account_keys
from strongroom_plugins.sqlcipher.store import SqlcipherStore

keys = make_account_keys(Path({str(tmp_path)!r}), provider=MemoryKeyProvider(kek=bytes(32)))
keys.create()
directory = keys.directory / "stores" / "vault"
directory.mkdir(parents=True, exist_ok=True)
binding = StoreBinding(keys.account, "vault", directory, keys)
keys.ensure(binding.purpose)
store = SqlcipherStore(binding=binding)
planted = {planted!r}
if planted != "fifo-database":
    store.put("k", b"v")
    store.close()
    store = SqlcipherStore(binding=binding)
    sidecar = directory / "store.key-version"
    sidecar.unlink()
    if planted == "fifo-sidecar":
        os.mkfifo(sidecar)
    else:
        os.symlink("/dev/zero", sidecar)
    print(store.get("k"))
else:
    os.mkfifo(directory / "store.db")
    try:
        store.put("k", b"v")
    except StoreError as exc:
        print("StoreError", "regular file" in str(exc))
"""
    done = _in_child(code)  # raises TimeoutExpired on a hang
    assert done.returncode == 0, done.stderr
    expected = "StoreError True" if planted == "fifo-database" else "b'v'"
    assert done.stdout.strip() == expected


def test_a_lock_during_a_migration_is_a_clean_key_error(
    stack: Strongroom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from strongroom.cli import migrate

    source = tmp_path / "app.db"
    plain = sqlite3.connect(source)
    plain.execute("CREATE TABLE notes (x)")
    plain.execute("INSERT INTO notes VALUES ('n')")
    plain.commit()
    plain.close()
    conn = stack.store("vault").connect()  # type: ignore[attr-defined]
    monkeypatch.setattr(migrate.imports, "check_source", lambda *_: stack.keys.lock())
    with pytest.raises(KeyLockedError):
        migrate._migrate(conn, source, "vault", removing=True)
    conn.close()
    assert source.exists()


def test_a_rekey_killed_before_its_floor_still_refuses_an_older_copy(tmp_path: Path) -> None:
    import shutil

    from sqlcipher_support import bind, new_keys, open_sqlcipher_store

    from strongroom_plugins.sqlcipher import _rekey
    from strongroom_plugins.sqlcipher._keying import RolledBackError

    keys = new_keys(tmp_path / "keys")
    keys.create()
    binding = bind(keys)
    store = open_sqlcipher_store(binding)
    store.put("k", b"old value")
    store.close()
    backup = tmp_path / "backup"
    shutil.copytree(binding.directory, backup)  # the whole directory, sidecar included

    class Killed(BaseException):
        pass

    def kill_at(step: str) -> None:
        if step == "recorded":  # the sidecar names the new version; the floor is not raised
            raise Killed

    keys.rotate(binding.purpose)
    store = open_sqlcipher_store(binding)
    store.put("k", b"new value")
    original, _rekey.on_step = _rekey.on_step, kill_at
    try:
        with pytest.raises(Killed):
            list(store.reencrypt())
    finally:
        _rekey.on_step = original
    store.close()
    store = open_sqlcipher_store(binding)
    assert store.get("k") == b"new value"  # someone opens the store after the crash
    store.close()

    shutil.rmtree(binding.directory)
    shutil.copytree(backup, binding.directory)  # an older copy put back
    store = open_sqlcipher_store(binding)
    with pytest.raises(RolledBackError):
        store.get("k")
    store.close()


def test_a_rekey_during_a_migration_is_a_store_error_naming_it(
    stack: Strongroom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``strongroom keys reencrypt`` run beside ``strongroom migrate``: no internal error."""
    import argparse
    import contextlib
    import sqlite3

    from strongroom.cli import migrate
    from strongroom.errors import StoreError

    source = tmp_path / "app.db"
    plain = sqlite3.connect(source)
    plain.execute("CREATE TABLE notes (x)")
    plain.execute("INSERT INTO notes VALUES ('n')")
    plain.commit()
    plain.close()
    vault = stack.store("vault")

    def rekey_at(step: str) -> None:
        if step == "attached":  # another process re-keys the store now
            stack.keys.rotate(vault.binding.purpose)
            list(vault.reencrypt())  # type: ignore[attr-defined]

    monkeypatch.setattr(migrate, "reached", rekey_at)
    monkeypatch.setattr(migrate, "opened", lambda _args: contextlib.nullcontext(stack))
    args = argparse.Namespace(source=str(source), to="vault", keep_plaintext=False)
    with pytest.raises(StoreError, match="re-keyed during the migration"):
        migrate.run(args)
    assert source.exists()
