"""The ``files`` store's name index: listing without opening every object, never wrongly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from files_store_support import bind, header_version, open_files_store, path_of

from strongroom.errors import StrongroomError
from strongroom.keys import AccountKeys
from strongroom_plugins.stores._index import INDEX_FILE
from strongroom_plugins.stores._sealing import Sealer
from strongroom_plugins.stores.files import FilesStore

MARKER = "secret-key-name-7f3a"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each object a listing opens to learn its key: ``record`` or ``blob``."""
    calls: list[str] = []
    open_record, open_key_file = Sealer.open_record, Sealer.open_key_file

    def counting_record(self: Sealer, *args: object) -> object:
        calls.append("record")
        return open_record(self, *args)  # type: ignore[arg-type]

    def counting_key_file(self: Sealer, *args: object) -> object:
        calls.append("blob")
        return open_key_file(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Sealer, "open_record", counting_record)
    monkeypatch.setattr(Sealer, "open_key_file", counting_key_file)
    return calls


def index_of(store: FilesStore) -> Path:
    return store.binding.directory / INDEX_FILE


def test_a_listing_opens_only_objects_the_index_does_not_know(
    store: FilesStore, opened: list[str]
) -> None:
    for number in range(20):
        store.put(f"r{number:02}", b"v")
    store.put_blob("b", [b"blob"])
    expected = sorted([*(f"r{n:02}" for n in range(20)), "b"])
    assert list(store.keys()) == expected
    assert sorted(opened) == ["blob", *["record"] * 20]
    opened.clear()
    assert list(store.keys()) == expected
    assert list(store.keys("r1")) == [f"r1{n}" for n in range(10)]
    assert opened == []
    store.put("new", b"v")
    store.put_blob("new blob", [b"v"])
    assert list(store.keys()) == sorted([*expected, "new", "new blob"])
    assert sorted(opened) == ["blob", "record"]


def test_the_index_holds_no_key_name_in_the_clear(store: FilesStore) -> None:
    store.put(MARKER, b"v")
    store.put_blob(MARKER + " blob", [b"v"])
    list(store.keys())
    data = index_of(store).read_bytes()
    for form in (MARKER.encode(), MARKER.encode().hex().encode(), MARKER.encode("utf-16-le")):
        assert form not in data
    assert index_of(store).stat().st_mode & 0o777 == 0o600


def test_a_listing_sees_a_key_whatever_form_it_takes_after_indexing(store: FilesStore) -> None:
    store.put("k", b"record")
    assert list(store.keys()) == ["k"]
    store.put_blob("k", [b"blob"])
    assert list(store.keys()) == ["k"]
    store.put("k", b"record again")
    assert list(store.keys()) == ["k"]
    store.delete("k")
    assert list(store.keys()) == []
    assert store._index.load() == {}, "a deleted key's name leaves the index"


def test_another_instance_lists_what_this_one_wrote_since_the_index(store: FilesStore) -> None:
    with open_files_store(store.binding) as other:
        store.put("a", b"1")
        assert list(other.keys()) == ["a"]
        other.put("b", b"2")
        store.delete("a")
        assert list(store.keys()) == ["b"]
        assert list(other.keys()) == ["b"]


@pytest.mark.parametrize("damage", ["flipped bit", "truncated", "garbage", "another store's"])
def test_a_damaged_or_foreign_index_is_not_used_but_rebuilt(
    store: FilesStore,
    account_keys: AccountKeys,
    opened: list[str],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    store.put(MARKER, b"v")
    store.put("other", b"v")
    list(store.keys())
    index = index_of(store)
    data = index.read_bytes()
    if damage == "flipped bit":
        index.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "truncated":
        index.write_bytes(data[:40])
    elif damage == "garbage":
        index.write_bytes(b"\0" * 200)
    else:
        with open_files_store(bind(account_keys, "elsewhere")) as elsewhere:
            elsewhere.put("intruder", b"v")
            list(elsewhere.keys())
            index.write_bytes(index_of(elsewhere).read_bytes())
    opened.clear()
    with caplog.at_level(logging.DEBUG):
        assert list(store.keys()) == sorted([MARKER, "other"])
    assert opened == ["record", "record"], "every object is verified again"
    assert "rebuilding" in caplog.text
    assert MARKER not in caplog.text
    assert store._index.load() == {
        path_of(store, MARKER).name: MARKER,
        path_of(store, "other").name: "other",
    }


def test_a_tampered_object_is_still_refused_when_read(store: FilesStore) -> None:
    store.put("k", b"value")
    list(store.keys())
    record = path_of(store, "k")
    data = bytearray(record.read_bytes())
    data[-1] ^= 1
    record.write_bytes(bytes(data))
    assert list(store.keys()) == ["k"]  # the index names it: nothing is opened
    with pytest.raises(StrongroomError):
        store.get("k")


def test_shredded_keys_leave_the_listing_and_the_index(store: FilesStore) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("shredded", b"under v1")
    store.put_blob("shredded blob", [b"under v1"])
    keys.rotate(purpose)
    store.put("kept", b"under v2")
    assert list(store.keys()) == ["kept", "shredded", "shredded blob"]
    keys.destroy(purpose, 1, force=True)
    assert list(store.keys()) == ["kept"]
    assert set(store._index.load().values()) == {"kept"}
    assert store.purge_unreadable() == 2
    assert set(store._index.load().values()) == {"kept"}


def test_purging_drops_shredded_names_from_an_index_no_listing_rewrote(
    store: FilesStore,
) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("shredded", b"under v1")
    keys.rotate(purpose)
    store.put("kept", b"under v2")
    list(store.keys())  # the index now holds both, sealed under v2
    keys.destroy(purpose, 1, force=True)
    assert store.purge_unreadable() == 1
    assert set(store._index.load().values()) == {"kept"}


def test_reencryption_reseals_the_index_before_the_floor_rises(
    store: FilesStore, opened: list[str]
) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("a", b"1")
    list(store.keys())
    keys.rotate(purpose)
    list(store.reencrypt())
    assert keys.floor(purpose) == 2
    assert header_version(index_of(store)) == 2
    opened.clear()
    assert list(store.keys()) == ["a"]
    assert opened == [], "the resealed index still serves"


def test_an_index_under_a_destroyed_version_is_rebuilt(
    store: FilesStore, opened: list[str]
) -> None:
    keys, purpose = store.binding.keys, store.binding.purpose
    store.put("a", b"1")
    list(store.keys())
    keys.rotate(purpose)
    store.put("a", b"2")
    keys.destroy(purpose, 1, force=True)
    opened.clear()
    assert list(store.keys()) == ["a"]
    assert opened == ["record"]
    assert header_version(index_of(store)) == 2
