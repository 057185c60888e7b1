"""What the ``sqlcipher`` store leaves on disk, and the settings of the file it opens."""

from __future__ import annotations

import stat
from collections.abc import Iterator

import pytest
from sqlcipher_support import MARKER, bind, files_of, open_sqlcipher_store

from strongroom.errors import KeyLockedError, StoreError
from strongroom.keys import AccountKeys
from strongroom.testing._store_leaks import encodings
from strongroom_plugins.sqlcipher.store import SqlcipherStore

KEYS = ["customer/alice@example.com", "passport-scan", "medical/diagnosis.txt"]


@pytest.fixture
def store(account_keys: AccountKeys) -> Iterator[SqlcipherStore]:
    with open_sqlcipher_store(bind(account_keys)) as opened:
        yield opened


def assert_nothing_in_the_clear(store: SqlcipherStore) -> list[str]:
    needles = {f"marker {form}": needle for form, needle in encodings(MARKER).items()}
    for key in KEYS:
        needles.update(
            {f"{key} {form}": needle for form, needle in encodings(key.encode()).items()}
        )
    names = []
    for path in files_of(store):
        names.append(path.name)
        data = path.read_bytes()
        found = [what for what, needle in needles.items() if needle in data]
        assert not found, f"{path.name}: {found[:3]}"
    return names


def test_wal_shm_and_database_hold_nothing_in_the_clear(store: SqlcipherStore) -> None:
    for key in KEYS:
        store.put(key, MARKER * 40)
    store.put_many([(f"{key}/many", MARKER) for key in KEYS])
    store.put_blob(KEYS[0] + "/blob", [MARKER * 5000])
    names = assert_nothing_in_the_clear(store)  # open: the data sits in the WAL
    assert {"store.db", "store.db-wal", "store.db-shm"} <= set(names)
    assert (store.binding.directory / "store.db-wal").stat().st_size > 0
    assert not any(name.endswith("-journal") for name in names)  # WAL mode: no rollback journal
    store.binding.keys.rotate(store.binding.purpose)
    list(store.reencrypt())  # the WAL now holds every page under the new key
    assert_nothing_in_the_clear(store)
    for key in KEYS:
        store.delete(key)
    store.close()
    assert_nothing_in_the_clear(store)


def test_every_file_is_owner_only(store: SqlcipherStore) -> None:
    store.put("k", b"v")
    for path in files_of(store):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_the_connection_is_hardened(store: SqlcipherStore) -> None:
    store.put("k", b"v")
    conn = store.connect()
    try:
        pragmas = {
            name: conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "secure_delete", "temp_store", "cipher_memory_security")
        }
        meta = dict(conn.execute("SELECT name, value FROM strongroom_meta").fetchall())
    finally:
        conn.close()
    assert pragmas == {
        "journal_mode": "wal",
        "secure_delete": 1,
        "temp_store": 2,
        "cipher_memory_security": "1",
    }
    assert meta == {"format": 1, "store": "vault", "account": "alice"}


def test_a_newer_format_is_refused(store: SqlcipherStore) -> None:
    store.put("k", b"v")
    conn = store.connect()
    conn.execute("UPDATE strongroom_meta SET value = 2 WHERE name = 'format'")
    conn.commit()
    conn.close()
    store.close()
    with (
        open_sqlcipher_store(store.binding) as reopened,
        pytest.raises(StoreError, match="format 2, newer than this strongroom reads"),
    ):
        reopened.get("k")


def test_locking_the_account_closes_the_connection(store: SqlcipherStore) -> None:
    store.put("k", b"v")
    assert store._runner.opened is not None
    store.binding.keys.lock()
    with pytest.raises(KeyLockedError):
        store.get("k")
    assert store._runner.opened is None, "the key must leave SQLCipher's memory with the lock"
    store.binding.keys.unlock()
    assert store.get("k") == b"v"


def test_nothing_is_created_before_first_use(store: SqlcipherStore) -> None:
    fresh = open_sqlcipher_store(bind(store.binding.keys, "untouched"))
    assert fresh.purge_expired(1e12) == 0
    assert fresh.versions_in_use() == {}
    assert list(fresh.reencrypt())[-1] == (0, 0)
    assert files_of(fresh) == []
    assert list(fresh.keys()) == []  # first use creates it, empty, under the primary version
    assert fresh.versions_in_use() == {1: 1}
    fresh.close()
