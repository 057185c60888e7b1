"""Attacks on the ``sqlcipher`` store's files: altered, cut, swapped, replaced, rolled back.

SQLCipher authenticates each page (HMAC over the page and its number), so
the stored forms to attack are pages and whole files, not single records.
Each attack must end in ``IntegrityError`` (exit 3) or, for a shredded
key, ``KeyUnavailableError`` (exit 4), with no plaintext in the message.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlcipher_support import MARKER, bind, new_keys, open_sqlcipher_store

from strongroom.errors import StrongroomError
from strongroom.keys import AccountKeys
from strongroom_plugins.sqlcipher.store import SqlcipherStore

PAGE = 4096
VALUES = {f"k{index:03d}": MARKER + bytes([index]) * 300 for index in range(60)}


def filled(keys: AccountKeys, name: str = "vault") -> Path:
    """A closed store holding ``VALUES``: everything checkpointed into store.db."""
    with open_sqlcipher_store(bind(keys, name)) as store:
        store.put_many(VALUES.items())
        store.put_blob("blob", [MARKER * 2000])
        return store.database_path


def read_everything(keys: AccountKeys) -> None:
    with open_sqlcipher_store(bind(keys)) as store:
        for key in store.keys(""):
            b"".join(store.get_any(key))


def refused(call: Callable[[], object], exit_code: int = 3) -> StrongroomError:
    with pytest.raises(StrongroomError) as info:
        call()
    error = info.value
    assert error.exit_code == exit_code, f"{type(error).__name__}: {error}"
    shown = f"{error} {error!r}"
    assert MARKER.decode() not in shown
    for word in ("file is not a database", "database disk image", "database is locked"):
        assert word not in shown
    return error


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("offset", [100, PAGE + 50, 3 * PAGE + 2000, -1])
def test_a_flipped_bit_anywhere_is_refused(account_keys: AccountKeys, offset: int) -> None:
    path = filled(account_keys)
    flip(path, offset if offset >= 0 else path.stat().st_size - 1)
    refused(lambda: read_everything(account_keys))


def test_swapped_pages_are_refused(account_keys: AccountKeys) -> None:
    path = filled(account_keys)
    data = bytearray(path.read_bytes())
    data[PAGE : 2 * PAGE], data[2 * PAGE : 3 * PAGE] = (
        data[2 * PAGE : 3 * PAGE],
        data[PAGE : 2 * PAGE],
    )
    path.write_bytes(bytes(data))
    refused(lambda: read_everything(account_keys))


@pytest.mark.parametrize("size", [0, 16, PAGE - 1, PAGE, 3 * PAGE + 7])
def test_a_truncated_file_is_refused(account_keys: AccountKeys, size: int) -> None:
    path = filled(account_keys)
    with path.open("r+b") as handle:
        handle.truncate(size)
    error = refused(lambda: read_everything(account_keys))
    if size == 0:
        assert "missing or empty" in str(error)


def test_a_deleted_database_is_refused_not_recreated(account_keys: AccountKeys) -> None:
    path = filled(account_keys)
    path.unlink()
    error = refused(lambda: read_everything(account_keys))
    assert "missing or empty" in str(error)
    assert not path.exists()
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert list(store.unreadable()) == [("database", 1)]
        assert store.purge_unreadable() == 1  # the operator accepts the loss
        assert list(store.keys()) == []


def test_a_plaintext_sqlite_file_is_refused(account_keys: AccountKeys) -> None:
    path = filled(account_keys)
    path.unlink()
    plain = sqlite3.connect(path)
    plain.execute("CREATE TABLE strongroom_records (key TEXT PRIMARY KEY, value BLOB)")
    plain.execute("INSERT INTO strongroom_records VALUES ('k000', 'forged')")
    plain.commit()
    plain.close()
    error = refused(lambda: read_everything(account_keys))
    assert "does not open with any active key version" in str(error)


def test_another_accounts_database_is_refused(account_keys: AccountKeys, tmp_path: Path) -> None:
    path = filled(account_keys)
    other = new_keys(tmp_path / "bob", account="bob")
    other.create()
    try:
        shutil.copyfile(filled(other), path)
    finally:
        other.close()
    refused(lambda: read_everything(account_keys))


def test_another_stores_database_is_refused(account_keys: AccountKeys) -> None:
    path = filled(account_keys)
    shutil.copyfile(filled(account_keys, "other"), path)
    refused(lambda: read_everything(account_keys))


def test_an_older_copy_after_a_rekey_is_refused_as_rolled_back(account_keys: AccountKeys) -> None:
    path = filled(account_keys)
    saved = {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    with open_sqlcipher_store(bind(account_keys)) as store:
        account_keys.rotate(store.binding.purpose)
        list(store.reencrypt())
        store.put("after", b"written after the re-key")
    assert account_keys.floor(bind(account_keys).purpose) == 2
    for name, data in saved.items():
        (path.parent / name).write_bytes(data)  # the old file and its old sidecar
    error = refused(lambda: read_everything(account_keys))
    assert "rolled back" in str(error)
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert list(store.unreadable()) == [("database", 1)]
        assert store.versions_in_use() == {1: 1}
        assert store.purge_unreadable() == 1
        assert list(store.keys()) == []  # starts afresh under the primary version


def test_an_older_copy_under_the_same_version_reads_as_itself(account_keys: AccountKeys) -> None:
    """The limit every store shares: no counter outside the file, no refusal."""
    path = filled(account_keys)
    saved = path.read_bytes()
    with open_sqlcipher_store(bind(account_keys)) as store:
        store.put("k000", b"overwritten")
    path.write_bytes(saved)
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert store.get("k000") == VALUES["k000"]


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", b'{"format": 1, "version": 7}', b'{"format": 1, "version": 1, "target": 99}'],
)
def test_a_wrong_or_lost_sidecar_costs_only_attempts(
    account_keys: AccountKeys, content: bytes
) -> None:
    path = filled(account_keys)
    sidecar = path.with_name("store.key-version")
    sidecar.write_bytes(content)
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert store.get("k001") == VALUES["k001"]
    assert sidecar.read_bytes() == b'{"format": 1, "version": 1}\n'
    sidecar.unlink()
    with open_sqlcipher_store(bind(account_keys)) as store:
        assert store.get("k001") == VALUES["k001"]


def test_a_shredded_version_is_key_unavailable(account_keys: AccountKeys) -> None:
    filled(account_keys)
    purpose = bind(account_keys).purpose
    account_keys.rotate(purpose)
    account_keys.destroy(purpose, 1, force=True)
    error = refused(lambda: read_everything(account_keys), exit_code=4)
    assert "version 1" in str(error)


def test_refusals_change_nothing(account_keys: AccountKeys) -> None:
    path = filled(account_keys)
    before = path.read_bytes()
    flip(path, 3 * PAGE + 10)
    damaged = path.read_bytes()
    for _attempt in range(3):
        refused(lambda: read_everything(account_keys))
    assert path.read_bytes() == damaged
    path.write_bytes(before)
    read_everything(account_keys)


def test_errors_and_reprs_show_no_key(store_with_data: SqlcipherStore) -> None:
    store = store_with_data
    key = store._file.key(1)
    shown = [repr(store), str(store.__dict__.get("settings"))]
    conn = store.connect()
    shown.append(repr(conn))
    conn.close()
    for text in shown:
        assert key.hex() not in text.lower()
    flip(store.database_path, 3 * PAGE + 10)
    store.close()
    error = refused(lambda: read_everything(store.binding.keys))
    assert key.hex() not in str(error).lower()


@pytest.fixture
def store_with_data(account_keys: AccountKeys) -> SqlcipherStore:
    filled(account_keys)
    return open_sqlcipher_store(bind(account_keys))
