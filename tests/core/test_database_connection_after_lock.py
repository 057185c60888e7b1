"""An application's connection (open_database) must not keep reading the database after a lock."""

from __future__ import annotations

from pathlib import Path

from test_key_policy import Presence, initialised, stack_of


def test_an_app_connection_stops_working_when_the_account_locks(tmp_path: Path) -> None:
    config = initialised(tmp_path, stores__vault={"use": "sqlcipher"})
    with stack_of(config, Presence()) as stack:
        stack.keys.unlock()
        conn = stack.open_database("vault")
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('private')")
        conn.commit()
        stack.keys.lock()
        assert not stack.keys.unlocked
        try:
            rows = conn.execute("SELECT body FROM notes").fetchall()
        except Exception:
            rows = None
        conn.close()
        assert rows is None, f"read {rows!r} through a connection after the account locked"
