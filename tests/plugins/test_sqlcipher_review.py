"""Review finding: an application's connection must not outlive the account's lock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom import Strongroom, parse_config
from strongroom.errors import KeyLockedError

sqlcipher = pytest.importorskip("sqlcipher3.dbapi2")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Strongroom]:
    config = parse_config(
        {
            "strongroom": {"data_dir": str(tmp_path / "data"), "account": "alice"},
            "stores": {"vault": {"use": "sqlcipher"}},
        },
        source="test",
        environ={},
    )
    with Strongroom(config, secrets={"main": "review passphrase 5a1e"}) as built:
        built.initialise()
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
